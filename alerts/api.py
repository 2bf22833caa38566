"""``GET /alerts``, ``GET /alerts/{fingerprint}`` and ``POST /alerts/{fingerprint}/ack``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from alerts.alert_store import AlertStore
from alerts.views import AckRequest, AckResponse, AlertList, AlertView, OutboxView


async def json_body_only(request: Request) -> None:
    """415 for a body not sent as JSON (another or no ``Content-Type``). FastAPI would validate its raw
    bytes against the body model, and its 422 handler cannot encode bytes that are not UTF-8 (a 500)."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if (
        media == "application/json"
        or (media.startswith("application/") and media.endswith("+json"))
        or not await request.body()
    ):
        return
    raise HTTPException(status_code=415, detail="send the body as JSON (Content-Type: application/json)")


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

    @router.post("/{fingerprint}/ack", response_model=AckResponse, dependencies=[Depends(json_body_only)])
    def ack_alert(fingerprint: str, body: AckRequest | None = None) -> AckResponse:
        found = store.find_alert(fingerprint, exact=True)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no alert with fingerprint {fingerprint!r}")
        acked = store.ack(found.fingerprint, (body or AckRequest()).by, clock())
        return AckResponse(fingerprint=found.fingerprint, acked=acked)

    return router
