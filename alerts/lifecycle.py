"""The alert state machine: inactive -> pending -> firing -> resolved, driven by event time.

Time. ``for``, ``keep_firing_for``, ``repeat_interval``, ``stale_after`` and a story's
``resolve_after`` are measured in *event time* (:mod:`alerts.evaluation` says when a point or a
story happens), so a replay gives the same answer as the live run: a replay at 120x (the demo
feed) runs its rules 120x faster too, and a backfill or a catch-up after an outage is evaluated
exactly as the same stories were live; notifications evaluated more than ``catch_up_after`` behind
real time carry a ``catch_up`` annotation with the lag (e.g. ``"3723s"``).

The *watermark* is the latest event time seen; :meth:`AlertLifecycle.tick` uses it to promote
pending alerts, re-send firing ones (``repeat_interval``), resolve trend alerts whose key went
quiet (``evaluation.stale_after``) or whose condition stayed false for ``keep_firing_for`` (a
firing trend alert whose condition stops holding stays firing that long, so a condition that flaps
around its threshold is one episode: one firing and one resolved notification), and story alerts
(``resolve_after``). Wall time (the injected clock) only dates the ``catch_up`` lag.

A revised point of a window at or after the one that fired a firing alert gives the alert one
``revised`` transition (``revision`` + 1) when its values changed; the alert stays firing.

Each transition a receiver hears about (``firing``, ``resolved``, ``revised``, ``repeat``) is kept,
with a copy of the alert as it was then, for :mod:`alerts.dispatch`; every changed alert is kept
for the store. :meth:`AlertLifecycle.take_batch` hands both over and starts the next batch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from alerts.alert_store import AlertStore, Changes
from alerts.clock import Clock
from alerts.evaluation import Measurement, StoryReading, TrendReading
from alerts.instances import AlertInstance
from alerts.routing import Router, Target
from alerts.ruleset import Rule, RuleSet, StoryRule, TrendRule
from alerts.settings import EngineOptions
from monitor.core.records import TrendPoint

log = structlog.get_logger(__name__)

_RETENTION_SWEEP = timedelta(minutes=10)


@dataclass(frozen=True)
class Transition:
    """A change of one alert its receivers hear about: ``reason`` is ``firing``, ``resolved``,
    ``revised`` or ``repeat``; ``alert`` is a copy of the alert as it was then (an alert that
    resolves later in the same batch was still firing in this one)."""

    reason: str
    alert: AlertInstance


class AlertLifecycle:
    """Every alert's state, and what changed in the batch being evaluated."""

    def __init__(
        self,
        rules: RuleSet,
        router: Router,
        store: AlertStore,
        latest: Mapping[tuple[str, str], TrendPoint],
        options: EngineOptions,
        clock: Clock,
    ) -> None:
        self.router = router
        self.store = store
        self.options = options
        self.clock = clock
        self._latest = latest  # the latest point evaluated per (key, window), kept by alerts.evaluation
        self._rules: dict[str, Rule] = {r.name: r for r in rules.rules}
        self._templates = {r.name: r.templates() for r in rules.rules}
        self._states: dict[str, AlertInstance] = {}
        self._groups: dict[str, set[str]] = {}
        self._active: set[str] = set()  # pending or firing
        for inst in store.load_alerts():
            rule = self._rules.get(inst.rule)
            if rule is None:
                continue  # the rule was removed: its alerts are left as they are, never re-evaluated
            target = router.route(rule, inst.labels)  # routing may have changed since it was stored
            inst.receiver, inst.group_key, inst.group_labels = target.receiver, target.group_key, target.group_labels
            self._add(inst)
        self.watermark: datetime | None = store.watermark()
        self._next_sweep: datetime | None = None
        self._changes = Changes()
        self._transitions: list[Transition] = []

    # -- what others read -----------------------------------------------------------------------
    def alerts(self) -> list[AlertInstance]:
        return list(self._states.values())

    def get(self, fingerprint: str) -> AlertInstance | None:
        return self._states.get(fingerprint)

    def group(self, group_key: str) -> Iterator[AlertInstance]:
        """The alerts of one notification group (any state)."""
        for fp in self._groups.get(group_key, ()):
            yield self._states[fp]

    def take_batch(self) -> tuple[Changes, list[Transition]]:
        """The batch's changed alerts (and watermark) and its transitions; starts the next batch."""
        changes, transitions = self._changes, self._transitions
        self._changes, self._transitions = Changes(), []
        return changes, transitions

    # -- event time -----------------------------------------------------------------------------
    def advance(self, t: datetime) -> None:
        if self.watermark is None or t > self.watermark:
            self.watermark = t
            self._changes.watermark = t

    # -- transitions ----------------------------------------------------------------------------
    def step(self, reading: TrendReading) -> None:
        """A trend rule's reading of now."""
        rule, m, t = reading.rule, reading.measurement, reading.at
        target = self.router.trend(rule, reading.key)
        inst = self._states.get(target.fingerprint)
        if m.holds is None:
            if inst is not None and inst.state != "resolved":
                inst.last_seen_at = t
                self._dirty(inst)
            return
        if m.holds:
            if inst is None:
                inst = self._new(rule, reading.key, target, t)
            elif inst.state == "resolved":
                inst.state, inst.active_since = "pending", t
                self._active.add(inst.fingerprint)
            if inst.state == "pending":
                self._update(inst, rule, m, t)
                if t - inst.active_since >= rule.for_:  # type: ignore[operator]
                    self._fire(inst, t, reading.window_end)
            else:  # firing
                changed = m.values != inst.values
                inst.keep_firing_since = None  # holding again: the same episode goes on
                self._update(inst, rule, m, t)
                if reading.revised and changed:
                    inst.revision += 1
                    self._emit(inst, "revised")
            return
        if inst is None or inst.state == "resolved":
            return
        if inst.state == "pending":
            if inst.starts_at is None:
                self._remove(inst)
            else:  # back to the record of its last (resolved) incarnation
                inst.state, inst.active_since = "resolved", None
                self._active.discard(inst.fingerprint)
                self._dirty(inst)
            return
        self._update(inst, rule, m, t)
        if rule.keep_firing_for > timedelta(0):
            if inst.keep_firing_since is None:
                inst.keep_firing_since = t
            if t - inst.keep_firing_since < rule.keep_firing_for:
                return  # stays firing (see tick): a flapping condition is one episode, not several
            t = inst.keep_firing_since + rule.keep_firing_for
        self._resolve(inst, t)

    def revise(self, reading: TrendReading) -> None:
        """A trend rule's reading of a revised past window: revises the alert it fired, if any."""
        rule, m = reading.rule, reading.measurement
        target = self.router.trend(rule, reading.key)
        inst = self._states.get(target.fingerprint)
        if inst is None or inst.state != "firing":
            return
        if inst.fired_window_end is not None and reading.window_end < inst.fired_window_end:
            return  # before the alert fired
        if m.holds is None or m.values == inst.values:
            return
        self._update(inst, rule, m, inst.last_seen_at or reading.at)
        inst.revision += 1
        self._emit(inst, "revised")

    def story(self, reading: StoryReading) -> None:
        """A story rule that holds for a story: the story's alert fires at once (once per story)."""
        rule, m, t = reading.rule, reading.measurement, reading.at
        target = self.router.story(rule, reading.story, str(m.variables["ticker"]))
        if target.fingerprint in self._states:
            return  # this story already alerted (redelivery, or a re-score)
        inst = self._new(rule, reading.story.item.id, target, t)
        self._update(inst, rule, m, t)
        self._fire(inst, t, None)

    def tick(self) -> None:
        """Time-driven transitions at the current watermark (see the module docstring)."""
        now = self.watermark
        if now is None:
            return
        for fp in sorted(self._active):
            inst = self._states[fp]
            rule = self._rules[inst.rule]
            if inst.state == "pending":
                if inst.active_since is not None and now - inst.active_since >= rule.for_:
                    latest = self._latest.get((inst.subject, rule.window)) if isinstance(rule, TrendRule) else None
                    self._fire(inst, now, latest.window_end if latest else None)
                continue
            if isinstance(rule, StoryRule):
                if inst.starts_at is not None and now - inst.starts_at >= rule.resolve_after:
                    self._resolve(inst, inst.starts_at + rule.resolve_after)
                    continue
            elif inst.last_seen_at is not None and now - inst.last_seen_at >= self.options.stale_after:
                self._resolve(inst, now)
                continue
            elif inst.keep_firing_since is not None and now - inst.keep_firing_since >= rule.keep_firing_for:
                self._resolve(inst, inst.keep_firing_since + rule.keep_firing_for)
                continue
            if (
                rule.repeat_interval > timedelta(0)
                and inst.last_notified_at is not None
                and now - inst.last_notified_at >= rule.repeat_interval
            ):
                inst.last_notified_at = now
                if self.store.acked(fp):
                    self._dirty(inst)
                else:
                    self._emit(inst, "repeat")
        if self._next_sweep is None or now >= self._next_sweep:
            self._next_sweep = now + _RETENTION_SWEEP
            for inst in list(self._states.values()):
                if inst.state == "resolved" and inst.ends_at and now - inst.ends_at >= self.options.retention:
                    self._remove(inst)

    def _fire(self, inst: AlertInstance, t: datetime, window_end: datetime | None) -> None:
        inst.state = "firing"
        inst.starts_at = inst.active_since or t
        inst.ends_at = None
        inst.fired_window_end = window_end
        inst.revision = 0
        inst.keep_firing_since = None
        inst.last_notified_at = t
        inst.acked_at = inst.acked_by = None
        self._active.add(inst.fingerprint)
        self._emit(inst, "firing")

    def _resolve(self, inst: AlertInstance, t: datetime) -> None:
        inst.state = "resolved"
        inst.ends_at = t
        inst.active_since = inst.keep_firing_since = None
        self._active.discard(inst.fingerprint)
        self._emit(inst, "resolved")

    # -- bookkeeping ----------------------------------------------------------------------------
    def _new(self, rule: TrendRule | StoryRule, subject: str, target: Target, t: datetime) -> AlertInstance:
        inst = AlertInstance(
            fingerprint=target.fingerprint,
            rule=rule.name,
            subject=subject,
            labels=target.labels,
            receiver=target.receiver,
            group_key=target.group_key,
            group_labels=target.group_labels,
            state="pending",
            active_since=t,
            last_seen_at=t,
        )
        self._add(inst)
        self._dirty(inst)
        return inst

    def _add(self, inst: AlertInstance) -> None:
        self._states[inst.fingerprint] = inst
        self._groups.setdefault(inst.group_key, set()).add(inst.fingerprint)
        if inst.state in ("pending", "firing"):
            self._active.add(inst.fingerprint)

    def _remove(self, inst: AlertInstance) -> None:
        self._states.pop(inst.fingerprint, None)
        self._active.discard(inst.fingerprint)
        members = self._groups.get(inst.group_key)
        if members is not None:
            members.discard(inst.fingerprint)
            if not members:
                del self._groups[inst.group_key]
        self._changes.upserts.pop(inst.fingerprint, None)
        self._changes.deletes.add(inst.fingerprint)

    def _dirty(self, inst: AlertInstance) -> None:
        self._changes.deletes.discard(inst.fingerprint)
        self._changes.upserts[inst.fingerprint] = inst

    def _update(self, inst: AlertInstance, rule: TrendRule | StoryRule, m: Measurement, t: datetime) -> None:
        inst.values = m.values
        inst.evidence = m.evidence
        inst.model_version = m.model_version
        inst.last_seen_at = t
        inst.annotations = {k: tpl.render(m.variables, inst.labels) for k, tpl in self._templates[rule.name].items()}
        self._dirty(inst)

    def _emit(self, inst: AlertInstance, reason: str) -> None:
        inst.seq += 1
        self._mark_catch_up(inst)
        if reason != "resolved" and self.watermark is not None:
            inst.last_notified_at = max(inst.last_notified_at or self.watermark, self.watermark)
        self._dirty(inst)
        # a shallow copy is the alert as it is now: an alert's fields are replaced, never changed in place
        self._transitions.append(Transition(reason, copy.copy(inst)))
        log.info(
            "alert " + reason,
            rule=inst.rule,
            fingerprint=inst.fingerprint,
            subject=inst.subject,
            revision=inst.revision,
            values=inst.values,
        )

    def _mark_catch_up(self, inst: AlertInstance) -> None:
        """Annotate ``catch_up`` (the lag behind real time) when evaluated far behind it."""
        annotations = {k: v for k, v in inst.annotations.items() if k != "catch_up"}
        if self.watermark is not None:
            lag = self.clock.time() - self.watermark.timestamp()
            if lag >= self.options.catch_up_after.total_seconds():
                annotations["catch_up"] = f"{lag:.0f}s"
        inst.annotations = annotations
