"""Typed produce/consume on top of the raw bus: records in, records out, bad bytes to the DLQ."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

import structlog

from monitor.core.bus.base import Delivery, Message, Producer, TopicPartition
from monitor.core.records import DeadLetter, Record, RecordDecodeError, decode

log = structlog.get_logger(__name__)
R = TypeVar("R", bound=Record)


def send_record(
    producer: Producer, topic: str, record: Record, key: str | bytes | None = None, partition: int | None = None
) -> Delivery:
    return producer.send(topic, record.encode(), key=key, headers=[("kind", record.KIND.encode())], partition=partition)


class DeadLetterSink:
    """Sends what a stage could not process to the dead-letter topic, with the reason."""

    def __init__(self, producer: Producer, topic: str, stage: str) -> None:
        self._producer = producer
        self.topic = topic
        self.stage = stage
        self.count = 0

    def reject_message(self, msg: Message, reason: str) -> Delivery:
        letter = DeadLetter.wrap(
            stage=self.stage,
            reason=reason,
            payload=msg.value or b"",
            source_topic=msg.topic,
            source_partition=msg.partition,
            source_offset=msg.offset,
            key=msg.key.decode("utf-8", "replace") if msg.key else None,
        )
        return self._send(letter)

    def reject_payload(self, payload: bytes, reason: str, key: str | None = None) -> Delivery:
        return self._send(DeadLetter.wrap(stage=self.stage, reason=reason, payload=payload, key=key))

    def _send(self, letter: DeadLetter) -> Delivery:
        self.count += 1
        log.warning(
            "dead-lettered",
            stage=self.stage,
            reason=letter.reason,
            topic=letter.source_topic,
            partition=letter.source_partition,
            offset=letter.source_offset,
        )
        return send_record(self._producer, self.topic, letter, key=letter.key)


class RecordReader(Generic[R]):
    """Decodes messages as ``model`` records; undecodable ones go to the DLQ and are skipped.

    The caller still sees every message's position through :meth:`decode_batch`'s return so it
    can commit past dead-lettered messages once the DLQ send is acknowledged.
    """

    def __init__(self, model: type[R], dlq: DeadLetterSink) -> None:
        self.model = model
        self.dlq = dlq

    def decode_batch(self, messages: list[Message]) -> tuple[list[tuple[Message, R]], list[Delivery]]:
        good: list[tuple[Message, R]] = []
        rejected: list[Delivery] = []
        for msg in messages:
            try:
                good.append((msg, decode(self.model, msg.value)))
            except RecordDecodeError as err:
                rejected.append(self.dlq.reject_message(msg, str(err)))
        return good, rejected

    def iter_decoded(self, messages: list[Message]) -> Iterator[tuple[Message, R]]:
        good, rejected = self.decode_batch(messages)
        for d in rejected:
            d.get(timeout=30)
        yield from good


def next_offsets(messages: list[Message]) -> dict[TopicPartition, int]:
    """The commit map for a processed batch: per partition, the offset after the last message."""
    out: dict[TopicPartition, int] = {}
    for m in messages:
        if m.offset + 1 > out.get(m.tp, -1):
            out[m.tp] = m.offset + 1
    return out
