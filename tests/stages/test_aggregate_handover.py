"""Two ``finsent aggregate`` processes with separate homes (two hosts, in effect) share the
partitions; one is killed with SIGKILL and its partitions move to the other, which restores them
from the changelog topic, not by replaying the repartition log; the points still equal the batch
aggregation of the same stories.

The kill lands mid-stream, and the test proves it (issue #27 item 4): the second half of the stories
arrives over about two seconds, the victim is killed once its checkpoint covers some of its share of
them, and, read while it is dead, that checkpoint covers some but not all of that share
(tests/stages/kill_point.py); the rest arrives after the kill, before the survivor takes over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from monitor.core.bus.kafka import KafkaBus
from monitor.core.records import TrendPoint, decode
from monitor.stages.settings import AggregatorSettings
from tests.stages.kafka_helpers import read_topic, wait_until
from tests.stages.kill_point import Checkpointed
from tests.stages.streaming_harness import batch_aggregate, diff, story, summary

pytestmark = pytest.mark.kafka  # ~26 s: default tier, it guards no-story-lost across a host's kill -9

ROOT = Path(__file__).resolve().parents[2]
N = 1200
AGG = {
    "windows": [{"name": "1m", "size": "1m"}, {"name": "3m", "size": "3m", "hop": "1m"}],
    "grace": "30s",
    "flush_interval": 0.1,
    "poll_max_records": 200,
    "idle_timeout": "2s",
    "history_windows": 200,
}
STORIES = [story(i, i * 0.25) for i in range(N)]


class Host:
    def __init__(self, tmp: Path, name: str, config: dict) -> None:
        self.home = tmp / name
        self.config = tmp / f"{name}.yaml"
        self.log = tmp / f"{name}.log"
        self.config.write_text(yaml.safe_dump({**config, "home": str(self.home)}))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
        env["PYTHONPATH"] = str(ROOT)
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor.app.cli", "aggregate", "--config", str(self.config)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=out,
            )

    def events(self, name: str) -> list[dict]:
        out = []
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == name:
                out.append(e)
        return out

    def owned(self) -> set[int]:
        mine: set[int] = set()
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == "partition restored":
                mine.add(e["partition"])
            elif e.get("event") == "partitions revoked":
                mine -= set(e["partitions"])
        return mine

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def test_partitions_move_between_hosts_and_are_restored_from_the_changelog(kafka_settings, kafka_bootstrap, tmp_path):
    settings = kafka_settings(kafka={"partitions": 3})
    bus = KafkaBus(settings.kafka)
    bus.ensure_topics(settings.topics.all(), partitions=3)
    config = {
        "kafka": {
            "bootstrap": kafka_bootstrap,
            "partitions": 3,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
        },
        "topics": settings.topics.model_dump(),
        "http": {"port": 0},
        "logging": {"level": "INFO", "format": "json"},
        "aggregator": {**AGG, "group_id": f"agg-{settings.topics.raw}"},
    }
    a, b = Host(tmp_path, "host-a", config), Host(tmp_path, "host-b", config)
    p = bus.producer()
    for s in STORIES[: N // 2]:
        p.send(settings.topics.scored, s.encode(), key=s.item.primary_key, headers=[("kind", b"scored_item")])
    p.flush(60)
    probe: Checkpointed | None = None
    try:
        a.start()
        wait_until(
            lambda: a.owned() == {0, 1, 2} and a.events("upstream idleness changed"),
            120,
            "host A to own everything and catch up",
        )
        b.start()  # B takes some of A's partitions over (from the changelog already)
        wait_until(
            lambda: a.owned() and b.owned() and a.owned() | b.owned() == {0, 1, 2} and not a.owned() & b.owned(),
            120,
            "both hosts to own partitions",
        )
        victim, survivor = a, b  # B never held A's remaining partitions: no local file for them
        moved = victim.owned()
        seen_before = len(survivor.events("partition restored"))
        # the victim's share of the second half: its partitions of the repartition topic, those stories
        probe = Checkpointed(
            kafka_bootstrap, f"{settings.topics.scored}.bykey", victim.home / "state" / "aggregate.db", partitions=moved
        )

        def second_half(contributions) -> set:
            return {(key, sid) for key, sid in contributions if int(sid.removeprefix("s")) >= N // 2}

        # The second half arrives over ~2 s (20 stories every ~70 ms) while the victim works through
        # it; it is killed once its checkpoint covers some of its share, the rest arrives while it is dead.
        produced = [N // 2]

        def send_second_half() -> None:
            for i in range(N // 2, N, 20):
                for s in STORIES[i : i + 20]:
                    p.send(
                        settings.topics.scored, s.encode(), key=s.item.primary_key, headers=[("kind", b"scored_item")]
                    )
                p.flush(60)
                produced.append(min(i + 20, N))
                time.sleep(0.07)  # pacing

        sender = threading.Thread(target=send_second_half, daemon=True)
        sender.start()
        try:
            wait_until(
                lambda: len(second_half(probe.contributions())) >= 100,
                60,
                "the victim to checkpoint some of its share of the second half",
            )
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(30)
            produced_at_kill = produced[-1]
            done_at_kill = second_half(probe.contributions(probe.offsets()))  # the dead victim's checkpoint
        finally:
            sender.join(60)
        assert produced[-1] == N
        restored = wait_until(
            lambda: (
                {
                    e["partition"]: e["restored_from"]
                    for e in survivor.events("partition restored")[seen_before:]
                    if e["partition"] in moved
                }
                if survivor.owned() == {0, 1, 2}
                else None
            ),
            120,
            "the survivor to take the victim's partitions over",
        )
        assert restored == dict.fromkeys(moved, "changelog")
        want = batch_aggregate(AggregatorSettings(**AGG), STORIES)

        def points():
            last = {}
            for m in read_topic(kafka_bootstrap, settings.topics.trends, timeout_s=60):
                pt = decode(TrendPoint, m.value)
                last[(pt.key, pt.window, pt.window_start)] = pt
            return last

        try:
            wait_until(lambda: summary(points()) == want, 180, "the points to equal the batch aggregation")
        except AssertionError:
            raise AssertionError(diff(summary(points()), want)) from None
        share = second_half(probe.everything())  # every second-half contribution routed to the victim's partitions
        # Where the kill landed: the victim had checkpointed some, not all, of its share of the second half.
        print(
            f"kill -9 landed at: {len(done_at_kill)} of the victim's {len(share)} second-half contributions "
            f"checkpointed (partitions {sorted(moved)}); {produced_at_kill} of {N} stories produced"
        )
        assert done_at_kill <= share
        assert 0 < len(done_at_kill) < len(share), (len(done_at_kill), len(share))
    finally:
        if probe is not None:
            probe.close()
        p.close()
        a.stop()
        b.stop()
