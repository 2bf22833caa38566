"""Keeping secrets out of what finsent prints: config dumps, logs, error messages, health details.

Two complementary tools:

* structural masking (:func:`mask_config`, :func:`mask_url`, :func:`mask_headers`) for data whose
  shape says where secrets live: ``SecretStr`` fields, header values, credential-looking query
  parameters, the password part of a URL, the path of a Slack webhook URL;
* a :class:`Redactor` that knows the actual secret values of one configuration and replaces any
  occurrence of them in free text (log lines, exception messages), wherever they ended up.

:func:`mask_message` is the one rule for every error message shown to a person: known secret
values and URL credentials masked (the :class:`Redactor`), control and bidirectional-override
characters escaped (a hostile title or key cannot reorder or hide what the terminal shows).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "**********"

SAFE_HEADERS = frozenset(
    {"accept", "accept-language", "accept-encoding", "content-type", "user-agent", "cache-control"}
)
"""Header values shown in clear; every other header value is masked (it may be a credential)."""

_SECRET_NAME = re.compile(
    r"(?i)(auth|token|secret|passw|pwd|api[-_]?key|apikey|access[-_]?key|key$|^key|sig|session|cookie|credential)"
)
"""Names of query parameters, JSON keys and headers that carry credentials."""

_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_MIN_SECRET_CHARS = 4
"""Shorter 'secrets' are not redacted from free text (they would mangle ordinary words)."""


SECRET_FIELDS = frozenset({"sasl_password", "password", "secret"})
"""Config fields whose value is a secret, whatever its type (a numeric password included)."""
_SECRET_SECTIONS = SECRET_FIELDS | {"auth", "tokens", "headers", "params"}
"""A config path through one of these may hold a secret: its value is never echoed in an error."""

_UNSAFE_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
"""Control characters, zero-width characters and bidirectional marks, embeddings, overrides and
isolates (U+202E RIGHT-TO-LEFT OVERRIDE and its kin): never shown raw in an error message."""


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def is_secret_field(path: Sequence[Any]) -> bool:
    """Whether the config value at ``path`` (``("kafka", "sasl_password")``) may be a secret."""
    return any(str(p).lower() in _SECRET_SECTIONS for p in path)


def escape_controls(text: str) -> str:
    """``text`` with control, zero-width and bidi characters written as ``\\uXXXX`` escapes."""
    if text.isprintable():
        return text
    return _UNSAFE_CHAR.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def mask_message(text: str, secrets: Iterable[str] = ()) -> str:
    """One error message as it may be shown: ``secrets`` and URL credentials masked, control and
    bidi characters escaped. Every config and rules error passes here. URLs are masked first, so
    a URL that holds a password shows with only its password masked."""
    return escape_controls(Redactor(secrets)(mask_urls_in(text) if "://" in text else text))


def http_url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL with a host (None when it is). The message never repeats
    the URL (the caller's error shows it once, masked)."""
    if any(c.isspace() for c in url) or not url.isprintable():
        return "a URL must not contain spaces, line breaks or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        return f"not a valid URL ({err})"
    if parts.scheme.lower() not in ("http", "https"):
        return "expected an http:// or https:// URL"
    if not parts.hostname:
        return "the URL has no host (expected http(s)://HOST[:PORT]/...)"
    if port == 0:
        return "port 0 is not a port to connect to"
    return None


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
    if isinstance(data, dict) and key in ("secret", "auth", "tokens"):  # raw config: {value: ...} or {env: ...}
        if isinstance(data.get("value"), (str, int, float)) and not isinstance(data.get("value"), bool):
            out.add(str(data["value"]))
        if isinstance(data.get("env"), str) and (got := os.environ.get(data["env"])):
            out.add(got)
    if isinstance(data, dict):
        for k, v in data.items():
            k = str(k)
            if k.lower() in SECRET_FIELDS and isinstance(v, (str, int, float)) and not isinstance(v, bool):
                out.add(str(v))  # a raw config's password, numeric or not
            elif key == "headers" and k.lower() not in SAFE_HEADERS and isinstance(v, str):
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
        values = sorted(
            {s for s in secrets if isinstance(s, str) and len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True
        )
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

    def processor(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        """A structlog processor: every value of every log line redacted."""
        return {k: self.scrub(v) for k, v in event_dict.items()}
