"""Bearer-token authentication of the HTTP API, applied to every route as one FastAPI dependency.

Tokens come from the config (``http.auth.tokens``): each has a name, a secret given inline
(``value``), by environment variable (``env``) or by file (``file``, e.g. a mounted secret), and
scopes. ``admin`` implies ``write``, which implies ``read``.

* A request that changes state (any method but GET/HEAD/OPTIONS) needs a ``write`` token.
* A read needs a ``read`` token, unless the server listens on a loopback address only: then
  anyone who can reach it is already on the machine, and reads are open.
* ``public_paths`` (default ``/healthz`` and ``/readyz``, for probes) are open; ``/ingest/{source}``
  has its own per-source authentication (:mod:`connectors.webhook`); the page's shell (``/``,
  ``/ui/api``, ``/ui/static/...``: no data) is open to reads - the page sends the user's token
  with the requests that fetch data.

Two tokens may not share a value (whichever matched first would decide the scopes), and a token
may not be blank or carry leading or trailing spaces (it could never match a header, which is
stripped): :meth:`HttpAuthSettings.problems` refuses both at start, naming the tokens, never the value.

Tokens are compared in constant time (HMAC-SHA256 digests of equal length, every configured token
compared); failures answer 401 (no or unknown token) or 403 (token lacks the scope) with a JSON
``detail`` that says what is needed, and count in ``finsent_http_auth_failures_total{reason}``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NoReturn
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Scope = Literal["read", "write", "admin"]
IMPLIED: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SELF_AUTHENTICATED_PREFIXES = ("/ingest/",)
PAGE_SHELL = frozenset({"/", "/ui/api"})
PAGE_ASSETS_PREFIX = "/ui/static/"
"""The page's HTML, script and styles (monitor/ui) carry no data - the page fetches that with the
user's token - so reading them is open: a browser cannot add a bearer header to a page load."""


class TokenSettings(BaseModel):
    """One API token: exactly one of ``value``, ``env`` (variable name) or ``file`` (path)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="who holds it (shown in logs, never the token)")
    value: SecretStr | None = None
    env: str | None = None
    file: Path | None = None
    scopes: list[Scope] = Field(default_factory=lambda: list[Scope](["read"]), min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> TokenSettings:
        if sum(x is not None for x in (self.value, self.env, self.file)) != 1:
            raise ValueError("give exactly one of 'value', 'env' or 'file'")
        return self

    def reveal(self) -> str:
        """The token; ValueError saying why when it cannot be read or is too short."""
        if self.value is not None:
            got = self.value.get_secret_value()
        elif self.env is not None:
            got = os.environ.get(self.env, "")
            if not got:
                raise ValueError(f"environment variable {self.env!r} holding the token is not set")
        else:
            try:
                got = Path(self.file).read_text(encoding="utf-8").strip()  # type: ignore[arg-type]
            except (OSError, UnicodeDecodeError) as err:
                raise ValueError(f"cannot read token file {str(self.file)!r}: {err}") from None
        if not got.strip():
            raise ValueError("the token is blank")
        if got != got.strip():
            raise ValueError(
                "the token has leading or trailing whitespace (a bearer header is stripped: it "
                "could never match); remove it"
            )
        if len(got) < 16:
            raise ValueError("a token needs at least 16 characters")
        return got


class HttpAuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenSettings] = Field(default_factory=list)
    public_paths: list[str] = Field(
        default_factory=lambda: ["/healthz", "/readyz"], description="paths open to anyone (health probes)"
    )

    def problems(self) -> list[str]:
        """Config errors: unreadable, blank, padded or short tokens, names or values used twice."""
        out = []
        holders: dict[str, list[str]] = {}  # token value -> names of the tokens that hold it
        for i, t in enumerate(self.tokens):
            try:
                holders.setdefault(t.reveal(), []).append(t.name)
            except ValueError as err:
                out.append(f"http.auth.tokens.{i} ({t.name!r}): {err}")
        names = [t.name for t in self.tokens]
        out += [f"http.auth.tokens: name {n!r} used twice" for n in sorted({n for n in names if names.count(n) > 1})]
        out += [
            f"http.auth.tokens: {' and '.join(repr(n) for n in held)} have the same value; each token needs "
            "its own (one value, one set of scopes)"
            for held in holders.values()
            if len(held) > 1
        ]
        return out


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]", ""})
_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def host_pattern(value: str) -> str:
    """One ``http.allowed_hosts`` entry as the Host check compares it: a name or IP address (IPv6 in
    brackets), ``*.domain`` for a domain's names, or ``*`` for any; ValueError when it is none of these."""
    got = value.strip().lower()
    if got == "*":
        return got
    try:
        ip = ipaddress.ip_address(got.strip("[]"))
    except ValueError:
        if not _HOST_NAME.fullmatch(got) or len(got) > 253:
            raise ValueError(
                f"expected a host name, an IP address, '*.domain' or '*' (no scheme, port or path), got {value[:100]!r}"
            ) from None
        return got.rstrip(".")
    return f"[{ip}]" if ip.version == 6 else str(ip)


def trusted_hosts(bind_host: str, public_url: str | None, allowed: list[str]) -> list[str]:
    """The Host header names the API answers (others get 400, against DNS rebinding): the loopback
    names, the bind host, ``public_url``'s host and ``allowed``. Bound to every interface (0.0.0.0,
    ``::``) with no ``allowed`` list, any name: clients reach it by names this process cannot know
    (reads need a token off loopback)."""
    if bind_host.strip() in WILDCARD_BINDS and not allowed:
        return ["*"]
    names = [*LOOPBACK_NAMES, *(host_pattern(h) for h in allowed)]
    for host in (bind_host, _url_host(public_url)):
        try:
            names.append(host_pattern(host or ""))
        except ValueError:
            pass  # a wildcard bind, or no public_url
    return list(dict.fromkeys(n for n in names if n not in WILDCARD_BINDS))


def _url_host(url: str | None) -> str | None:
    try:
        return urlsplit(url).hostname if url else None
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Checks one request against the configured tokens; a FastAPI dependency (``__call__``)."""

    def __init__(self, settings: HttpAuthSettings, host: str, registry: CollectorRegistry | None = None) -> None:
        if problems := settings.problems():
            raise ValueError("; ".join(problems))
        self._key = os.urandom(32)  # digests of equal length: compare_digest time is independent of the token
        self._tokens = [(t.name, self._digest(t.reveal()), implied_scopes(t.scopes)) for t in settings.tokens]
        self._public = frozenset(settings.public_paths)
        self.open_reads = is_loopback(host)
        self.failures = Counter(
            "finsent_http_auth_failures",
            "HTTP requests refused by authentication",
            ["reason"],
            registry=registry,
        )
        for reason in ("missing", "invalid", "scope"):
            self.failures.labels(reason)

    def _digest(self, token: str) -> bytes:
        return hmac.new(self._key, token.encode("utf-8"), hashlib.sha256).digest()

    def needed_scope(self, request: Request) -> str | None:
        path = request.url.path
        if path in self._public or path.startswith(SELF_AUTHENTICATED_PREFIXES):
            return None
        if request.method in READ_METHODS and (path in PAGE_SHELL or path.startswith(PAGE_ASSETS_PREFIX)):
            return None
        return "read" if request.method in READ_METHODS else "write"

    def __call__(self, request: Request) -> None:
        needed = self.needed_scope(request)
        if needed is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            if needed == "read" and self.open_reads:
                return
            self._fail(
                401,
                "missing",
                f"this endpoint needs a bearer token with scope {needed!r} (header 'Authorization: Bearer <token>')",
            )
        given = self._digest(token)
        found = None
        for name, digest, scopes in self._tokens:  # no early exit: time does not tell which matched
            if hmac.compare_digest(given, digest):
                found = (name, scopes)
        if found is None:
            self._fail(401, "invalid", "invalid bearer token")
        name, scopes = found
        if needed not in scopes:
            self._fail(403, "scope", f"token {name!r} lacks scope {needed!r}")
        request.state.token_name = name

    def _fail(self, status: int, reason: str, detail: str) -> NoReturn:
        self.failures.labels(reason).inc()
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        raise HTTPException(status, detail, headers=headers)


def implied_scopes(scopes: Sequence[str]) -> frozenset[str]:
    return frozenset().union(*(IMPLIED[s] for s in scopes))
