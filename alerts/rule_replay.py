"""``finsent rules test``: what a rules file would have done over a recorded stream.

The replay is a JSONL file of :class:`~monitor.core.records.TrendPoint` and
:class:`~monitor.core.records.ScoredItem` records (each line has its ``kind``), e.g. a dump of
``news.trends``. Records are evaluated one at a time in file order, with a tick after each, on
a throw-away in-memory store: the same file always gives the same notifications.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from alerts.alert_store import AlertStore
from alerts.clock import ManualClock
from alerts.dispatch import BUS_RECEIVER
from alerts.evaluator import AlertEngine
from alerts.ruleset import RuleSet
from alerts.settings import EngineOptions
from monitor.core.records import Alert, Record, RecordDecodeError, ScoredItem, TrendPoint, decode

_KINDS: dict[str, type[Record]] = {TrendPoint.KIND: TrendPoint, ScoredItem.KIND: ScoredItem}


class ReplayError(ValueError):
    pass


def read_replay(path: str | Path) -> Iterator[Record]:
    with Path(path).open("r", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                kind = json.loads(line).get("kind")
            except (json.JSONDecodeError, AttributeError):
                raise ReplayError(f"{path}:{n}: not a JSON object") from None
            model = _KINDS.get(kind)
            if model is None:
                raise ReplayError(f"{path}:{n}: kind {kind!r} is not one of {', '.join(sorted(_KINDS))}")
            try:
                yield decode(model, line)
            except RecordDecodeError as err:
                raise ReplayError(f"{path}:{n}: {err}") from None


class ReplayNotification(BaseModel):
    at: datetime
    """Event time (the engine's watermark) when the notification was produced."""
    receiver: str
    reason: str
    alerts: list[Alert]


@dataclass
class ReplayResult:
    records: int
    notifications: list[ReplayNotification]


def replay(rules: RuleSet, records: Iterator[Record], options: EngineOptions | None = None) -> ReplayResult:
    options = options or EngineOptions()
    options.publish_topic = "replay"
    engine = AlertEngine(rules, AlertStore(":memory:"), options, ManualClock())
    out: list[ReplayNotification] = []
    count = 0
    for record in records:
        count += 1
        engine.observe(record)
        changes = engine.commit()
        receivers = {e.group_key: e.receiver for e in changes.outbox if e.receiver != BUS_RECEIVER}
        for e in changes.outbox:
            if e.receiver != BUS_RECEIVER:
                continue
            out.append(
                ReplayNotification(
                    at=engine.watermark,  # type: ignore[arg-type]
                    receiver=receivers.get(e.group_key, "-"),
                    reason=e.reason,
                    alerts=[Alert.model_validate(a) for a in json.loads(e.body)],
                )
            )
    return ReplayResult(records=count, notifications=out)


def describe(n: ReplayNotification) -> list[str]:
    lines = []
    for a in n.alerts:
        values = " ".join(f"{k}={v:.3g}" for k, v in a.values.items())
        label = {"firing": "FIRING", "resolved": "RESOLVED"}[a.status]
        if n.reason in ("revised", "repeat"):
            label = n.reason.upper()
        summary = a.annotations.get("summary", "")
        subject = a.labels.get("key") or a.labels.get("story", "")
        lines.append(
            f"{n.at.isoformat()} {label:<8} {a.rule} [{subject}] rev={a.revision} {values}"
            + (f" -- {summary}" if summary else "")
            + f" -> {n.receiver}"
        )
    return lines
