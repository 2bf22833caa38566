"""One role, one OS process: its own port, its own metrics, and systemd's notify protocol."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from monitor.core.sdnotify import Notifier
from tests.deploy.procs import wait_for
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_notifier_is_a_no_op_outside_systemd():
    n = Notifier({})
    assert not n.enabled and n.watchdog_s is None and n.notify("READY=1") is False
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_s == 4.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_s is None  # another process's


def test_alerts_role_runs_alone_notifies_systemd_and_serves_its_metrics(tmp_path: Path):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.5)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FINSENT_HOME": str(tmp_path / "home"),
        "FINSENT_HTTP__PORT": str(port),
        "NOTIFY_SOCKET": str(sock_path),
        "WATCHDOG_USEC": "1000000",
        "FINSENT_KAFKA__BOOTSTRAP": "",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.app.cli", "run", "--stages", "alerts"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    got: list[str] = []

    def heard(what: str, alive: bool = True):
        def check() -> bool:
            if alive:
                assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            try:
                got.append(sock.recv(4096).decode())
            except TimeoutError:
                pass
            return any(what in m for m in got)

        return check

    try:
        wait_for(heard("READY=1"), 60, "READY=1 from the alerts process")
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        wait_for(heard("WATCHDOG=1"), 10, "a watchdog ping")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'finsent_role_info{role="alerts"' in text
        assert 'finsent_http_requests_total{method="GET",route="/readyz",status="200"} 1.0' in text
        assert "finsent_alerts_outbox_oldest_pending_seconds" in text
        assert "finsent_classify_scored" not in text and "finsent_ingest_new" not in text  # its own metrics only
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        wait_for(heard("STOPPING=1", alive=False), 5, "STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sock.close()


def test_http_requests_are_counted_by_route_template_and_status():
    from fastapi import APIRouter
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry

    from monitor.app.http import build_app
    from monitor.core.health import Health

    router = APIRouter()

    @router.get("/things/{name}")
    def thing(name: str) -> dict:
        return {"name": name}

    registry = CollectorRegistry()
    client = TestClient(build_app(Health(), registry, [router]), base_url="http://127.0.0.1")
    for name in ("a", "b", "c"):
        assert client.get(f"/things/{name}").status_code == 200
    assert client.get("/nowhere").status_code == 404

    def count(route: str, status: str) -> float | None:
        return registry.get_sample_value(
            "finsent_http_requests_total", {"route": route, "method": "GET", "status": status}
        )

    assert count("/things/{name}", "200") == 3  # one series per template, not per path
    assert count("other", "404") == 1
