"""`finsent run` on its embedded defaults (what `make run` starts): the demo feed moves trends,
the HTTP endpoints answer, and SIGTERM stops it cleanly with exit code 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.finsent_process import finsent_env
from tests.ports import free_port

pytestmark = pytest.mark.e2e


def test_finsent_run_on_embedded_defaults_serves_trends_and_stops_on_sigterm(quick_model_home: Path, tmp_path):
    port = free_port()
    env = finsent_env(FINSENT_HOME=str(quick_model_home), FINSENT_HTTP__PORT=str(port), FINSENT_LOGGING__FORMAT="json")
    log = (tmp_path / "daemon.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.app.cli", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # generous: starting the daemon (torch, the model) is slow on a loaded 2-core machine
        deadline = time.monotonic() + 300
        ready = points = None
        while time.monotonic() < deadline and not (ready and points):
            assert proc.poll() is None, f"daemon exited early:\n{(tmp_path / 'daemon.log').read_text()[-3000:]}"
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2).status_code == 200
                r = httpx.get(f"{base}/trends", params={"key": "all", "window": "5m"}, timeout=2)
                points = r.status_code == 200 and r.json()["points"]
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert ready, "never ready"
        assert points, "the demo feed produced no trend points"
        assert points[-1]["count"] > 0 and -1 <= points[-1]["mean_score"] <= 1
        metrics = httpx.get(f"{base}/metrics").text
        assert "finsent_classify_scored_total" in metrics and "finsent_ingest_new_total" in metrics
        assert 'finsent_trend_mean_score{key="all",window="5m"}' in metrics
        assert httpx.get(f"{base}/alerts").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    output = (tmp_path / "daemon.log").read_text()
    assert code == 0, output[-3000:]
    assert "signal received; shutting down" in output and '"failures": []' in output
