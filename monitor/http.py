"""The daemon's HTTP server: health, metrics, and the routers each component contributes."""

from __future__ import annotations

import threading
import time

import structlog
import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from monitor import __version__
from monitor.health import Health, HealthReport
from monitor.metrics import HttpMetrics

log = structlog.get_logger(__name__)


def build_app(health: Health, registry: CollectorRegistry, routers: list[APIRouter] = ()) -> FastAPI:
    app = FastAPI(title="finsent", version=__version__)
    HttpMetrics(registry).instrument(app)

    @app.get("/healthz", response_model=HealthReport)
    def healthz() -> JSONResponse:
        report = health.liveness()
        return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)

    @app.get("/readyz", response_model=HealthReport)
    def readyz() -> JSONResponse:
        report = health.readiness()
        return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app


class HttpServer:
    """uvicorn in a background thread; :meth:`stop` asks it to finish in-flight requests and exit."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
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
        return f"http://{self._server.config.host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
