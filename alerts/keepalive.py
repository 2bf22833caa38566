"""Keeping finsent's firing alerts alive in Alertmanager.

Alertmanager ends an alert posted without ``endsAt`` once ``resolve_timeout`` (5m by default)
passes without it being posted again. For each ``alertmanager`` receiver this re-queues the firing
alerts of every group with nothing pending every ``resend_interval``, through the same outbox
(retries, dead letters, per-group order) as any notification. The first pass after start-up runs
at once, so alerts that expired while finsent was down come back without waiting.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping

import structlog

from alerts.alert_store import AlertStore
from alerts.clock import Clock, SystemClock
from alerts.dispatch import alertmanager_entry
from alerts.instances import AlertInstance, OutboxEntry
from alerts.payload import webhook_alert
from alerts.settings import ReceiverSettings

log = structlog.get_logger(__name__)


class AlertmanagerKeepalive:
    def __init__(
        self,
        store: AlertStore,
        receivers: Mapping[str, ReceiverSettings],
        external_url: str,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.external_url = external_url.rstrip("/")
        self.clock = clock or SystemClock()
        self.intervals = {
            name: r.resend_interval.total_seconds() for name, r in receivers.items() if r.type == "alertmanager"
        }
        self._last: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def tick(self) -> int:
        """Queue the re-sends that are due; returns the number of outbox rows queued."""
        now = self.clock.time()
        queued = 0
        for name, every in self.intervals.items():
            last = self._last.get(name)
            if last is not None and now - last < every:
                continue
            self._last[name] = now
            queued += self.store.refresh_firing(name, functools.partial(self._entry, name, now=now))
        if queued:
            log.debug("alertmanager re-send queued", rows=queued)
        return queued

    def _entry(self, receiver: str, group_key: str, members: list[AlertInstance], now: float) -> OutboxEntry:
        alerts = [webhook_alert(i, f"{self.external_url}/alerts/{i.fingerprint}") for i in members]
        ident = hashlib.sha256(f"keepalive|{receiver}|{group_key}|{now!r}".encode()).hexdigest()[:32]
        return alertmanager_entry(receiver, group_key, "repeat", ident, alerts, now)
