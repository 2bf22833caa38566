"""An exclusive role among the instances of one role, held through a consumer group.

Every instance subscribes to the same one-partition topic with the same group id; the member the
group gives partition 0 holds the lease. Kafka's group coordinator is the arbiter: a holder that
stops cleanly leaves the group at once, one killed (``kill -9``, host gone, network cut) stops
heart-beating and loses the partition after ``kafka.session_timeout_ms``, and the group hands it
to a live member on its next poll. The sticky assignor keeps the partition where it is when a
member joins, so a standby that (re)starts does not take the lease from a working holder.

Nothing is ever written to the topic: membership is the lease. On the in-process bus there is
one process, so its only member holds it.

What it guarantees: at most one *live, connected* holder at a time, as Kafka's groups do. A
holder cut off from the brokers keeps believing it holds the lease until its own client notices
(its next poll after the session times out), so for up to one session timeout two instances may
both think they hold it; callers whose work must not overlap re-check :attr:`GroupLease.held`
before an irreversible step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from monitor.core.bus.base import Bus, BusError, ConsumerOptions, TopicPartition

log = structlog.get_logger(__name__)

POLL_S = 0.5


def lease_group(topic: str) -> str:
    """The consumer group of the lease on ``topic`` (one group per lease topic)."""
    return f"finsent-lease.{topic}"


class GroupLease:
    """Holds or waits for the lease on ``topic``; :meth:`run` until ``stop`` is set.

    ``on_change(held)`` is called from :meth:`run`'s thread after each change, with the settled
    state (after a rebalance has finished, so a revoke followed by the same assignment is no
    change)."""

    def __init__(self, bus: Bus, topic: str, name: str, on_change: Callable[[bool], None] | None = None) -> None:
        self._bus = bus
        self._topic = topic
        self._tp = TopicPartition(topic, 0)
        self._name = name
        self._on_change = on_change
        self._held = threading.Event()
        self._joined = threading.Event()

    @property
    def held(self) -> bool:
        """This instance holds the lease now (as far as its last poll knows)."""
        return self._held.is_set()

    @property
    def joined(self) -> bool:
        """The first poll has returned: :attr:`held` says holder or standby, not "starting"."""
        return self._joined.is_set()

    def run(self, stop: threading.Event) -> None:
        self._bus.ensure_topics([self._topic], partitions=1)
        consumer = self._bus.consumer(
            [self._topic], ConsumerOptions(group_id=lease_group(self._topic), from_beginning=False, sticky=True)
        )
        try:
            while not stop.is_set():
                try:
                    consumer.poll(POLL_S, max_records=1)
                    held = self._tp in consumer.assignment()
                except BusError as err:
                    log.warning("lease poll failed; treating the lease as lost", lease=self._name, error=str(err))
                    held = False
                    stop.wait(POLL_S)
                self._set(held)
                if not self._joined.is_set():
                    self._joined.set()
                    if not held:
                        log.info("lease held by another instance: waiting as a standby", lease=self._name)
        finally:
            self._set(False)
            consumer.close()  # leaves the group: a standby takes over at once

    def _set(self, held: bool) -> None:
        if held == self._held.is_set():
            return
        if held:
            self._held.set()
        else:
            self._held.clear()
        log.info("lease acquired" if held else "lease released", lease=self._name, topic=self._topic)
        if self._on_change is not None:
            self._on_change(held)
