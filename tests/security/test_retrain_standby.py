"""Retrain in a standby pair (issue #29 item 4), through real processes and the real broker.

Two ``finsent run --stages retrain`` processes share one home (as compose's replicas share the
``finsent-home`` volume: one model registry, one label store). The retrain lease is a consumer
group over a one-partition topic: exactly one instance holds it (``/readyz`` and the
``finsent_retrain_lease_held`` gauge say which), the other is a ready standby. ``kill -9`` of the
holder hands the lease to the standby within the group's session timeout; the killed one,
started again, stays a standby (the lease does not flap back); SIGTERM of the holder hands it
over at once. What a holder does with the lease (cancel its run on losing it, take over a run the
dead holder left unfinished) is tested in tests/monitor/test_retrain_lease.py.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from tests.finsent_process import FinsentProcess
from tests.ports import free_port
from tests.waiting import settled, wait_until

pytestmark = [pytest.mark.kafka]  # no single point of failure (issue #29): default tier

SESSION_TIMEOUT_MS = 6000


def lease_state(port: int) -> str | None:
    """``holder``, ``standby`` or None (not answering, or not ready yet), from /readyz and /metrics."""
    try:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=3)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3)
    except httpx.HTTPError:
        return None
    if ready.status_code != 200 or metrics.status_code != 200:
        return None
    (detail,) = [c["detail"] for c in ready.json()["checks"] if c["name"] == "stage:retrain"]
    held = [line for line in metrics.text.splitlines() if line.startswith("finsent_retrain_lease_held ")]
    gauge = float(held[0].split()[1]) if held else None
    if "holds the retrain lease" in detail and gauge == 1.0:
        return "holder"
    if detail.startswith("standby") and gauge == 0.0:
        return "standby"
    return None


def test_one_retrain_instance_trains_and_a_standby_takes_over_when_it_is_killed(
    tmp_path: Path, kafka_bootstrap: str, topics
) -> None:
    home = tmp_path / "home"
    instances: dict[str, tuple[FinsentProcess, int]] = {}
    for name in ("a", "b"):
        port = free_port()
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "home": str(home),
                    "logging": {"level": "INFO", "format": "json"},
                    "kafka": {
                        "bootstrap": kafka_bootstrap,
                        "session_timeout_ms": SESSION_TIMEOUT_MS,
                        "heartbeat_interval_ms": 1000,
                    },
                    "topics": topics.model_dump(),
                    "http": {"port": port},
                    "connectors": {"demo": False},
                    "retrain": {"enabled": True, "cron": "0 3 * * *"},
                }
            )
        )
        instances[name] = (FinsentProcess(["run", "--stages", "retrain"], cfg, tmp_path / f"{name}.log"), port)
    (a, port_a), (b, port_b) = instances["a"], instances["b"]

    def states() -> tuple[str | None, str | None]:
        return lease_state(port_a), lease_state(port_b)

    try:
        a.start()
        wait_until(lambda: lease_state(port_a) == "holder", 90, "a to hold the retrain lease")
        b.start()
        wait_until(lambda: lease_state(port_b) == "standby", 90, "b to be a ready standby")
        assert settled(states, 3, 10, "the pair after b joined") == ("holder", "standby"), b.tail()

        a.kill9()  # no goodbye to the group: b gets the lease when a's session times out
        wait_until(lambda: lease_state(port_b) == "holder", 60, "b to take the lease over")
        assert '"event": "lease acquired"' in b.tail(20000)

        a.start()  # back as a standby: the lease stays with b
        wait_until(lambda: lease_state(port_a) == "standby", 90, "a to come back as a standby")
        assert settled(states, 3, 10, "the pair after a came back") == ("standby", "holder"), a.tail()

        b.stop()  # SIGTERM: b leaves the group, a takes over without waiting for a timeout
        wait_until(lambda: lease_state(port_a) == "holder", SESSION_TIMEOUT_MS / 1000, "a to hold the lease again")
        assert '"event": "lease released"' in b.tail(20000)
        a.stop()
    finally:
        for proc, _ in instances.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.kill()
                proc.proc.wait(30)
