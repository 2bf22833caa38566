"""Work split among the instances of one role through a consumer group: an exclusive role (a
lease, :class:`GroupLease`) or a share of named units of work (:class:`GroupShare`, slots).

Every instance subscribes to the same topic with the same group id; the member the group gives
partition 0 of a one-partition topic holds the lease, and of a share topic each member owns the
slots (partitions) it is given. Kafka's group coordinator is the arbiter: a holder that
stops cleanly leaves the group at once, one killed (``kill -9``, host gone, network cut) stops
heart-beating and loses the partition after ``kafka.session_timeout_ms``, and the group hands it
to a live member on its next poll. The sticky assignor keeps the partition where it is when a
member joins, so a standby that (re)starts does not take the lease from a working holder (a share
moves only what balancing the members needs).

Nothing is ever written to the topic: membership is the lease. On the in-process bus there is
one process, so its only member holds it.

What it guarantees: at most one *live, connected* holder at a time, as Kafka's groups do. A
holder cut off from the brokers keeps believing it holds the lease until its own client notices
(its next poll after the session times out), so for up to one session timeout two instances may
both think they hold it; callers whose work must not overlap re-check :attr:`GroupLease.held`
before an irreversible step.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import structlog

from monitor.core.bus.base import Bus, BusError, ConsumerOptions

log = structlog.get_logger(__name__)

POLL_S = 0.5


def lease_group(topic: str) -> str:
    """The consumer group of the lease or share on ``topic`` (one group per topic)."""
    return f"finsent-lease.{topic}"


def slot_of(name: str, slots: int) -> int:
    """The slot (partition of a share topic) that owns the unit of work called ``name``: a stable
    hash, the same in every instance and every run."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big") % slots


class GroupShare:
    """The slots (partitions of ``topic``, created with ``slots`` partitions) that the group gives
    this instance; :meth:`run` until ``stop`` is set. A stage of its own (``name``, ``ready``).

    ``on_change(owned)`` is called from :meth:`run`'s thread with the settled set after the first
    poll and after each change (a revoke followed by the same assignment is no change); on stop it
    is called with the empty set."""

    def __init__(
        self,
        bus: Bus,
        topic: str,
        slots: int,
        name: str,
        on_change: Callable[[frozenset[int]], None] | None = None,
        *,
        compacted: bool = False,
    ) -> None:
        """``compacted``: create the topic compacted (for state its users keep on it by key)."""
        self.name = name
        self._compacted = compacted
        self._bus = bus
        self._topic = topic
        self._slots = slots
        self._on_change = on_change
        self._owned: frozenset[int] = frozenset()
        self._joined = threading.Event()

    @property
    def owned(self) -> frozenset[int]:
        """The slots this instance owns now (as far as its last poll knows)."""
        return self._owned

    @property
    def slots(self) -> int:
        """How many slots the topic has (its partition count, once created)."""
        return self._slots

    @property
    def joined(self) -> bool:
        """The first poll has returned: :attr:`owned` is the group's answer, not "starting"."""
        return self._joined.is_set()

    def run(self, stop: threading.Event) -> None:
        self._bus.ensure_topics([self._topic], partitions=self._slots, compacted=self._compacted)
        self._slots = self._bus.partitions_for(self._topic)  # an existing topic keeps its count
        consumer = self._bus.consumer(
            [self._topic], ConsumerOptions(group_id=lease_group(self._topic), from_beginning=False, sticky=True)
        )
        try:
            while not stop.is_set():
                try:
                    consumer.poll(POLL_S, max_records=1)
                    owned = frozenset(tp.partition for tp in consumer.assignment() if tp.topic == self._topic)
                except BusError as err:
                    log.warning("group poll failed; treating the share as lost", share=self.name, error=str(err))
                    owned = frozenset()
                    stop.wait(POLL_S)
                self._set(owned, first=not self._joined.is_set())
                self._joined.set()
        finally:
            self._set(frozenset(), first=False)
            consumer.close()  # leaves the group: the others take the slots over at once

    def _set(self, owned: frozenset[int], first: bool) -> None:
        if owned == self._owned and not first:
            return
        self._owned = owned
        if self._on_change is not None:
            self._on_change(owned)

    def ready(self) -> tuple[bool, str]:
        if not self.joined:
            return False, "joining its group"
        return True, f"owns {len(self._owned)} of {self._slots} slots"


class GroupLease:
    """The one-slot share: held or waited for; :meth:`run` until ``stop`` is set.

    ``on_change(held)`` is called from :meth:`run`'s thread after each change."""

    def __init__(self, bus: Bus, topic: str, name: str, on_change: Callable[[bool], None] | None = None) -> None:
        self._topic = topic
        self._name = name
        self._on_change = on_change
        self._held = False
        self._share = GroupShare(bus, topic, 1, name, on_change=self._changed)

    @property
    def held(self) -> bool:
        """This instance holds the lease now (as far as its last poll knows)."""
        return self._held

    @property
    def joined(self) -> bool:
        """The first poll has returned: :attr:`held` says holder or standby, not "starting"."""
        return self._share.joined

    def run(self, stop: threading.Event) -> None:
        self._share.run(stop)

    def _changed(self, owned: frozenset[int]) -> None:
        held = 0 in owned
        if held == self._held:
            if not held and not self._share.joined:
                log.info("lease held by another instance: waiting as a standby", lease=self._name)
            return
        self._held = held
        log.info("lease acquired" if held else "lease released", lease=self._name, topic=self._topic)
        if self._on_change is not None:
            self._on_change(held)
