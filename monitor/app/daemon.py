"""The supervisor: runs stages in threads beside the HTTP server and stops them cleanly.

A stage is anything with a ``name``, a ``run(stop)`` loop that returns soon after ``stop`` is set
(finishing and committing its in-flight work), and a ``ready()`` check. A stage that dies takes
the daemon down with a non-zero exit, so a supervisor (systemd, compose) restarts it: offsets are
only committed after processing, so nothing accepted is lost.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from fastapi import APIRouter
from prometheus_client import CollectorRegistry

from monitor.app.config import HttpSettings
from monitor.app.http import HttpServer, build_app
from monitor.core.bus.base import Bus
from monitor.core.health import Health
from monitor.core.runtime import tune_gc
from monitor.core.sdnotify import Notifier

log = structlog.get_logger(__name__)


class Stage(Protocol):
    name: str

    def run(self, stop: threading.Event) -> None: ...

    def ready(self) -> tuple[bool, str]: ...


@dataclass
class Daemon:
    bus: Bus
    stages: Sequence[Stage]
    registry: CollectorRegistry
    health: Health = field(default_factory=Health)
    routers: list[APIRouter] = field(default_factory=list)
    http_host: str = "127.0.0.1"
    http_port: int | None = 8080
    http_settings: HttpSettings | None = None
    """Auth, body cap and TLS of the HTTP server (default: loopback rules, no tokens, plain HTTP)."""
    on_started: Callable[[Daemon], None] | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    """Called after every stage stopped and the bus closed (SQLite stores and the like)."""
    stop_event: threading.Event = field(default_factory=threading.Event)
    shutdown_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        self._threads: dict[str, threading.Thread] = {}
        self._failures: dict[str, BaseException] = {}
        self.http: HttpServer | None = None
        self.health.add_liveness("stages", self._stages_alive)
        self.health.add_readiness("bus", lambda: (self.bus.reachable(), f"{self.bus.name} transport"))
        for stage in self.stages:
            self.health.add_readiness(f"stage:{stage.name}", stage.ready)

    def _stages_alive(self) -> tuple[bool, str]:
        dead = [n for n, t in self._threads.items() if not t.is_alive() and not self.stop_event.is_set()]
        return (not dead, f"dead: {', '.join(dead)}" if dead else f"{len(self._threads)} running")

    def _run_stage(self, stage: Stage) -> None:
        try:
            stage.run(self.stop_event)
        except BaseException as err:
            self._failures[stage.name] = err
            log.exception("stage crashed; stopping the daemon", stage=stage.name)
            self.stop_event.set()

    def install_signal_handlers(self) -> None:
        def _stop(signum: int, _frame: object) -> None:
            log.info("signal received; shutting down", signal=signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def start(self) -> None:
        if self.http_port is not None:
            http = (self.http_settings or HttpSettings()).model_copy(update={"host": self.http_host})
            app = build_app(self.health, self.registry, self.routers, http)
            tls = (str(http.tls_cert), str(http.tls_key)) if http.tls_cert and http.tls_key else None
            self.http = HttpServer(app, self.http_host, self.http_port, tls)
            self.http.start()
            paths = sorted({getattr(r, "path", "") for router in self.routers for r in router.routes})
            log.debug("http routes", api=paths)
            # the one start-up line that says where to look
            log.info(
                "finsent is running; open the page",
                url=f"{self.http.url}/",
                metrics=f"{self.http.url}/metrics",
                ready=f"{self.http.url}/readyz",
            )
        for stage in self.stages:
            t = threading.Thread(target=self._run_stage, args=(stage,), name=f"stage-{stage.name}", daemon=True)
            self._threads[stage.name] = t
            t.start()
            log.info("stage started", stage=stage.name)
        if self.on_started:
            self.on_started(self)

    def wait(self) -> int:
        """Supervise until stopped. Under systemd: READY=1 once ``/readyz`` would pass, and a
        watchdog ping every half ``WatchdogSec`` while ``/healthz`` passes (a hung or dead stage
        stops the pings, and systemd restarts the unit)."""
        notifier = Notifier()
        ready_sent = False
        last_ping = 0.0
        while not self.stop_event.wait(0.5):
            if not notifier.enabled:
                continue
            if not ready_sent and self.health.readiness().status == "ok":
                ready_sent = notifier.notify("READY=1\nSTATUS=ready")
            now = time.monotonic()
            if (
                notifier.watchdog_s
                and now - last_ping >= notifier.watchdog_s / 2
                and self.health.liveness().status == "ok"
            ):
                notifier.notify("WATCHDOG=1")
                last_ping = now
        notifier.notify("STOPPING=1")
        return self.shutdown()

    def shutdown(self) -> int:
        self.stop_event.set()
        deadline = time.monotonic() + self.shutdown_timeout_s
        for name, t in self._threads.items():
            t.join(max(0.1, deadline - time.monotonic()))
            if t.is_alive():
                log.error("stage did not stop in time", stage=name)
                self._failures.setdefault(name, TimeoutError("did not stop"))
        if self.http:
            self.http.stop()
        self.bus.close()
        for close in self.closers:
            try:
                close()
            except Exception:  # one failing close must not keep the others from running
                log.exception("close failed")
        log.info("stopped", failures=sorted(self._failures))
        return 1 if self._failures else 0

    def run_forever(self) -> int:

        self.install_signal_handlers()
        self.start()
        tune_gc()
        return self.wait()
