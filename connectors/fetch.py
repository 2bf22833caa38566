"""HTTP GET for pollers: conditional requests, timeouts, retries with backoff and jitter,
a redirect limit, a body-size cap (streamed, so a huge or gzip-bombed body is cut off early)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import structlog

from connectors.settings import HttpSourceBase
from monitor.core.backoff import Backoff
from monitor.core.secrets import mask_urls_in

log = structlog.get_logger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class FetchError(Exception):
    """A fetch that failed for good (after retries); ``kind`` labels the error metric."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(mask_urls_in(message))  # URLs may carry tokens (userinfo, ?api_key=...)
        self.kind = kind


class Stopped(Exception):
    """The stage was asked to stop while waiting to retry."""


@dataclass
class FetchResult:
    status: int
    url: str
    """The final URL after redirects (the base for relative links)."""
    body: bytes
    headers: Mapping[str, str]
    attempts: int

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class Fetcher:
    """One httpx client per source; safe to call from one poller thread at a time."""

    def __init__(
        self,
        source: HttpSourceBase,
        stop: threading.Event | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.source = source
        self.stop = stop or threading.Event()
        self.rng = rng or random.Random()
        self.backoff = Backoff(source.backoff_s, source.backoff_max_s, jitter=0.5)
        self._client = httpx.Client(
            timeout=httpx.Timeout(source.timeout_s),
            follow_redirects=True,
            max_redirects=source.max_redirects,
            headers={"User-Agent": source.user_agent, "Accept-Encoding": "gzip, deflate", **source.headers},
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> FetchResult:
        """GET with retries on timeouts, connection errors, 429 and 5xx. Raises :class:`FetchError`."""
        hdrs = dict(headers or {})
        if etag:
            hdrs["If-None-Match"] = etag
        if last_modified:
            hdrs["If-Modified-Since"] = last_modified
        attempts = self.source.retries + 1
        last: FetchError | None = None
        retry_after: float | None = None
        for attempt in range(attempts):
            if attempt:
                delay = self.backoff.delay(attempt, self.rng, retry_after)
                log.info(
                    "retrying fetch",
                    source=self.source.name,
                    url=url,
                    attempt=attempt + 1,
                    delay_s=round(delay, 2),
                    error=str(last),
                )
                if self.stop.wait(delay):
                    raise Stopped()
            retry_after = None
            try:
                status, final_url, body, resp_headers = self._once(url, params, hdrs)
            except FetchError as err:
                last = err
                if err.kind in ("timeout", "connect", "network"):
                    continue
                raise
            if status in RETRYABLE_STATUS:
                last = FetchError("http_5xx" if status >= 500 else "http_4xx", f"HTTP {status} from {url}")
                retry_after = _retry_after(resp_headers.get("retry-after"))
                continue
            if status >= 400:
                raise FetchError("http_5xx" if status >= 500 else "http_4xx", f"HTTP {status} from {url}")
            return FetchResult(status, final_url, body, resp_headers, attempt + 1)
        assert last is not None
        raise last

    def _once(
        self, url: str, params: Mapping[str, str] | None, headers: Mapping[str, str]
    ) -> tuple[int, str, bytes, Mapping[str, str]]:
        cap = self.source.max_bytes
        deadline = time.monotonic() + 3 * self.source.timeout_s
        try:
            with self._client.stream("GET", url, params=params, headers=headers) as resp:
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > cap and resp.status_code < 300:
                    raise FetchError("too_large", f"{url}: Content-Length {declared} exceeds the {cap}-byte cap")
                chunks: list[bytes] = []
                size = 0
                if resp.status_code < 300:
                    for chunk in resp.iter_bytes():
                        size += len(chunk)
                        if size > cap:
                            raise FetchError("too_large", f"{url}: body exceeds the {cap}-byte cap")
                        if time.monotonic() > deadline:
                            raise FetchError(
                                "timeout", f"{url}: body still arriving after {3 * self.source.timeout_s}s"
                            )
                        chunks.append(chunk)
                headers_out = {k.lower(): v for k, v in resp.headers.items()}
                return resp.status_code, str(resp.url), b"".join(chunks), headers_out
        except httpx.TooManyRedirects as err:
            raise FetchError("redirects", f"{url}: more than {self.source.max_redirects} redirects") from err
        except httpx.TimeoutException as err:
            raise FetchError(
                "timeout", f"{url}: timed out after {self.source.timeout_s}s ({type(err).__name__})"
            ) from err
        except httpx.ConnectError as err:
            raise FetchError("connect", f"{url}: cannot connect: {err}") from err
        except httpx.DecodingError as err:
            raise FetchError("malformed", f"{url}: bad content encoding: {err}") from err
        except httpx.HTTPError as err:
            raise FetchError("network", f"{url}: {type(err).__name__}: {err}") from err


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None
