"""The notification bodies: Alertmanager webhook v4 envelope, extended; Slack-style text; an
alert as Alertmanager's v2 API and as the :class:`~monitor.core.records.Alert` record takes it.

A receiver that understands Alertmanager's webhook (``version: "4"``) understands these. finsent
adds, per alert, ``values`` (the numbers that fired), ``evidence`` (the headlines behind them),
``model_version`` and ``revision``; and, per notification, ``reason`` (why it was sent:
``firing``, ``resolved``, ``revised`` or ``repeat``). Unknown fields are ignored by Alertmanager
consumers, so the extension is compatible.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alerts.instances import AlertInstance
from monitor.core.records import Alert, Evidence, UtcDatetime

ZERO_TIME = datetime(1, 1, 1, tzinfo=timezone.utc)
"""Alertmanager's ``endsAt`` for an alert that is still firing."""

NotificationReason = Literal["firing", "resolved", "revised", "repeat"]
REASON_PRIORITY: dict[str, int] = {"firing": 0, "resolved": 1, "revised": 2, "repeat": 3}


class WebhookAlert(BaseModel):
    """One alert in the envelope (Alertmanager fields, then finsent's extensions)."""

    model_config = ConfigDict(frozen=True)
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: UtcDatetime
    endsAt: UtcDatetime = ZERO_TIME
    generatorURL: str
    fingerprint: str
    values: dict[str, float] = Field(default_factory=dict)
    evidence: list[Evidence] = Field(default_factory=list)
    model_version: str | None = None
    revision: int = 0


class WebhookMessage(BaseModel):
    """Alertmanager webhook v4 envelope (``version: "4"``) plus ``reason``."""

    model_config = ConfigDict(frozen=True)
    version: Literal["4"] = "4"
    groupKey: str
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str]
    commonLabels: dict[str, str]
    commonAnnotations: dict[str, str]
    externalURL: str
    alerts: list[WebhookAlert]
    reason: NotificationReason = "firing"

    def body(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


class SlackMessage(BaseModel):
    text: str


def common(dicts: list[dict[str, str]]) -> dict[str, str]:
    """The key/value pairs every dict shares (Alertmanager's commonLabels/commonAnnotations)."""
    if not dicts:
        return {}
    out = dict(dicts[0])
    for d in dicts[1:]:
        out = {k: v for k, v in out.items() if d.get(k) == v}
    return out


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


def alert_record(inst: AlertInstance, generator_url: str) -> Alert:
    """The alert as published on ``topics.alerts``."""
    status: Literal["firing", "resolved"] = "resolved" if inst.state == "resolved" else "firing"
    return Alert(
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
        generator_url=generator_url,
        revision=inst.revision,
    )


def build_message(
    *,
    receiver: str,
    group_key: str,
    group_labels: dict[str, str],
    alerts: list[WebhookAlert],
    external_url: str,
    reason: NotificationReason,
    max_alerts: int = 0,
) -> WebhookMessage:
    """Firing alerts first (oldest first), then resolved; truncated to ``max_alerts`` if set."""
    ordered = sorted(alerts, key=lambda a: (a.status != "firing", a.startsAt, a.fingerprint))
    shown = ordered[:max_alerts] if max_alerts else ordered
    return WebhookMessage(
        groupKey=group_key,
        truncatedAlerts=len(ordered) - len(shown),
        status="firing" if any(a.status == "firing" for a in ordered) else "resolved",
        receiver=receiver,
        groupLabels=group_labels,
        commonLabels=common([a.labels for a in ordered]),
        commonAnnotations=common([a.annotations for a in ordered]),
        externalURL=external_url,
        alerts=shown,
        reason=reason,
    )


def evidence_note(e: Evidence) -> str:
    """``score -0.91``, or for a ticker's evidence ``INTC score -0.85, relevance 0.90``."""
    note = f"score {e.score:+.2f}" if e.ticker is None else f"{e.ticker} score {e.score:+.2f}"
    if e.relevance is not None:
        note += f", relevance {e.relevance:.2f}"
    return note


def evidence_detail(evidence: list[Evidence] | tuple[Evidence, ...]) -> str:
    """``(source, ...)`` of the top headline: with every ticker the alert scored it for (a story
    alert on several tickers has one evidence entry per ticker, all of the same story)."""
    top = evidence[0]
    notes = [evidence_note(e) for e in evidence if e.id == top.id] if top.ticker is not None else [evidence_note(top)]
    return f"({top.source}, {'; '.join(notes)})"


def slack_text(message: WebhookMessage) -> str:
    """A compact human summary: one line per alert, with the top headline."""
    title = {"firing": "FIRING", "resolved": "RESOLVED", "revised": "REVISED", "repeat": "STILL FIRING"}[message.reason]
    lines = [
        f"*[{title}:{sum(a.status == 'firing' for a in message.alerts)}]* "
        + ", ".join(f"{k}={v}" for k, v in message.groupLabels.items())
    ]
    for a in message.alerts:
        summary = a.annotations.get("summary") or a.labels.get("alertname", a.fingerprint)
        lines.append(f"- [{a.status}] {summary}")
        if a.evidence:
            e = a.evidence[0]
            link = f"<{e.url}|{e.title}>" if e.url else e.title
            lines.append(f"    {link} {evidence_detail(a.evidence)}")
    if message.truncatedAlerts:
        lines.append(f"... and {message.truncatedAlerts} more")
    return "\n".join(lines)


class PostableAlert(BaseModel):
    """One alert of Alertmanager's ``POST /api/v2/alerts`` (``postableAlert`` in its OpenAPI spec).

    A firing alert carries no ``endsAt``: Alertmanager then ends it ``resolve_timeout`` after the
    last time it was posted, which is why firing alerts are re-sent (``resend_interval``). A
    resolved one carries its ``endsAt``, which resolves it in Alertmanager at once.
    """

    model_config = ConfigDict(frozen=True)
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: UtcDatetime
    endsAt: UtcDatetime | None = None
    generatorURL: str


def postable(alert: WebhookAlert) -> PostableAlert:
    """The Alertmanager v2 form of an alert; finsent's numbers travel as ``value_*`` annotations."""
    annotations = dict(alert.annotations)
    for name, value in alert.values.items():
        annotations.setdefault(f"value_{name}", f"{value:g}")
    if alert.model_version:
        annotations.setdefault("model_version", alert.model_version)
    if alert.evidence:
        annotations.setdefault("evidence", f"{alert.evidence[0].title} {evidence_detail(alert.evidence)}")
    return PostableAlert(
        labels=alert.labels,
        annotations=annotations,
        startsAt=alert.startsAt,
        endsAt=alert.endsAt if alert.status == "resolved" else None,
        generatorURL=alert.generatorURL,
    )


def alertmanager_body(alerts: list[WebhookAlert]) -> bytes:
    """The JSON array ``POST /api/v2/alerts`` takes."""
    items = [postable(a).model_dump(mode="json", exclude_none=True) for a in alerts]
    return json.dumps(items, ensure_ascii=False).encode("utf-8")
