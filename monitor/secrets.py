"""Keeping secrets out of what finsent prints: config dumps, logs, error messages, health details.

Two complementary tools:

* structural masking (:func:`mask_config`, :func:`mask_url`, :func:`mask_headers`) for data whose
  shape says where secrets live: ``SecretStr`` fields, header values, credential-looking query
  parameters, the password part of a URL, the path of a Slack webhook URL;
* a :class:`Redactor` that knows the actual secret values of one configuration and replaces any
  occurrence of them in free text (log lines, exception messages), wherever they ended up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "**********"

SAFE_HEADERS = frozenset({"accept", "accept-language", "accept-encoding", "content-type", "user-agent", "cache-control"})
"""Header values shown in clear; every other header value is masked (it may be a credential)."""

_SECRET_NAME = re.compile(
    r"(?i)(auth|token|secret|passw|pwd|api[-_]?key|apikey|access[-_]?key|key$|^key|sig|session|cookie|credential)"
)
"""Names of query parameters, JSON keys and headers that carry credentials."""

_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_MIN_SECRET_CHARS = 4
"""Shorter 'secrets' are not redacted from free text (they would mangle ordinary words)."""


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def mask_url(url: str) -> str:
    """``url`` with its password, credential-looking query values and Slack hook path masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    path = parts.path
    if parts.hostname and parts.hostname.endswith("hooks.slack.com") and path.startswith("/services/"):
        path = "/services/" + MASK
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def mask_urls_in(text: str) -> str:
    """Every URL inside free text (an httpx error message, say) passed through :func:`mask_url`."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


def mask_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if k.lower() in SAFE_HEADERS else MASK) for k, v in headers.items()}


def mask_config(data: Any, key: str = "") -> Any:
    """A JSON-ready config dump with every secret-bearing value masked (SecretStr fields already
    dump as ``**********``): ``headers`` values, credential-named ``params``, and every URL."""
    if isinstance(data, dict):
        if key == "headers":
            return mask_headers(data)
        if key == "params":
            return {k: (MASK if is_secret_name(k) else mask_config(v, k)) for k, v in data.items()}
        return {k: mask_config(v, k) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_config(v, key) for v in data]
    if isinstance(data, str) and "://" in data:
        return mask_url(data)
    return data


def secret_values(data: Any, key: str = "") -> set[str]:
    """The secret strings inside a config (``model_dump()`` in python mode, SecretStr revealed by
    the caller's ``reveal``): header values, credential-named params, URL passwords and tokens."""
    out: set[str] = set()
    if isinstance(data, dict) and set(data) == {"value", "env"} and isinstance(data.get("env"), str):
        got = os.environ.get(data["env"])  # a connectors Secret given by environment variable
        if got:
            out.add(got)
    if isinstance(data, dict):
        for k, v in data.items():
            k = str(k)
            if key == "headers" and k.lower() not in SAFE_HEADERS and isinstance(v, str):
                out.add(v)
                out.update(p for p in v.split() if len(p) >= 8)  # "Bearer <token>": the token alone too
            elif key == "params" and is_secret_name(k) and isinstance(v, str):
                out.add(v)
            else:
                out |= secret_values(v, k)
    elif isinstance(data, (list, tuple)):
        for v in data:
            out |= secret_values(v, key)
    elif isinstance(data, str) and "://" in data:
        masked = mask_url(data)
        if masked != data:
            out.add(data)
            try:
                parts = urlsplit(data)
            except ValueError:
                return out
            if parts.password:
                out.add(parts.password)
            out.update(v for k, v in parse_qsl(parts.query) if is_secret_name(k))
            if parts.hostname and parts.hostname.endswith("hooks.slack.com"):
                out.add(parts.path.removeprefix("/services/"))
    elif hasattr(data, "get_secret_value"):
        value = data.get_secret_value()
        if isinstance(value, str):
            out.add(value)
    return out


class Redactor:
    """Replaces known secret values (and credentials inside URLs) in free text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if isinstance(s, str) and len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in values)) if values else None

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return mask_urls_in(text) if "://" in text else text

    def scrub(self, value: Any) -> Any:
        """Strings, and strings inside dicts/lists/tuples, redacted; everything else as is."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v) for v in value]
        if isinstance(value, BaseException):
            return self(f"{type(value).__name__}: {value}")
        return value

    def processor(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        """A structlog processor: every value of every log line redacted."""
        return {k: self.scrub(v) for k, v in event_dict.items()}
