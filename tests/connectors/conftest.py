"""Fixtures for connector tests: a local HTTP server for fixture feeds, topic readers, ingest cores."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.waiting import wait_until

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass
class Req:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Resp:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Handler = Callable[[Req], Resp]


class FeedServer:
    """``ThreadingHTTPServer`` on 127.0.0.1:<ephemeral> serving ``routes[path](request)``.

    A body given as an iterable of chunks is sent with chunked encoding (no Content-Length)."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: dict[str, list[Req]] = {}
        server = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                req = Req(
                    "GET",
                    parts.path,
                    {k: v[-1] for k, v in parse_qs(parts.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                )
                server.hits.setdefault(parts.path, []).append(req)
                handler = server.routes.get(parts.path)
                resp = handler(req) if handler else Resp(404, b"not found")
                if resp.delay_s:
                    time.sleep(resp.delay_s)
                try:
                    self.send_response(resp.status)
                    for k, v in resp.headers.items():
                        self.send_header(k, v)
                    if isinstance(resp.body, bytes):
                        self.send_header("Content-Length", str(len(resp.body)))
                        self.end_headers()
                        self.wfile.write(resp.body)
                    else:
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for chunk in resp.body:
                            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, path: str) -> int:
        return len(self.hits.get(path, []))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    srv = FeedServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def static(
    body: bytes, content_type: str = "application/rss+xml", etag: str | None = None, last_modified: str | None = None
) -> Handler:
    """A resource that honours If-None-Match / If-Modified-Since with 304."""

    def handler(req: Req) -> Resp:
        headers = {"Content-Type": content_type}
        if etag:
            headers["ETag"] = etag
        if last_modified:
            headers["Last-Modified"] = last_modified
        if (etag and req.headers.get("if-none-match") == etag) or (
            last_modified and req.headers.get("if-modified-since") == last_modified
        ):
            return Resp(304, b"", {k: v for k, v in headers.items() if k != "Content-Type"})
        return Resp(200, body, headers)

    return handler


def sequence(*responses: Resp) -> Handler:
    """Answers each request with the next response; the last one repeats."""
    it = list(responses)

    def handler(req: Req) -> Resp:
        return it.pop(0) if len(it) > 1 else it[0]

    return handler


# -- reading topics -------------------------------------------------------------------------------
def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list:
    """Every message on ``topic`` from the beginning to the current end offsets (deterministic)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False, group_id=None)
    try:
        deadline = time.monotonic() + timeout_s
        try:
            parts = wait_until(lambda: c.partitions_for_topic(topic), timeout_s, f"the partitions of {topic}")
        except AssertionError:
            return []  # no such topic (yet): nothing on it
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        out = []
        while any(c.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end in {timeout_s}s")
            for records in c.poll(timeout_ms=500).values():
                out.extend(records)
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        c.close()


def news_on(bootstrap: str, topic: str) -> list:
    from monitor.core.records import NewsItem, decode

    return [decode(NewsItem, r.value) for r in read_topic(bootstrap, topic)]


def dead_letters_on(bootstrap: str, topic: str) -> list:
    from monitor.core.records import DeadLetter, decode

    return [decode(DeadLetter, r.value) for r in read_topic(bootstrap, topic)]


@pytest.fixture
def ingest_factory():
    """Builds an ingest core (state, producer, publisher) for settings; closes them at teardown."""
    from monitor.app.component import Context
    from monitor.core.bus.factory import make_bus

    made = []

    def factory(settings):
        from monitor.app.components.ingest import build_core

        bus = make_bus(settings)
        ctx = Context(settings=settings, bus=bus)
        core = build_core(ctx)
        made.append((core, bus))
        return core, ctx

    yield factory
    for core, bus in made:
        try:
            core.close()
        except Exception:
            pass
        bus.close()


def wait_for(
    predicate: Callable[[], object], timeout_s: float = 30.0, interval_s: float = 0.1, what: str = "the condition"
):
    """:func:`tests.waiting.wait_until` under the name the connector tests import."""
    return wait_until(predicate, timeout_s, what, interval_s)
