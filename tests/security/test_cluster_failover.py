"""A broker of a three-broker cluster dies, then all three restart in turn (issue #29): nothing
stops and nothing is lost.

A real three-node KRaft cluster (``kafka-local start --brokers 3``), topics with replication
factor 3 and ``min.insync.replicas`` 2, and the ``ingest`` and ``classify`` roles as their own
processes. While signed pushes stream in, the broker leading a ``news.raw`` partition is killed
with ``kill -9`` mid-stream; pushes go on being accepted while it is down, and after it is back the
broker leading a ``news.scored`` partition is killed the same way. Then the three brokers are
restarted one at a time (SIGTERM, then started again and caught up) while pushes go on. In the end
every accepted story is on ``news.raw`` and scored on ``news.scored``, and both roles ran
throughout and stop cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from kafka import KafkaAdminClient

from monitor.core.records import NewsItem, ScoredItem, decode
from tests.conftest import KAFKA_LOCAL
from tests.connectors.conftest import read_topic
from tests.finsent_process import FinsentProcess
from tests.models.fixtures import trained_tiny_home
from tests.ports import free_port
from tests.security.test_broker_faults import SECRET, Pusher
from tests.waiting import wait_until

pytestmark = [pytest.mark.kafka]  # a core promise (no story lost when a broker dies): default tier

MORE = 25  # stories accepted while a broker is down, before it is brought back


class Cluster:
    """``kafka-local`` with ``--brokers 3`` on a private state directory."""

    def __init__(self, state: Path) -> None:
        self.env = {**os.environ, "KAFKA_LOCAL_STATE": str(state)}
        self.bootstrap = ""

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(KAFKA_LOCAL), *args], env=self.env, capture_output=True, text=True, timeout=300)

    def start(self) -> None:
        done = self._run("start", "--brokers", "3")
        assert done.returncode == 0, done.stderr
        self.bootstrap = done.stdout.strip().splitlines()[-1].removeprefix("bootstrap=")
        assert len(self.bootstrap.split(",")) == 3

    def pids(self) -> dict[int, int]:
        return {int(n): int(p) for n, p in (line.split() for line in self._run("pids").stdout.splitlines())}

    def partitions(self, *topics: str) -> list[dict]:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","))
        try:
            return [p for t in admin.describe_topics(list(topics)) for p in t["partitions"]]
        finally:
            admin.close()

    def leader_of(self, topic: str, partition: int = 0) -> int:
        part = next(p for p in self.partitions(topic) if p["partition_index"] == partition)
        assert len(part["replica_nodes"]) == 3, part  # replication factor 3, as configured
        return part["leader_id"]

    def fully_in_sync(self, *topics: str) -> bool:
        """Every partition has all three copies in sync again (a resumed broker caught up)."""
        return all(len(p["isr_nodes"]) == 3 for p in self.partitions(*topics))

    def kill9(self, node: int) -> None:
        pid = self.pids()[node]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: node not in self.pids(), 30, f"broker {node} to die")

    def stop_gracefully(self, node: int) -> None:
        """SIGTERM: the broker's controlled shutdown (leadership handed over first), as in an upgrade."""
        os.kill(self.pids()[node], signal.SIGTERM)
        wait_until(lambda: node not in self.pids(), 120, f"broker {node} to stop")

    def resume(self, node: int) -> None:
        done = self._run("resume", str(node))
        assert done.returncode == 0, done.stderr
        assert self._run("status").returncode == 0

    def stop(self) -> None:
        self._run("stop")


def role_config(tmp_path: Path, role: str, home: Path, bootstrap: str, port: int) -> Path:
    cfg = tmp_path / f"{role}.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "home": str(home),
                "logging": {"level": "INFO", "format": "json"},
                "kafka": {
                    "bootstrap": bootstrap,
                    "replication_factor": 3,
                    "min_insync_replicas": 2,
                    "request_timeout_ms": 10000,
                    "session_timeout_ms": 6000,
                    "heartbeat_interval_ms": 2000,
                },
                "http": {"port": port},
                "classifier": {"max_delay_ms": 20},
                "connectors": {
                    "demo": False,
                    "ack_timeout_s": 15,
                    "sources": [{"type": "webhook", "name": "partner", "secret": {"value": SECRET}}],
                },
            }
        )
    )
    return cfg


def ids_on(bootstrap: str, topic: str) -> list[str]:
    """Story ids of every record on ``news.raw`` or ``news.scored``."""
    records = read_topic(bootstrap, topic, timeout_s=60)
    if topic == "news.scored":
        return [decode(ScoredItem, r.value).item.id for r in records]
    return [decode(NewsItem, r.value).id for r in records]


def test_a_leader_broker_killed_mid_stream_loses_no_story_and_stops_no_role(tmp_path: Path) -> None:
    home = trained_tiny_home(tmp_path)
    cluster = Cluster(tmp_path / "kafka")
    ports = {"ingest": free_port(), "classify": free_port()}
    roles: dict[str, FinsentProcess] = {}
    pusher = Pusher(f"http://127.0.0.1:{ports['ingest']}/ingest/partner")

    def ready(role: str) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{ports[role]}/readyz", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def all_alive() -> None:
        for role, proc in roles.items():
            assert proc.proc is not None and proc.proc.poll() is None, f"{role} exited:\n{proc.tail()}"

    def accepted_more(than: int):
        def check() -> bool:
            all_alive()
            return len(pusher.accepted) >= than

        return check

    try:
        cluster.start()
        for role in ("ingest", "classify"):
            cfg = role_config(tmp_path, role, home, cluster.bootstrap, ports[role])
            roles[role] = FinsentProcess([role], cfg, tmp_path / f"{role}.log")
        for proc in roles.values():
            proc.start()
        for role in roles:
            wait_until(lambda role=role: (all_alive(), ready(role))[1], 240, f"{role} ready")
        pusher.start()
        wait_until(accepted_more(30), 120, "30 accepted stories")
        wait_until(lambda: len(ids_on(cluster.bootstrap, "news.scored")) >= 10, 120, "10 scored stories", every_s=2)

        # 1. the leader of a news.raw partition dies mid-stream; pushes go on being accepted
        raw_leader = cluster.leader_of("news.raw")
        scored_at_kill = len(set(ids_on(cluster.bootstrap, "news.scored")))  # (read before: this reader needs all)
        cluster.kill9(raw_leader)
        at_kill = len(pusher.accepted)
        wait_until(accepted_more(at_kill + MORE), 180, f"{MORE} stories accepted with broker {raw_leader} down")
        cluster.resume(raw_leader)
        wait_until(
            lambda: cluster.fully_in_sync("news.raw", "news.scored"), 120, "the resumed broker in sync", every_s=1
        )

        # 2. then the leader of a news.scored partition
        scored_leader = cluster.leader_of("news.scored")
        cluster.kill9(scored_leader)
        at_second = len(pusher.accepted)
        wait_until(accepted_more(at_second + MORE), 180, f"{MORE} stories accepted with broker {scored_leader} down")
        cluster.resume(scored_leader)

        wait_until(accepted_more(len(pusher.accepted) + 10), 120, "10 more stories with every broker back")
        wait_until(
            lambda: cluster.fully_in_sync("news.raw", "news.scored"), 120, "every broker back in sync", every_s=1
        )

        # 3. a rolling restart of the three brokers under load (as an upgrade does): pushes go on
        for node in sorted(cluster.pids()):
            cluster.stop_gracefully(node)
            wait_until(accepted_more(len(pusher.accepted) + 5), 180, f"5 stories accepted with broker {node} down")
            cluster.resume(node)
            wait_until(
                lambda: cluster.fully_in_sync("news.raw", "news.scored"), 120, f"broker {node} back in sync", every_s=1
            )
        wait_until(accepted_more(len(pusher.accepted) + 10), 120, "10 more stories after the rolling restart")
        pusher.stop.set()
        pusher.join(90)
        accepted = set(pusher.accepted)
        wait_until(
            lambda: (all_alive(), accepted <= set(ids_on(cluster.bootstrap, "news.scored")))[1],
            240,
            "every accepted story scored",
            every_s=2,
        )
        all_alive()
        for proc in roles.values():
            proc.stop()  # SIGTERM: exit 0 within a minute
        raw, scored = ids_on(cluster.bootstrap, "news.raw"), ids_on(cluster.bootstrap, "news.scored")
    finally:
        pusher.stop.set()
        for proc in roles.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.kill()
        cluster.stop()
    assert 0 < scored_at_kill < len(accepted)  # the kill landed mid-stream
    assert len(pusher.accepted) == len(accepted)  # each push accepted once
    assert not accepted - set(raw), f"{len(accepted - set(raw))} accepted stories lost from news.raw"
    assert not accepted - set(scored), f"{len(accepted - set(scored))} accepted stories never scored"
    assert set(scored) <= set(raw)
