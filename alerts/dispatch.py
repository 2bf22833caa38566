"""Notifications: a batch's transitions, grouped, as outbox rows.

Transitions of one evaluated batch are collected per group (receiver + ``group_by`` labels) into
one Alertmanager-style notification listing the group's firing alerts and those resolved in this
batch. Each notification becomes outbox rows (one for its receiver, one that publishes the changed
alerts as :class:`~monitor.core.records.Alert` records on the bus) with an idempotency key derived
from the alerts and their notification sequence numbers, so the same transition always yields the
same key. Wall time (the injected clock) only stamps the rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass

import structlog

from alerts.clock import Clock
from alerts.instances import AlertInstance, OutboxEntry
from alerts.lifecycle import AlertLifecycle, Transition
from alerts.payload import (
    REASON_PRIORITY,
    SlackMessage,
    WebhookAlert,
    alert_record,
    alertmanager_body,
    build_message,
    slack_text,
    webhook_alert,
)
from alerts.routing import Router
from alerts.ruleset import Rule, RuleSet
from alerts.settings import EngineOptions
from monitor.core.records import Alert

log = structlog.get_logger(__name__)

BUS_RECEIVER = "_bus"
"""Outbox rows that publish Alert records on ``topics.alerts`` (receiver names cannot start with _)."""


@dataclass(frozen=True)
class _Event:
    fingerprint: str
    reason: str
    seq: int
    record: Alert
    shown: WebhookAlert


class Dispatcher:
    def __init__(
        self, rules: RuleSet, router: Router, lifecycle: AlertLifecycle, options: EngineOptions, clock: Clock
    ) -> None:
        self.router = router
        self.lifecycle = lifecycle
        self.options = options
        self.clock = clock
        self._rules: dict[str, Rule] = {r.name: r for r in rules.rules}
        self._shown_cache: dict[str, WebhookAlert] = {}

    def notifications(self, transitions: list[Transition], changed: Collection[str]) -> list[OutboxEntry]:
        """The outbox rows of a batch's transitions; ``changed``: the alerts the batch changed."""
        for fp in changed:
            self._shown_cache.pop(fp, None)
        if not transitions:
            return []
        now = self.clock.time()
        by_group: dict[str, list[_Event]] = {}
        for ev in (self._event(t) for t in transitions):
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

    def _generator_url(self, fingerprint: str) -> str:
        return f"{self.options.external_url.rstrip('/')}/alerts/{fingerprint}"

    def _event(self, transition: Transition) -> _Event:
        inst: AlertInstance = transition.alert
        generator = self._generator_url(inst.fingerprint)
        return _Event(
            inst.fingerprint, transition.reason, inst.seq, alert_record(inst, generator), webhook_alert(inst, generator)
        )

    def _group_of(self, ev: _Event) -> str:
        inst = self.lifecycle.get(ev.fingerprint)
        if inst is not None:
            return inst.group_key
        target = self.router.route(self._rules[ev.record.rule], ev.record.labels)
        return target.group_key

    def _receiver_entry(
        self, group_key: str, events: list[_Event], reason: str, ident: str, fingerprints: list[str], now: float
    ) -> OutboxEntry | None:
        first = self.lifecycle.get(events[0].fingerprint)
        receiver_name = (
            first.receiver if first else (self._rules[events[0].record.rule].receiver or self.options.default_receiver)
        )
        receiver = self.options.receivers.get(receiver_name)
        if receiver is None:
            log.error("alert for an unknown receiver dropped", receiver=receiver_name, group=group_key)
            return None
        shown: dict[str, WebhookAlert] = {}
        for inst in self.lifecycle.group(group_key):
            if inst.state == "firing":
                fp = inst.fingerprint
                cached = self._shown_cache.get(fp)
                if cached is None:
                    cached = webhook_alert(inst, self._generator_url(fp))
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
