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

Membership is the lease (a share's users may keep small state on its topic, by key, in the
slot's partition). On the in-process bus there is one process, so its only member holds it.

What it guarantees: at most one *live, connected* owner of a slot at a time, as Kafka's groups
do. A member cut off from the brokers does not notice by itself (kafka-python keeps its
assignment until it reaches a broker again), so it fences itself: with ``fence_after_s`` set
below the session timeout it gives up every slot once the group coordinator has been silent
that long, before the group hands the slots to another member. Work done between the last answer
and the fence (at most ``fence_after_s``) may overlap with the next owner's start.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import structlog

from monitor.core.bus.base import Bus, BusError, ConsumerOptions, TopicPartition

log = structlog.get_logger(__name__)

POLL_S = 0.5

FENCE_SHARE = 0.8
"""Callers fence after this share of ``kafka.session_timeout_ms`` without the coordinator's answer:
before the group may hand the slots to another member."""


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
        on_revoke: Callable[[frozenset[int]], None] | None = None,
        fence_after_s: float | None = None,
        compacted: bool = False,
    ) -> None:
        """``on_revoke(slots)``: called inside a rebalance before ``slots`` may go to another member:
        finish the work on them there (the group waits). ``fence_after_s``: give up every slot when
        the group coordinator has not answered for this long (set it below
        ``kafka.session_timeout_ms``, after which the group reassigns them): a member cut off from
        the brokers stops working before another takes over. ``compacted``: create the topic
        compacted (for state its users keep on it by key)."""
        self.name = name
        self._on_revoke = on_revoke
        self._fence_after_s = fence_after_s
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
            [self._topic],
            ConsumerOptions(
                group_id=lease_group(self._topic), from_beginning=False, sticky=True, on_revoke=self._revoked
            ),
        )
        failing = fenced = False
        try:
            while not stop.is_set():
                try:
                    consumer.poll(POLL_S, max_records=1)
                    owned = frozenset(tp.partition for tp in consumer.assignment() if tp.topic == self._topic)
                    failing = False
                except BusError as err:
                    if not failing:
                        log.warning("group poll failed; retrying", share=self.name, error=str(err))
                    failing = True
                    owned = self._owned  # kept until fenced: a blip is not a lost session
                    stop.wait(POLL_S)
                silent_s = consumer.group_contact_age_s()
                silent = self._fence_after_s is not None and silent_s > self._fence_after_s
                if silent and (owned or fenced):
                    if not fenced:
                        log.warning(
                            "no answer from the group coordinator: giving up this instance's share until it answers",
                            share=self.name,
                            silent_s=round(silent_s, 1),
                        )
                    fenced, owned = True, frozenset()
                elif fenced and not silent:
                    log.info("the group coordinator answers again", share=self.name)
                    fenced = False
                self._set(owned, first=not self._joined.is_set())
                self._joined.set()
        finally:
            try:
                self._set(frozenset(), first=False)
            finally:
                consumer.close()  # leaves the group: the others take the slots over at once

    def _revoked(self, partitions: set[TopicPartition]) -> None:
        slots = frozenset(tp.partition for tp in partitions if tp.topic == self._topic)
        self._owned = self._owned - slots  # what comes back after the rebalance is a change again
        if self._on_revoke is not None:
            self._on_revoke(slots)

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

    def __init__(
        self,
        bus: Bus,
        topic: str,
        name: str,
        on_change: Callable[[bool], None] | None = None,
        *,
        fence_after_s: float | None = None,
    ) -> None:
        self._topic = topic
        self._name = name
        self._on_change = on_change
        self._held = False
        self._share = GroupShare(bus, topic, 1, name, on_change=self._changed, fence_after_s=fence_after_s)

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
