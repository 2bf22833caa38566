"""``GET /alerts``, ``GET /alerts/{fingerprint}`` and ``POST /alerts/{fingerprint}/ack``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, HTTPException, Query

from alerts.store import AlertStore
from alerts.views import AckRequest, AckResponse, AlertList, AlertView, OutboxView


def alerts_router(store: AlertStore, now: Callable[[], datetime] | None = None) -> APIRouter:
    router = APIRouter(prefix="/alerts", tags=["alerts"])
    clock = now or (lambda: datetime.now(timezone.utc))

    @router.get("", response_model=AlertList)
    def list_alerts(
        state: Literal["pending", "firing", "resolved"] | None = Query(default=None),
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> AlertList:
        return AlertList(
            alerts=[AlertView.of(a) for a in store.list_alerts(state)],
            outbox_counts=store.outbox_counts(),
            undelivered=[OutboxView.of(e) for e in store.outbox_entries(("pending", "dead"), limit)],
        )

    @router.get("/{fingerprint}", response_model=AlertView)
    def show_alert(fingerprint: str) -> AlertView:
        found = store.find_alert(fingerprint)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no alert with fingerprint {fingerprint!r}")
        return AlertView.of(found)

    @router.post("/{fingerprint}/ack", response_model=AckResponse)
    def ack_alert(fingerprint: str, body: AckRequest | None = None) -> AckResponse:
        found = store.find_alert(fingerprint, exact=True)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no alert with fingerprint {fingerprint!r}")
        acked = store.ack(found.fingerprint, (body or AckRequest()).by, clock())
        return AckResponse(fingerprint=found.fingerprint, acked=acked)

    return router
