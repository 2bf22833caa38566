"""The operator's Prometheus files are valid, and a real Prometheus scrapes the daemon."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from monitor.app.daemon import Daemon
from monitor.core.bus.memory import MemoryBus
from tests.ports import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="Debian's prometheus package is installed by `make test` (deploy/bootstrap.sh --with-test-tools)",
)


@needs_prometheus
def test_real_prometheus_scrapes_the_daemon(tmp_path):
    registry = CollectorRegistry()
    Counter("finsent_scrape_probe", "probe", registry=registry).inc(7)
    daemon = Daemon(bus=MemoryBus(), stages=[], registry=registry, http_port=0)
    daemon.start()
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: finsent\n    metrics_path: /metrics\n    static_configs: [{{targets: ['127.0.0.1:{daemon.http.port}']}}]\n"
    )
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def scraped() -> list:
        r = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": "finsent_scrape_probe_total"})
        return r.json()["data"]["result"]

    try:
        result = wait_until(
            scraped,
            60,
            "the probe counter scraped by Prometheus",
            every_s=0.5,
            ignoring=(httpx.HTTPError, KeyError, ValueError),
        )
        assert float(result[0]["value"][1]) == 7.0
        up = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": "up{job='finsent'}"}).json()
        assert up["data"]["result"][0]["value"][1] == "1"
    finally:
        prom.terminate()
        prom.wait(30)
        daemon.stop_event.set()
        daemon.wait()
