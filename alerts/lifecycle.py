"""The alert state machine: inactive -> pending -> firing -> resolved, driven by event time.

Time. ``for``, ``keep_firing_for``, ``repeat_interval``, ``stale_after`` and a story's
``resolve_after`` are measured in *event time*, so a replay gives the same answer as the live run:

* a trend point happens at ``min(watermark, window_end)`` - the aggregator's event-time watermark
  when it emitted the point (``emitted_at`` on records without one), clipped to the end of its
  window (a late revision of a closed window does not move time); a window is closed once that
  watermark reached its end. Event time, not wall time: a replay at 120x (the demo feed) runs its
  rules 120x faster too, and a backfill or a catch-up after an outage is evaluated exactly as the
  same stories were live; notifications evaluated more than ``catch_up_after`` behind real time
  carry a ``catch_up`` annotation with the lag (e.g. ``"3723s"``);
* a scored story happens at ``min(published_at, scored_at)``.

The engine's *watermark* is the latest event time it has seen; :meth:`AlertEngine.tick` uses it to
promote pending alerts, re-send firing ones (``repeat_interval``), resolve trend alerts whose key
went quiet (``evaluation.stale_after``) or whose condition stayed false for ``keep_firing_for``
(a firing trend alert whose condition stops holding stays firing that long, so a condition that
flaps around its threshold is one episode: one firing and one resolved notification), and story
alerts (``resolve_after``). Wall time (the
injected clock) only stamps outbox rows.

Windows. Only the *leading* window of a key and window family is evaluated: for sliding windows
(``15m`` hopping by ``5m``) several windows are open at once, and the one that closes next, the
most complete, speaks for "the last 15 minutes"; younger ones are skipped. A point for a window
that ends before the latest evaluated one is a revision of the past: when it is flagged
``revised`` and belongs to a firing alert's period, the alert gets one ``revised`` notification
(``revision`` + 1) and stays firing; it never starts a new alert.

Notifications. Transitions of one evaluated batch are collected per group (receiver +
``group_by`` labels) into one Alertmanager-style notification listing the group's firing alerts
and those resolved in this batch. Each notification becomes outbox rows (one for its receiver,
one that publishes the changed alerts as :class:`~monitor.core.records.Alert` records on the bus) with
an idempotency key derived from the alerts and their notification sequence numbers, so the same
transition always yields the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import structlog

from alerts.clock import Clock, SystemClock
from alerts.conditions import Measurement, measure_change, measure_level, measure_story
from alerts.index import RuleIndex
from alerts.payload import (
    REASON_PRIORITY,
    SlackMessage,
    WebhookAlert,
    alertmanager_body,
    build_message,
    slack_text,
)
from alerts.ruleset import ChangeRule, Rule, RuleBase, RuleSet, StoryRule, TrendRule
from alerts.settings import ReceiverSettings
from alerts.state import AlertInstance, OutboxEntry
from alerts.store import AlertStore, Changes
from monitor.core.bus.base import TopicPartition
from monitor.core.records import Alert, Record, ScoredItem, TrendPoint

log = structlog.get_logger(__name__)

BUS_RECEIVER = "_bus"
"""Outbox rows that publish Alert records on ``topics.alerts`` (receiver names cannot start with _)."""

_RETENTION_SWEEP = timedelta(minutes=10)


@dataclass
class EngineOptions:
    receivers: dict[str, ReceiverSettings] = field(default_factory=lambda: {"local": ReceiverSettings(type="file")})
    default_receiver: str = "local"
    external_url: str = "http://127.0.0.1:8080"
    publish_topic: str | None = None
    stale_after: timedelta = timedelta(hours=1)
    retention: timedelta = timedelta(days=7)
    max_evidence: int = 5
    window_hops: dict[str, timedelta] = field(default_factory=dict)
    """Hop of each sliding window family (from the aggregator config); unknown = tumbling."""
    catch_up_after: timedelta = timedelta(minutes=10)
    """A notification whose event time is this far behind real time is marked ``catch_up``."""


@dataclass(frozen=True)
class _Target:
    """Everything about one (rule, subject) alert that never changes: computed once, cached."""

    fingerprint: str
    labels: dict[str, str]
    receiver: str
    group_key: str
    group_labels: dict[str, str]


@dataclass(frozen=True)
class _Event:
    fingerprint: str
    reason: str
    seq: int
    record: Alert
    shown: WebhookAlert


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """Stable across processes and versions: sha256 of the sorted label set (which names the rule)."""
    blob = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def group_key_of(receiver: str, group_labels: Mapping[str, str]) -> str:
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(group_labels.items()))
    return f'{{}}/{{receiver="{receiver}"}}:{{{inner}}}'


def trend_labels(rule: TrendRule, key: str) -> dict[str, str]:
    labels = dict(rule.labels)
    labels.update(alertname=rule.name, severity=rule.severity, key=key, window=rule.window)
    kind, sep, name = key.partition(":")
    if sep and kind in ("ticker", "topic", "source"):
        labels[kind] = name
    return labels


class AlertEngine:
    def __init__(
        self,
        rules: RuleSet,
        store: AlertStore | None = None,
        options: EngineOptions | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.rules = rules
        self.store = store or AlertStore(":memory:")
        self.options = options or EngineOptions()
        self.clock = clock or SystemClock()
        self.index = RuleIndex(rules)
        self._rules: dict[str, Rule] = {r.name: r for r in rules.rules}
        self._templates = {r.name: r.templates() for r in rules.rules}
        self._targets: dict[tuple[str, str], _Target] = {}
        self._states: dict[str, AlertInstance] = {}
        self._groups: dict[str, set[str]] = {}
        self._active: set[str] = set()  # pending or firing
        for inst in self.store.load_alerts():
            rule = self._rules.get(inst.rule)
            if rule is None:
                continue  # the rule was removed: its alerts are left as they are, never re-evaluated
            target = self._target(rule, inst.labels)  # routing may have changed since it was stored
            inst.receiver, inst.group_key, inst.group_labels = target.receiver, target.group_key, target.group_labels
            self._add(inst)
        self._latest: dict[tuple[str, str], TrendPoint] = self.store.load_latest()
        self.watermark: datetime | None = self.store.watermark()
        self._next_sweep: datetime | None = None
        self._changes = Changes()
        self._events: list[_Event] = []
        self._shown_cache: dict[str, WebhookAlert] = {}
        self.points_seen = 0
        self.stories_seen = 0

    # -- public API ---------------------------------------------------------------------------
    def observe(self, record: Record) -> None:
        if isinstance(record, TrendPoint):
            self.observe_trend(record)
        elif isinstance(record, ScoredItem):
            self.observe_story(record)
        else:
            raise TypeError(f"alerts cannot evaluate a {type(record).__name__}")

    def observe_trend(self, point: TrendPoint) -> None:
        self.points_seen += 1
        t = min(point.event_time, point.window_end)
        if self.watermark is None or t > self.watermark:
            self._advance(t)
        rules = self.index.for_point(point.key, point.window)
        if not rules:
            return
        slot = (point.key, point.window)
        latest = self._latest.get(slot)
        if latest is not None and point.window_end < latest.window_end:
            if point.revised:
                self._revise_past(rules, point)
            return
        hop = self.options.window_hops.get(point.window) or (point.window_end - point.window_start)
        if point.event_time < point.window_end - hop:
            return  # a younger window of a sliding family: the leading one speaks for now
        self._latest[slot] = point
        self._changes.latest[slot] = point
        for rule in rules:
            if isinstance(rule, ChangeRule):
                current: TrendPoint | None
                baseline: TrendPoint | None
                if point.window == rule.window:
                    current, baseline = point, self._latest.get((point.key, rule.baseline_window))
                else:
                    current, baseline = self._latest.get((point.key, rule.window)), point
                if current is None:
                    continue
                m = measure_change(
                    rule, current, baseline, current.event_time >= current.window_end, self.options.max_evidence
                )
                self._step(rule, point.key, m, t, current.window_end, point.revised and current is point)
            elif point.window == rule.window:
                m = measure_level(rule, point, point.event_time >= point.window_end, self.options.max_evidence)  # type: ignore[arg-type]
                self._step(rule, point.key, m, t, point.window_end, point.revised)

    def observe_story(self, scored: ScoredItem) -> None:
        self.stories_seen += 1
        rules = self.index.for_story(scored.item.tickers)
        if not rules:
            return
        t = min(scored.item.published_at, scored.scored_at)
        self._advance(t)
        for rule in rules:
            m = measure_story(rule, scored)
            if m is None:
                continue
            target = self._story_target(rule, scored, str(m.variables["ticker"]))
            if target.fingerprint in self._states:
                continue  # this story already alerted (redelivery, or a re-score)
            inst = self._new(rule, scored.item.id, target, t)
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

    def take_changes(self) -> Changes:
        """Everything since the last call, with the notifications built; resets the batch."""
        changes = self._changes
        changes.outbox = self._notifications()
        self._changes = Changes()
        self._events = []
        return changes

    def commit(
        self,
        offsets: Mapping[TopicPartition, int] | None = None,
        write: Callable[[Callable[[], int]], int] | None = None,
    ) -> Changes:
        """Tick, then persist the batch (state + outbox + offsets) in one transaction.

        ``write`` runs that transaction (the evaluator stage passes one that retries the same
        batch in place while the disk is full); by default it runs once and raises."""
        self.tick()
        changes = self.take_changes()
        if changes or offsets:
            apply = lambda: self.store.apply(changes, offsets)  # noqa: E731
            apply() if write is None else write(apply)
        return changes

    def process(
        self,
        records: Iterable[Record],
        offsets: Mapping[TopicPartition, int] | None = None,
        write: Callable[[Callable[[], int]], int] | None = None,
    ) -> Changes:
        for r in records:
            self.observe(r)
        return self.commit(offsets, write)

    def alerts(self) -> list[AlertInstance]:
        return list(self._states.values())

    def get(self, fingerprint: str) -> AlertInstance | None:
        return self._states.get(fingerprint)

    # -- transitions --------------------------------------------------------------------------
    def _step(
        self, rule: TrendRule, key: str, m: Measurement, t: datetime, window_end: datetime, revised: bool
    ) -> None:
        target = self._trend_target(rule, key)
        inst = self._states.get(target.fingerprint)
        if m.holds is None:
            if inst is not None and inst.state != "resolved":
                inst.last_seen_at = t
                self._dirty(inst)
            return
        if m.holds:
            if inst is None:
                inst = self._new(rule, key, target, t)
            elif inst.state == "resolved":
                inst.state, inst.active_since = "pending", t
                self._active.add(inst.fingerprint)
            if inst.state == "pending":
                self._update(inst, rule, m, t)
                if t - inst.active_since >= rule.for_:  # type: ignore[operator]
                    self._fire(inst, t, window_end)
            else:  # firing
                changed = m.values != inst.values
                inst.keep_firing_since = None  # holding again: the same episode goes on
                self._update(inst, rule, m, t)
                if revised and changed:
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

    def _revise_past(self, rules: tuple[TrendRule, ...], point: TrendPoint) -> None:
        for rule in rules:
            if point.window != rule.window:
                continue
            target = self._trend_target(rule, point.key)
            inst = self._states.get(target.fingerprint)
            if inst is None or inst.state != "firing":
                continue
            if inst.fired_window_end is not None and point.window_end < inst.fired_window_end:
                continue  # before the alert fired
            if isinstance(rule, ChangeRule):
                m = measure_change(
                    rule, point, self._latest.get((point.key, rule.baseline_window)), True, self.options.max_evidence
                )
            else:
                m = measure_level(rule, point, True, self.options.max_evidence)  # type: ignore[arg-type]
            if m.holds is None or m.values == inst.values:
                continue
            self._update(inst, rule, m, inst.last_seen_at or min(point.event_time, point.window_end))
            inst.revision += 1
            self._emit(inst, "revised")

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

    # -- bookkeeping --------------------------------------------------------------------------
    def _advance(self, t: datetime) -> None:
        if self.watermark is None or t > self.watermark:
            self.watermark = t
            self._changes.watermark = t

    def _trend_target(self, rule: TrendRule, key: str) -> _Target:
        slot = (rule.name, key)
        target = self._targets.get(slot)
        if target is None:
            target = self._target(rule, trend_labels(rule, key))
            self._targets[slot] = target
        return target

    def _story_target(self, rule: StoryRule, scored: ScoredItem, tickers: str) -> _Target:
        labels = dict(rule.labels)
        labels.update(
            alertname=rule.name, severity=rule.severity, ticker=tickers, story=scored.item.id, source=scored.item.source
        )
        return self._target(rule, labels)

    def _target(self, rule: RuleBase, labels: dict[str, str]) -> _Target:
        receiver = rule.receiver or self.options.default_receiver
        if "..." in rule.group_by:
            group_labels = dict(labels)
        else:
            group_labels = {k: labels[k] for k in rule.group_by if k in labels}
        return _Target(
            fingerprint=fingerprint_of(labels),
            labels=labels,
            receiver=receiver,
            group_key=group_key_of(receiver, group_labels),
            group_labels=group_labels,
        )

    def _new(self, rule: TrendRule | StoryRule, subject: str, target: _Target, t: datetime) -> AlertInstance:
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
        self._shown_cache.pop(inst.fingerprint, None)

    def _dirty(self, inst: AlertInstance) -> None:
        self._shown_cache.pop(inst.fingerprint, None)
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
        generator = f"{self.options.external_url.rstrip('/')}/alerts/{inst.fingerprint}"
        status: Literal["firing", "resolved"] = "resolved" if inst.state == "resolved" else "firing"
        record = Alert(
            fingerprint=inst.fingerprint,
            rule=inst.rule,
            status=status,
            severity=inst.labels.get("severity", "warning"),
            labels=inst.labels,
            annotations=inst.annotations,
            starts_at=_started(inst),
            ends_at=inst.ends_at,
            values=inst.values,
            evidence=inst.evidence,
            model_version=inst.model_version,
            generator_url=generator,
            revision=inst.revision,
        )
        self._events.append(_Event(inst.fingerprint, reason, inst.seq, record, webhook_alert(inst, generator)))
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

    def _notifications(self) -> list[OutboxEntry]:
        if not self._events:
            return []
        now = self.clock.time()
        by_group: dict[str, list[_Event]] = {}
        for ev in self._events:
            by_group.setdefault(self._group_of(ev), []).append(ev)
        entries: list[OutboxEntry] = []
        for group_key, events in ((g, r) for g, evs in by_group.items() for r in _rounds(evs)):
            seqs = sorted({(e.fingerprint, e.seq) for e in events})
            ident = hashlib.sha256(
                (group_key + "|" + ";".join(f"{fp}:{s}" for fp, s in seqs)).encode("utf-8")
            ).hexdigest()[:32]
            reason = min((e.reason for e in events), key=REASON_PRIORITY.__getitem__)
            fingerprints = sorted({e.fingerprint for e in events})
            if self.options.publish_topic:
                body = json.dumps([e.record.model_dump(mode="json") for e in events]).encode("utf-8")
                entries.append(
                    OutboxEntry(
                        idempotency_key=f"bus-{ident}",
                        receiver=BUS_RECEIVER,
                        group_key=group_key,
                        reason=reason,
                        status=events[-1].record.status,
                        fingerprints=fingerprints,
                        body=body,
                        created_at=now,
                        next_attempt_at=now,
                    )
                )
            entry = self._receiver_entry(group_key, events, reason, ident, fingerprints, now)
            if entry is not None:
                entries.append(entry)
        return entries

    def _group_of(self, ev: _Event) -> str:
        inst = self._states.get(ev.fingerprint)
        if inst is not None:
            return inst.group_key
        target = self._target(self._rules[ev.record.rule], ev.record.labels)
        return target.group_key

    def _receiver_entry(
        self, group_key: str, events: list[_Event], reason: str, ident: str, fingerprints: list[str], now: float
    ) -> OutboxEntry | None:
        first = self._states.get(events[0].fingerprint)
        receiver_name = (
            first.receiver if first else (self._rules[events[0].record.rule].receiver or self.options.default_receiver)
        )
        receiver = self.options.receivers.get(receiver_name)
        if receiver is None:
            log.error("alert for an unknown receiver dropped", receiver=receiver_name, group=group_key)
            return None
        shown: dict[str, WebhookAlert] = {}
        for fp in self._groups.get(group_key, ()):
            inst = self._states[fp]
            if inst.state == "firing":
                cached = self._shown_cache.get(fp)
                if cached is None:
                    cached = webhook_alert(inst, f"{self.options.external_url.rstrip('/')}/alerts/{fp}")
                    self._shown_cache[fp] = cached
                shown[fp] = cached
        for ev in events:  # as it was at the transition (it may have resolved later in the batch)
            if ev.shown.status == "firing":
                shown[ev.fingerprint] = ev.shown
        for ev in events:
            if ev.shown.status == "resolved" and ev.fingerprint not in shown:
                rule = self._rules.get(ev.record.rule)
                # Alertmanager must hear every resolve (endsAt), or it keeps the alert until its timeout
                if receiver.type == "alertmanager" or (
                    receiver.send_resolved and rule is not None and rule.send_resolved
                ):
                    shown[ev.fingerprint] = ev.shown
        if not shown:
            return None
        if receiver.type == "alertmanager":
            return alertmanager_entry(receiver_name, group_key, reason, ident, list(shown.values()), now, fingerprints)
        group_labels = first.group_labels if first else {}
        message = build_message(
            receiver=receiver_name,
            group_key=group_key,
            group_labels=group_labels,
            alerts=list(shown.values()),
            external_url=self.options.external_url,
            reason=reason,  # type: ignore[arg-type]
            max_alerts=receiver.max_alerts,
        )
        body = (
            SlackMessage(text=slack_text(message)).model_dump_json().encode()
            if receiver.type == "slack"
            else message.body()
        )
        return OutboxEntry(
            idempotency_key=ident,
            receiver=receiver_name,
            group_key=group_key,
            reason=reason,
            status=message.status,
            fingerprints=fingerprints,
            body=body,
            created_at=now,
            next_attempt_at=now,
        )


def _rounds(events: list[_Event]) -> list[list[_Event]]:
    """One group's events of a batch, cut so that no alert appears twice in one notification: an
    alert that fires and resolves within one batch (a catch-up evaluates minutes of news at once)
    is sent firing, then resolved, as it would have been live."""
    rounds: list[list[_Event]] = [[]]
    for ev in events:
        if any(e.fingerprint == ev.fingerprint for e in rounds[-1]):
            rounds.append([])
        rounds[-1].append(ev)
    return rounds


def _started(inst: AlertInstance) -> datetime:
    """When the episode started: it fired then (a pending instance is never sent)."""
    started = inst.starts_at or inst.active_since or inst.last_seen_at
    assert started is not None, "an alert instance always has a first-seen time"
    return started


def webhook_alert(inst: AlertInstance, generator_url: str) -> WebhookAlert:
    return WebhookAlert(
        status="resolved" if inst.state == "resolved" else "firing",
        labels=inst.labels,
        annotations=inst.annotations,
        startsAt=_started(inst),
        **({"endsAt": inst.ends_at} if inst.ends_at and inst.state == "resolved" else {}),
        generatorURL=generator_url,
        fingerprint=inst.fingerprint,
        values=inst.values,
        evidence=list(inst.evidence),
        model_version=inst.model_version,
        revision=inst.revision,
    )


def alertmanager_entry(
    receiver: str,
    group_key: str,
    reason: str,
    ident: str,
    alerts: list[WebhookAlert],
    now: float,
    fingerprints: list[str] | None = None,
) -> OutboxEntry:
    """An outbox row for an ``alertmanager`` receiver: the group's alerts as a v2 ``postableAlerts`` array."""
    status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
    return OutboxEntry(
        idempotency_key=ident,
        receiver=receiver,
        group_key=group_key,
        reason=reason,
        status=status,
        fingerprints=fingerprints if fingerprints is not None else sorted(a.fingerprint for a in alerts),
        body=alertmanager_body(alerts),
        created_at=now,
        next_attempt_at=now,
    )
