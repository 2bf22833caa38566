"""HMAC-SHA256 request signatures: ``X-Finsent-Signature: t=<unix seconds>,v1=<hex>``.

The signed message is ``f"{t}.".encode() + raw_body`` with the receiver's secret as the key. The
timestamp is part of the MAC, so a receiver that rejects signatures older than a few minutes is
safe from replays; the ``Idempotency-Key`` header (stable across retries of one notification)
lets it drop duplicates. See docs/ALERTS.md for a receiver-side snippet.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Finsent-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-Finsent-Attempt"
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale, or does not match the body."""


def compute(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` at ``timestamp`` (default: now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={compute(secret, t, body)}"


def verify(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> int:
    """Check ``header`` against ``body``; returns the signed timestamp or raises SignatureError."""
    if not header:
        raise SignatureError("missing signature header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        k, sep, v = item.strip().partition("=")
        if sep:
            parts.setdefault(k, []).append(v)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("malformed signature header: no t=<unix seconds>") from None
    candidates = parts.get("v1", [])
    if not candidates:
        raise SignatureError("malformed signature header: no v1=<hex>")
    current = time.time() if now is None else now
    if tolerance_s and abs(current - t) > tolerance_s:
        raise SignatureError(f"signature timestamp {t} is outside the {tolerance_s:g}s tolerance")
    expected = compute(secret, t, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("signature does not match the body")
    return t
