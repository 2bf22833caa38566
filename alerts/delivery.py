"""Sending one outbox entry to one receiver, and what the answer means for retrying.

* 2xx: delivered.
* 5xx, timeouts, connection errors: retry with exponential backoff and jitter.
* 429: retry, no sooner than ``Retry-After`` (seconds or an HTTP date) when given.
* any other 4xx (and 3xx): permanent failure, dead-lettered at once - retrying will not help.
"""

from __future__ import annotations

import email.utils
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import structlog

from alerts.instances import OutboxEntry
from alerts.settings import ReceiverSettings, RetrySettings
from monitor.core import signing
from monitor.core.backoff import Backoff
from monitor.core.bus.base import BusError, Producer
from monitor.core.bus.codec import send_record
from monitor.core.records import Alert
from monitor.core.secrets import Redactor, mask_urls_in

log = structlog.get_logger(__name__)

try:
    from monitor import __version__ as _VERSION
except ImportError:  # pragma: no cover
    _VERSION = "0"
USER_AGENT = f"finsent/{_VERSION}"


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    retryable: bool = False
    status: int | None = None
    retry_after: float | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.error:  # stored in the outbox and shown by the API: no credentials inside URLs
            object.__setattr__(self, "error", mask_urls_in(self.error))


class Sender(Protocol):
    def send(self, entry: OutboxEntry, attempt: int, now: float) -> DeliveryResult: ...

    def close(self) -> None: ...


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def classify_response(response: httpx.Response, now: float) -> DeliveryResult:
    status = response.status_code
    if 200 <= status < 300:
        return DeliveryResult(ok=True, status=status)
    detail = response.text[:200] if response.content else ""
    error = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status == 429:
        return DeliveryResult(
            ok=False,
            retryable=True,
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), now),
            error=error,
        )
    if status >= 500:
        return DeliveryResult(
            ok=False,
            retryable=True,
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), now),
            error=error,
        )
    return DeliveryResult(ok=False, retryable=False, status=status, error=error)


def receiver_secrets(settings: ReceiverSettings) -> list[str]:
    """What a receiver's own error reply must never show: its signing secret, its header values
    (and the token inside ``Bearer …``), and the password and query values of its URL."""
    from urllib.parse import parse_qsl, urlsplit

    out: list[str] = []
    if settings.secret is not None:
        out.append(settings.secret.get_secret_value())
    for value in settings.headers.values():
        out += [value, value.split()[-1]] if value.strip() else []
    if settings.url:
        try:
            parts = urlsplit(settings.url)
            out += [v for _, v in parse_qsl(parts.query)] + ([parts.password] if parts.password else [])
        except ValueError:
            pass
    return out


class HttpSender:
    """POSTs the entry's body (webhook JSON or Slack text), signed when the receiver has a secret.

    An error kept for the outbox and the API never repeats the receiver's secrets, even when the
    receiver echoes a header or query value in its reply (:func:`receiver_secrets`)."""

    def __init__(self, name: str, settings: ReceiverSettings, client: httpx.Client | None = None) -> None:
        self.name = name
        self.settings = settings
        self._redact = Redactor(receiver_secrets(settings))
        timeout = settings.timeout.total_seconds()
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False)
        self._timeout = httpx.Timeout(timeout)

    def headers(self, entry: OutboxEntry, attempt: int, now: float) -> dict[str, str]:
        headers = {
            **self.settings.headers,
            "Content-Type": entry.content_type,
            "User-Agent": USER_AGENT,
            signing.IDEMPOTENCY_HEADER: entry.idempotency_key,
            signing.ATTEMPT_HEADER: str(attempt),
        }
        if self.settings.secret is not None:
            headers[signing.SIGNATURE_HEADER] = signing.sign(
                self.settings.secret.get_secret_value(), entry.body, int(now)
            )
        return headers

    def send(self, entry: OutboxEntry, attempt: int, now: float) -> DeliveryResult:
        result = self._send(entry, attempt, now)
        if result.error:
            object.__setattr__(result, "error", self._redact(result.error))
        return result

    def _send(self, entry: OutboxEntry, attempt: int, now: float) -> DeliveryResult:
        assert self.settings.url is not None
        try:
            response = self._client.post(
                self.settings.url, content=entry.body, headers=self.headers(entry, attempt, now), timeout=self._timeout
            )
        except httpx.TimeoutException as err:
            return DeliveryResult(ok=False, retryable=True, error=f"timeout: {type(err).__name__}")
        except httpx.TransportError as err:
            return DeliveryResult(ok=False, retryable=True, error=f"connection error: {type(err).__name__}: {err}")
        return classify_response(response, now)

    def close(self) -> None:
        if self._own_client:
            self._client.close()


class AlertmanagerSender(HttpSender):
    """POSTs the entry's ``postableAlerts`` array to ``{url}/api/v2/alerts``.

    Alertmanager answers a good post with 200 and an empty (or JSON) body; anything else that
    claims success (an HTML page from a proxy, a truncated reply) is treated as *not delivered*
    and retried, so the alert stays in the outbox until a real Alertmanager has it. A 400 means
    Alertmanager rejected the alerts themselves: retrying the same bytes cannot help.
    """

    API_PATH = "/api/v2/alerts"

    def __init__(self, name: str, settings: ReceiverSettings, client: httpx.Client | None = None) -> None:
        super().__init__(name, settings, client)
        assert settings.url is not None
        self.endpoint = settings.url.rstrip("/") + self.API_PATH

    def _send(self, entry: OutboxEntry, attempt: int, now: float) -> DeliveryResult:
        try:
            response = self._client.post(
                self.endpoint, content=entry.body, headers=self.headers(entry, attempt, now), timeout=self._timeout
            )
            body = response.content  # reading a truncated body raises here, still a transport error
        except httpx.TimeoutException as err:
            return DeliveryResult(ok=False, retryable=True, error=f"alertmanager timeout: {type(err).__name__}")
        except httpx.TransportError as err:
            return DeliveryResult(
                ok=False,
                retryable=True,
                error=f"alertmanager unreachable or malformed reply: {type(err).__name__}: {err}",
            )
        result = classify_response(response, now)
        if result.ok and body.strip():
            try:
                json.loads(body)
            except ValueError:
                return DeliveryResult(
                    ok=False,
                    retryable=True,
                    status=response.status_code,
                    error=f"malformed Alertmanager response (HTTP {response.status_code}, not JSON): {body[:120]!r}",
                )
        return result


class FileSender:
    """Appends each notification as one JSON line (``path: "-"`` writes to stdout) and logs it."""

    def __init__(self, name: str, path: Path | None) -> None:
        self.name = name
        self.path = path

    def send(self, entry: OutboxEntry, attempt: int, now: float) -> DeliveryResult:
        line = json.dumps({"idempotency_key": entry.idempotency_key, **json.loads(entry.body)}, ensure_ascii=False)
        try:
            if self.path is None or str(self.path) == "-":
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
        except OSError as err:
            return DeliveryResult(ok=False, retryable=True, error=f"write failed: {err}")
        log.warning(
            "ALERT " + entry.reason,
            receiver=self.name,
            status=entry.status,
            group=entry.group_key,
            path=str(self.path or "-"),
        )
        return DeliveryResult(ok=True)

    def close(self) -> None:
        return None


class BusSender:
    """Publishes the entry's Alert records on the alerts topic, keyed by fingerprint."""

    def __init__(self, producer: Producer, topic: str, timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s

    def send(self, entry: OutboxEntry, attempt: int, now: float) -> DeliveryResult:
        try:
            records = [Alert.model_validate(d) for d in json.loads(entry.body)]
            pending = [send_record(self.producer, self.topic, r, key=r.fingerprint) for r in records]
            for d in pending:
                d.get(timeout=self.timeout_s)
        except BusError as err:
            return DeliveryResult(ok=False, retryable=True, error=f"bus: {err}")
        return DeliveryResult(ok=True)

    def close(self) -> None:
        return None


def retry_backoff(s: RetrySettings) -> Backoff:
    """The delivery retry policy ``alerts.retry`` describes."""
    return Backoff(
        initial_s=s.initial_backoff.total_seconds(),
        max_s=s.max_backoff.total_seconds(),
        multiplier=s.multiplier,
        jitter=s.jitter,
        max_retry_after_s=s.max_retry_after.total_seconds(),
    )
