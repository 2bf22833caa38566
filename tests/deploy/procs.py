"""Real Prometheus and Alertmanager processes on free loopback ports (Debian's packages).

Installed by ``deploy/bootstrap.sh --with-test-tools``; tests that need them skip with the reason
when the binaries are missing, so ``make test-fast`` stays usable on a bare machine.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port
from tests.waiting import wait_until

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")


def need(*tools: str | None) -> None:
    if not all(tools):
        pytest.skip("Prometheus/Alertmanager not installed: run deploy/bootstrap.sh --with-test-tools")


def wait_for(check: Callable[[], object], timeout_s: float = 60.0, what: str = "condition", every: float = 0.2):
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout_s``.

    :func:`tests.waiting.wait_until`, with a process's "not up yet" errors (connection refused, a
    half-written answer) taken as "not yet"; kept under this name for the tests that import it."""
    return wait_until(check, timeout_s, what, every, ignoring=(httpx.HTTPError, OSError, ValueError, KeyError))


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def _start(name: str, argv: list[str], url: str, ready_path: str, log: Path, timeout_s: float = 60.0) -> Proc:
    fh = log.open("ab")
    popen = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    proc = Proc(name, popen, url, log)

    def ready() -> bool:
        if popen.poll() is not None:
            raise AssertionError(f"{name} exited with {popen.returncode}:\n{proc.tail()}")
        return httpx.get(url + ready_path, timeout=2).status_code == 200

    wait_for(ready, timeout_s, f"{name} ready at {url}")
    return proc


def start_alertmanager(config: Path, workdir: Path, port: int | None = None) -> Proc:
    port = port or free_port()
    data = workdir / f"am-data-{port}"
    data.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    argv = [
        ALERTMANAGER or "alertmanager",
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        f"--web.external-url={url}",
        "--log.level=warn",
    ]
    return _start("alertmanager", argv, url, "/-/ready", workdir / f"alertmanager-{port}.log")


def start_prometheus(config: Path, workdir: Path, port: int | None = None) -> Proc:
    port = port or free_port()
    data = workdir / f"prom-data-{port}"
    data.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    argv = [
        PROMETHEUS or "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        "--web.enable-lifecycle",
    ]
    return _start("prometheus", argv, url, "/-/ready", workdir / f"prometheus-{port}.log")
