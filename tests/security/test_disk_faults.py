"""A full disk under the ingest state: a push whose stories cannot be remembered is answered 503
(not accepted, so the sender retries), the error is logged and counted, and once space returns the
retried push is accepted; nothing acknowledged is lost. Uses a real 8 MiB tmpfs (needs root and
``mount``; skipped elsewhere)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
from contextlib import closing
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter

from alerts.alert_store import AlertStore
from alerts.clock import ManualClock
from alerts.delivery import DeliveryResult
from alerts.dispatch import BUS_RECEIVER
from alerts.evaluator import AlertEngine
from alerts.outbox import OutboxDeliverer
from alerts.settings import EngineOptions, ReceiverSettings
from connectors.webhook import build_webhook_router, sign
from monitor.app.http import build_app
from monitor.core.backoff import Backoff
from monitor.core.bus.base import TopicPartition
from monitor.core.health import Health
from monitor.core.persist import Persister
from monitor.stages.checkpoint import CheckpointStore, PartitionDelta
from monitor.stages.windows import StateDelta
from tests.alerts.helpers import OIL, deliver_until_idle, point, rules
from tests.connectors.conftest import ingest_factory, news_on  # noqa: F401 - fixture
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka
SECRET = "disk-push-secret"


@pytest.fixture
def small_state_dir(finsent_home: Path):
    state = finsent_home / "state"
    state.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(state)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], capture_output=True)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_full_disk_refuses_pushes_until_space_returns(
    small_state_dir: Path, kafka_settings, ingest_factory, kafka_bootstrap
) -> None:
    settings = kafka_settings(
        connectors={
            "demo": False,
            "ack_timeout_s": 10,
            "sources": [{"type": "webhook", "name": "partner", "secret": {"value": SECRET}}],
        }
    )
    core, ctx = ingest_factory(settings)
    hooks = [s for s in settings.connectors.sources if s.type == "webhook"]
    client = TestClient(
        build_app(Health(), CollectorRegistry(), [build_webhook_router(hooks, core.publisher, core.metrics)]),
        base_url="http://127.0.0.1",
    )

    def push(n: int):
        body = json.dumps(
            {
                "id": f"d-{n}",
                "title": f"Acme story {n} about widgets and gadgets",
                "published_at": "2026-11-20T10:00:00Z",
            }
        ).encode()
        return client.post("/ingest/partner", content=body, headers={"X-Finsent-Signature": sign(SECRET, body)})

    assert push(1).status_code == 202
    filler = fill(small_state_dir)
    refused = [push(n) for n in range(2, 40)]  # enough rows to need a new page of the full database
    assert all(r.status_code in (202, 503) for r in refused)
    assert any(r.status_code == 503 for r in refused), "the full disk was never noticed"
    assert "retry" in next(r for r in refused if r.status_code == 503).json()["detail"]
    failed = ctx.registry.get_sample_value("finsent_ingest_errors_total", {"source": "partner", "kind": "publish"})
    assert failed and failed > 0

    filler.unlink()
    accepted = {1} | {n for n, r in zip(range(2, 40), refused) if r.status_code == 202}
    for n in range(2, 40):
        if n not in accepted:
            r = push(n)
            assert r.status_code == 202, r.text
            accepted.add(n)
    titles = {i.title for i in news_on(kafka_bootstrap, settings.topics.raw)}
    assert {f"Acme story {n} about widgets and gadgets" for n in accepted} <= titles
    assert len(accepted) == 39


class _Batches(threading.Thread):
    """Writes numbered batches, each through a :class:`Persister` as the stages do (the same
    transaction retried in place), recording the last batch whose write returned (a stage
    commits its offsets only then)."""

    def __init__(self, write_batch, n: int, persister: Persister) -> None:
        super().__init__(daemon=True)
        self.write_batch, self.n, self.persister = write_batch, n, persister
        self.stop = threading.Event()
        self.committed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(1, self.n + 1):
                self.write_batch(i, lambda fn: self.persister.write(fn, self.stop))
                self.committed = i
        except BaseException as err:
            self.error = err


def _hold_then_resume(state: Path, write_batch, read_offset, n: int, metric: str) -> None:
    registry = CollectorRegistry()
    errors = Counter(metric, "state write errors", registry=registry)
    persister = Persister("test", on_error=errors.inc, initial_backoff_s=0.05, max_backoff_s=0.2)
    write_batch(0, lambda fn: fn())
    filler = fill(state)
    batches = _Batches(write_batch, n, persister)
    batches.start()
    wait_until(
        lambda: persister.blocked is not None or not batches.is_alive(), 60, "the full disk to be noticed", every_s=0.05
    )
    assert persister.blocked, f"the full disk was never noticed ({batches.error!r})"
    # let it retry: the first failed attempt and two failed retries, all of the same batch in place
    wait_until(
        lambda: registry.get_sample_value(f"{metric}_total") >= 3 or not batches.is_alive(),
        60,
        "two retries of the blocked batch",
        every_s=0.05,
    )
    assert batches.is_alive() and batches.error is None, batches.error
    held = batches.committed
    assert held < n and read_offset() == held  # nothing committed past what is stored: not skipped
    assert registry.get_sample_value(f"{metric}_total") >= 3
    filler.unlink()
    batches.join(60)
    assert not batches.is_alive() and batches.error is None, batches.error
    assert persister.blocked is None and batches.committed == n
    assert read_offset() == n


def test_full_disk_holds_the_alert_store_and_outbox_in_place(small_state_dir: Path) -> None:
    """The alert evaluator's transaction (state + outbox + input offsets) on a full disk: the batch
    is retried in place until it is written; offsets stop at the last batch stored; every
    notification reaches the outbox once space returns."""
    store = AlertStore(small_state_dir / "alerts.db")
    engine = AlertEngine(
        rules({**OIL, "for": 0, "min_count": 1}),
        store,
        EngineOptions(
            receivers={"local": ReceiverSettings(type="file")},
            publish_topic="news.alerts",
            external_url="http://finsent.test",
        ),
        ManualClock(),
    )
    tp = TopicPartition("news.trends", 0)

    def batch(i: int, write) -> None:  # alternately firing and resolved: one notification per batch
        p = point(emitted=1 + i, start=i, negative_share=0.9 if i % 2 == 0 else 0.1, top=20)
        engine.process([p], {tp: i + 1}, write=write)

    try:
        _hold_then_resume(
            small_state_dir,
            batch,
            lambda: (store.input_offset(tp) or 1) - 1,
            200,
            "finsent_test_alert_state_write_errors",
        )
        baseline = AlertStore(":memory:")  # the same batches on a disk that never fills
        twin = AlertEngine(engine.rules, baseline, engine.options, ManualClock())
        for i in range(201):
            p = point(emitted=1 + i, start=i, negative_share=0.9 if i % 2 == 0 else 0.1, top=20)
            twin.process([p], {tp: i + 1})
        expected = [(e.reason, e.status) for e in baseline.outbox_entries(states=("pending",), limit=1000)]
        got = [(e.reason, e.status) for e in store.outbox_entries(states=("pending",), limit=1000)]
        assert got == expected and len(got) > 200  # every notification stored once: none lost, none doubled
    finally:
        store.close()


def test_full_disk_holds_the_aggregate_checkpoint_in_place(small_state_dir: Path) -> None:
    """The aggregator's checkpoint (window state + offsets) on a full disk: the same delta is
    retried until it is written; the stored offset never passes what is stored."""
    store = CheckpointStore(small_state_dir / "aggregate.db", group="g")

    def batch(i: int, write) -> None:
        seen = [(f"ticker:T{i}", f"story-{i}-{j}-" + "x" * 40, 1_700_000_000.0 + i) for j in range(10)]
        delta = PartitionDelta(i, 1_700_000_000.0 + i, StateDelta(first_ts={f"ticker:T{i}": 1.0}, seen_added=seen))
        write(lambda: store.save("news.scored.bykey", {0: delta}))

    try:
        _hold_then_resume(
            small_state_dir,
            batch,
            lambda: (store.load("news.scored.bykey", 0) or PartitionDelta(0, None, StateDelta())).next_offset,
            100,
            "finsent_test_aggregate_state_write_errors",
        )
        assert len(store.load("news.scored.bykey", 0).seen) == 101 * 10
    finally:
        store.close()


def test_full_disk_does_not_make_the_outbox_send_twice(small_state_dir: Path) -> None:
    """A notification was sent but its "delivered" mark cannot be written (full disk): the
    deliverer holds on that mark instead of moving on, and once space returns every notification
    has been sent exactly once."""
    store = AlertStore(small_state_dir / "alerts.db")
    engine = AlertEngine(
        rules({**OIL, "for": 0, "min_count": 1}),
        store,
        EngineOptions(
            receivers={"local": ReceiverSettings(type="file")},
            publish_topic="news.alerts",
            external_url="http://finsent.test",
        ),
        ManualClock(),
    )
    for i in range(300):
        engine.process([point(emitted=1 + i, start=i, negative_share=0.9 if i % 2 == 0 else 0.1, top=20)])
    sent: list[str] = []

    class Counting:
        def send(self, entry, attempt: int, now: float) -> DeliveryResult:
            sent.append(entry.idempotency_key)
            return DeliveryResult(ok=True, status=200)

        def close(self) -> None:
            pass

    registry = CollectorRegistry()
    errors = Counter("finsent_test_outbox_state_write_errors", "state write errors", registry=registry)
    persister = Persister("test", on_error=errors.inc, initial_backoff_s=0.05, max_backoff_s=0.2)
    deliverer = OutboxDeliverer(
        store, {"local": Counting(), BUS_RECEIVER: Counting()}, batch_size=1000, clock=ManualClock()
    )
    stop = threading.Event()
    with closing(sqlite3.connect(small_state_dir / "alerts.db")) as other:  # an empty WAL: any write needs space
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = fill(small_state_dir)
    worker = threading.Thread(target=lambda: deliverer.deliver_due(lambda fn: persister.write(fn, stop)), daemon=True)
    worker.start()
    try:
        wait_until(
            lambda: persister.blocked is not None or not worker.is_alive(),
            60,
            "the full disk to be noticed",
            every_s=0.05,
        )
        assert persister.blocked, "the full disk was never noticed"
        assert worker.is_alive() and registry.get_sample_value("finsent_test_outbox_state_write_errors_total") >= 1
        filler.unlink()
        worker.join(60)
        assert not worker.is_alive() and persister.blocked is None
        deliver_until_idle(deliverer)
        entries = store.outbox_entries(states=("delivered",), limit=1000)
        assert len(entries) > 250 and store.outbox_counts()["pending"] == 0
        assert sorted(sent) == sorted(e.idempotency_key for e in entries)  # each sent once
    finally:
        stop.set()
        store.close()


def test_a_disk_full_at_start_holds_the_aggregator_not_ready_until_space_returns(small_state_dir: Path) -> None:
    """Started with no space for its checkpoint: the window stage waits, not ready, with the reason,
    and opens its checkpoint and joins the stream once space returns (no crash)."""
    from monitor.app.config import load_settings
    from monitor.core.bus.memory import MemoryBus
    from monitor.stages.aggregate import AggregateMetrics, TrendStage, repartition_topic
    from monitor.stages.changelog import changelog_topic
    from monitor.stages.recent import TrendStore

    settings = load_settings(None, home=str(small_state_dir.parent), http={"port": 0})
    bus = MemoryBus(default_partitions=1)
    bus.ensure_topics(
        [
            settings.topics.scored,
            settings.topics.trends,
            settings.topics.dlq,
            repartition_topic(settings),
            changelog_topic(repartition_topic(settings)),
        ]
    )
    registry = CollectorRegistry()
    stage = TrendStage(settings, bus, AggregateMetrics(registry), TrendStore(), small_state_dir / "aggregate.db")
    stage._persister.backoff = Backoff(0.05, 0.05)
    filler = fill(small_state_dir)
    stop = threading.Event()
    errors: list[BaseException] = []
    worker = threading.Thread(target=lambda: _record_errors(stage.run, stop, errors), daemon=True)
    worker.start()
    try:
        wait_until(
            lambda: stage.ready()[0] is not False or "state not persisted" in stage.ready()[1],
            30,
            "the aggregator to say its state is not persisted",
            every_s=0.05,
        )
        ready, why = stage.ready()
        assert not ready and "state not persisted" in why, why
        assert registry.get_sample_value("finsent_aggregate_state_write_errors_total") >= 1
        assert worker.is_alive() and not errors
        filler.unlink()
        wait_until(
            lambda: stage.ready()[0] or not worker.is_alive(),
            30,
            "the aggregator ready once space returned",
            every_s=0.05,
        )
        assert stage.ready()[0], (stage.ready(), errors)
        assert (small_state_dir / "aggregate.db").exists()
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive() and errors == []


def _record_errors(fn, stop: threading.Event, errors: list) -> None:
    try:
        fn(stop)
    except BaseException as err:
        errors.append(err)


def test_the_daemon_started_on_a_full_disk_says_so_and_exits_for_a_retry(small_state_dir: Path) -> None:
    """``finsent run`` whose state cannot even be opened: one clear line naming the directory, no
    traceback, and exit code 75 (EX_TEMPFAIL), which supervisors restart after their delay."""
    import sys

    home = small_state_dir.parent
    config = home / "finsent.yaml"
    config.write_text("connectors: {demo: false, sources: []}\nhttp: {port: 0}\n")
    filler = fill(small_state_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env.update(FINSENT_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "monitor.app.cli", "run", "--stages", "alerts", "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        filler.unlink()
    out = done.stdout + done.stderr
    assert done.returncode == 75, out[-3000:]
    assert f"cannot open the state under {small_state_dir}" in out and "free space" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
