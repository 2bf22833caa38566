"""A receiver that echoes a request's secrets in its error reply (issue #26, item 9): the error kept
in the outbox, shown by GET /alerts and `finsent alerts list`, never repeats them."""

from __future__ import annotations

import httpx

from alerts.delivery import AlertmanagerSender, HttpSender
from alerts.instances import OutboxEntry
from alerts.settings import ReceiverSettings

TOKEN = "s3cr3t-bearer-token-value"
QUERY = "q-secret-9f8e7d"
HMAC = "hmac-signing-key-1234"


def _echo(request: httpx.Request) -> httpx.Response:
    echoed = f"bad request: auth={request.headers.get('authorization')} url={request.url} sig-key? {HMAC}"
    return httpx.Response(400, text=echoed)


def _entry() -> OutboxEntry:
    return OutboxEntry(
        idempotency_key="k",
        receiver="hook",
        group_key="g",
        reason="firing",
        status="firing",
        fingerprints=["f"],
        body=b"{}",
    )


def test_receiver_echoing_header_query_and_signing_secrets_is_masked_in_the_stored_error() -> None:
    settings = ReceiverSettings(
        type="webhook",
        url=f"https://hooks.example.com/in?token={QUERY}",
        secret=HMAC,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    client = httpx.Client(transport=httpx.MockTransport(_echo))
    result = HttpSender("hook", settings, client).send(_entry(), 1, 0.0)
    assert not result.ok and not result.retryable and result.status == 400
    assert result.error and result.error.startswith("HTTP 400: bad request")
    for secret in (TOKEN, QUERY, HMAC):
        assert secret not in result.error, result.error


def test_alertmanager_receiver_echo_is_masked_too() -> None:
    settings = ReceiverSettings(
        type="alertmanager", url="https://am.example.com", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    client = httpx.Client(transport=httpx.MockTransport(_echo))
    result = AlertmanagerSender("am", settings, client).send(_entry(), 1, 0.0)
    assert result.error and TOKEN not in result.error and "HTTP 400" in result.error
