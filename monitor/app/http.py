"""The daemon's HTTP server: health, metrics, and the routers each component contributes.

Every route passes :class:`monitor.app.auth.Authenticator` (one app-wide dependency) and a request
body cap (:class:`BodyCap`, 413 past ``http.max_body_bytes``; push ingest enforces its own). Before
both, Starlette's ``TrustedHostMiddleware`` answers 400 to a ``Host`` header that is not one of
:func:`monitor.app.auth.trusted_hosts` (loopback names, the bind host, ``public_url``'s host,
``http.allowed_hosts``): a DNS-rebinding page cannot read the open loopback API."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import structlog
import uvicorn
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.middleware.trustedhost import TrustedHostMiddleware

from monitor import __version__
from monitor.app.auth import SELF_AUTHENTICATED_PREFIXES, Authenticator, trusted_hosts
from monitor.app.config import HttpSettings
from monitor.app.metrics import HttpMetrics
from monitor.app.openapi import document_errors
from monitor.core.health import Health, HealthReport

log = structlog.get_logger(__name__)


class BodyCap:
    """ASGI middleware: a request body past ``limit`` bytes gets 413 before it is read in full
    (declared by Content-Length or counted while streaming). Paths under ``exempt`` cap their own."""

    def __init__(self, app, limit: int, exempt: tuple[str, ...] = SELF_AUTHENTICATED_PREFIXES) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(send)
        # Read the body here, at most ``limit`` bytes, then hand it to the app: a larger one is
        # refused before the app sees any of it (bodies under the cap are small, buffering is cheap).
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._too_large(send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send) -> None:
        body = f'{{"detail":"request body larger than {self.limit} bytes"}}'.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def build_app(
    health: Health, registry: CollectorRegistry, routers: Sequence[APIRouter] = (), http: HttpSettings | None = None
) -> FastAPI:
    http = http or HttpSettings()
    auth = Authenticator(http.auth, http.host, registry)
    app = FastAPI(title="finsent", version=__version__, dependencies=[Depends(auth)])
    app.add_middleware(BodyCap, limit=http.max_body_bytes)
    HttpMetrics(registry).instrument(app)
    hosts = trusted_hosts(http.host, http.public_url, http.allowed_hosts)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)  # outermost: added last
    if hosts == ["*"]:
        log.info("http: any Host header accepted (bound to every interface, no http.allowed_hosts)")

    unhealthy: dict[int | str, dict[str, Any]] = {
        503: {"model": HealthReport, "description": "not live (or not ready): the report says which check"}
    }

    @app.get("/healthz", response_model=HealthReport, responses=unhealthy)
    def healthz() -> JSONResponse:
        report = health.liveness()
        return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)

    @app.get("/readyz", response_model=HealthReport, responses=unhealthy)
    def readyz() -> JSONResponse:
        report = health.readiness()
        return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    document_errors(app, frozenset(http.auth.public_paths))
    return app


class HttpServer:
    """uvicorn in a background thread; :meth:`stop` asks it to finish in-flight requests and exit."""

    def __init__(self, app: FastAPI, host: str, port: int, tls: tuple[str, str] | None = None) -> None:
        cert, key = tls or (None, None)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            ssl_certfile=cert,
            ssl_keyfile=key,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self, timeout_s: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("HTTP server failed to start (port in use?)")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        for server in self._server.servers:
            for sock in server.sockets:
                return sock.getsockname()[1]
        return self._server.config.port

    @property
    def url(self) -> str:
        scheme = "https" if self._server.config.ssl_certfile else "http"
        return f"{scheme}://{self._server.config.host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
