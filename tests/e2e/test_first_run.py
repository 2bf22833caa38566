"""`make run` on a new home, as a user meets it (issue #30): there is no model yet.

* the daemon answers at once: the page at / (a real browser) and /readyz say the first model is
  training, with its step, percent and an estimate, while the registry still has no model;
* the demo's stories queue on the bus meanwhile and are all scored once the model is ready;
* SIGTERM during that training stops the daemon cleanly and leaves no training process behind.

The ``tiny`` profile stands in for ``quick`` (``classify.first_model``): the same child, the same
progress, in about a minute.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from models.registry import Registry
from tests import waiting
from tests.e2e.browser import chromium, console_errors, needs_browser, wait_until
from tests.finsent_process import finsent_env
from tests.ports import free_port

pytestmark = pytest.mark.e2e

TRAINING_S = 900  # the tiny profile on a loaded 2-core machine, with margin


def start(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = finsent_env(
        FINSENT_HOME=str(home),
        FINSENT_HTTP__PORT=str(port),
        FINSENT_CLASSIFY__FIRST_MODEL="tiny",
        FINSENT_LOGGING__FORMAT="json",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "monitor.app.cli", "run"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def stop(proc: subprocess.Popen) -> int | None:
    """SIGTERM; the exit code, or None (after a SIGKILL) when it did not stop within a minute."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def classify_check(base: str) -> tuple[int, str]:
    r = httpx.get(f"{base}/readyz", timeout=5)
    check = next(c for c in r.json()["checks"] if c["name"] == "stage:classify")
    return r.status_code, check["detail"]


def totals(base: str) -> dict[str, float]:
    return httpx.get(f"{base}/ui/overview", timeout=5).json()["pipeline"]["totals"]


def log_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def answering(proc: subprocess.Popen, log: Path, url: str):
    def check() -> bool:
        assert proc.poll() is None, f"daemon exited early:\n{log.read_text()[-3000:]}"
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return check


@needs_browser
def test_a_new_home_answers_at_once_shows_the_training_and_then_scores_the_queue(tmp_path: Path) -> None:
    home, port, log = tmp_path / "home", free_port(), tmp_path / "daemon.log"
    base = f"http://127.0.0.1:{port}"
    proc = start(home, port, log)
    try:
        waiting.wait_until(answering(proc, log, f"{base}/"), 60, "the page at /", every_s=0.2)
        assert Registry(home / "models").current() is None  # answering before any model exists

        def training_said() -> tuple[int, str] | None:
            check = classify_check(base)
            return check if "training the first model ('tiny' profile" in check[1] else None

        code, detail = waiting.wait_until(training_said, 30, "/readyz to say the first model is training")
        assert code == 503 and "stories queue until it is ready" in detail, detail

        with chromium() as driver:
            driver.get(f"{base}/")
            box = wait_until(
                lambda: [e for e in driver.find_elements("css selector", "#training") if e.is_displayed()],
                30,
                "the first model's training on the page",
            )[0]
            assert "training the first model" in box.text and "stories queue until it is ready" in box.text
            assert box.find_elements("css selector", "progress")
            assert not console_errors(driver)

        seen: list[str] = []

        def ready() -> bool:
            assert proc.poll() is None, f"daemon exited:\n{log.read_text()[-3000:]}"
            code, detail = classify_check(base)
            seen.append(detail)
            return code == 200

        waiting.wait_until(ready, TRAINING_S, "readiness once the first model is trained", every_s=0.5)
        steps = [int(m.group(1)) for d in seen if (m := re.search(r"step (\d+) of \d+ \((\d+)%\)", d))]
        assert steps and steps == sorted(steps), seen  # progress went forward, and the page could show it
        assert any("left, then calibration and export" in d for d in seen), seen  # with an estimate
        assert Registry(home / "models").current() is not None

        queued = totals(base)["ingested"]
        assert queued > 0  # the demo published while the model trained
        waiting.wait_until(
            lambda: totals(base).get("scored", 0) >= queued, 120, f"the {queued:.0f} queued stories scored"
        )
        events = [e["event"] for e in log_lines(log)]
        assert "first model ready; classifying the stories that queued" in events
        assert not [e for e in log_lines(log) if e.get("level") in ("error", "critical")]
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]


def test_sigterm_while_the_first_model_trains_stops_everything(tmp_path: Path) -> None:
    home, port, log = tmp_path / "home", free_port(), tmp_path / "daemon.log"
    proc = start(home, port, log)
    try:
        started = waiting.wait_until(
            lambda: [e for e in log_lines(log) if e["event"].startswith("no model yet: training the first one")],
            60,
            "the first model's training to start",
        )
        child = started[0]["pid"]
        waiting.wait_until(
            lambda: (home / "state" / "first-model" / "progress.json").exists(), 120, "the child's first progress"
        )
        os.kill(child, 0)  # running
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # stopped and reaped, not orphaned
    assert Registry(home / "models").current() is None
    assert "Traceback" not in log.read_text()
