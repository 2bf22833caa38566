"""Nightly re-training on fresh human labels, and hot model reloads.

* A :class:`LabelCollector` stage reads ``LabelRecord``s from the labels topic into a SQLite store
  (de-duplicated by task + text; the latest label wins) and commits offsets after each write.
* A :class:`RetrainScheduler` (apscheduler, cron from ``retrain.cron``) trains a new version with
  the stored labels added to the training data when at least ``retrain.min_new_labels`` arrived
  since the last run, and promotes it when it is no worse than the serving version on the
  validation sets (``retrain.auto_promote``), then has the engine serve it at once. (The classify
  stage also re-reads the registry's ``current`` pointer every ``classify.reload_interval``, so a
  ``finsent models promote|rollback`` reaches a running daemon without a restart.)
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any, Callable

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from monitor.bus.base import ConsumerOptions
from monitor.bus.codec import DeadLetterSink, RecordReader, next_offsets
from monitor.component import Component, Context
from monitor.metrics import RetrainMetrics
from monitor.records import LabelRecord

log = structlog.get_logger(__name__)


class LabelStore:
    """Human labels kept for re-training, with the id of the last run that used them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS labels (task TEXT NOT NULL, text TEXT NOT NULL, label TEXT NOT NULL,"
            " item_id TEXT, labelled_at TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (task, text))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")

    def add(self, labels: list[LabelRecord]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            seq = self._next_seq()
            for i, rec in enumerate(labels):
                self._db.execute(
                    "INSERT INTO labels VALUES (?,?,?,?,?,?) ON CONFLICT(task, text) DO UPDATE SET "
                    "label=excluded.label, item_id=excluded.item_id, labelled_at=excluded.labelled_at, seq=excluded.seq",
                    (rec.task, rec.text, rec.label, rec.item_id, rec.labelled_at.isoformat(), seq + i),
                )
            self._db.execute("COMMIT")

    def _next_seq(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM labels").fetchone()
        return int(row[0])

    def all(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return [tuple(r) for r in self._db.execute("SELECT task, text, label FROM labels ORDER BY seq")]

    def new_since_last_run(self) -> int:
        with self._lock:
            last = self._db.execute("SELECT v FROM meta WHERE k='last_seq'").fetchone()
            since = int(last[0]) if last else 0
            return int(self._db.execute("SELECT COUNT(*) FROM labels WHERE seq > ?", (since,)).fetchone()[0])

    def mark_used(self) -> None:
        with self._lock:
            seq = self._next_seq() - 1
            self._db.execute("INSERT INTO meta VALUES ('last_seq', ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (str(seq),))

    def close(self) -> None:
        self._db.close()


class LabelCollector:
    """Stage: labels topic → :class:`LabelStore`, committing after each stored batch."""

    name = "labels"

    def __init__(self, ctx: Context, store: LabelStore, metrics: RetrainMetrics | None = None) -> None:
        self._ctx = ctx
        self._store = store
        self._metrics = metrics or RetrainMetrics(ctx.registry)
        self._ready = False

    def run(self, stop: threading.Event) -> None:
        settings, bus = self._ctx.settings, self._ctx.bus
        producer = bus.producer()
        reader = RecordReader(LabelRecord, DeadLetterSink(producer, settings.topics.dlq, stage=self.name))
        consumer = bus.consumer([settings.topics.labels], ConsumerOptions(group_id="finsent-labels"))
        self._ready = True
        try:
            while not stop.is_set():
                messages = consumer.poll(0.5)
                if not messages:
                    continue
                self._store.add([rec for _msg, rec in reader.iter_decoded(messages)])
                if reader.dlq.count:
                    self._metrics.label_dead_letters.inc(reader.dlq.count)
                    reader.dlq.count = 0
                consumer.commit(next_offsets(messages))
        finally:
            consumer.close()
            producer.close()

    def ready(self) -> tuple[bool, str]:
        return self._ready, "consuming labels" if self._ready else "starting"


@dataclass
class RetrainOutcome:
    trained: bool
    reason: str
    version: str | None = None
    promoted: bool = False


def _score(manifest: dict[str, Any]) -> tuple[float, float]:
    metrics = manifest.get("metrics", {})
    sent = metrics.get("sentiment", {})
    topic = metrics.get("topic", {})
    return float(sent.get("macro_f1", 0.0)), float(topic.get("accuracy", 0.0))


def retrain_once(settings: Any, store: LabelStore, *, force: bool = False,
                 train: Callable[..., Any] | None = None) -> RetrainOutcome:
    """Train a new version with the stored labels; promote it if no worse than the current one."""
    from models.registry import Registry

    fresh = store.new_since_last_run()
    if not force and fresh < settings.retrain.min_new_labels:
        return RetrainOutcome(False, f"{fresh} new labels < min_new_labels={settings.retrain.min_new_labels}")
    if train is None:
        from models.training import train
    registry = Registry.from_settings(settings)
    current = registry.current()
    log.info("retraining", new_labels=fresh, profile=settings.retrain.profile, serving=current)
    result = train(settings, profile=settings.retrain.profile, extra_examples=store.all(), promote=False, progress=False)
    store.mark_used()
    promote = current is None
    if current is not None and settings.retrain.auto_promote:
        new, old = _score(result.manifest), _score(registry.read_manifest(current))
        promote = all(n >= o - settings.retrain.tolerance for n, o in zip(new, old))
        log.info("retrain compared", new=new, serving=old, promote=promote)
    if promote:
        registry.promote(result.version)
    return RetrainOutcome(True, "trained", result.version, promote)


class RetrainScheduler:
    """Stage: the nightly retrain job (apscheduler) for the daemon's life."""

    name = "retrain"

    def __init__(self, ctx: Context, store: LabelStore, metrics: RetrainMetrics | None = None) -> None:
        self._ctx = ctx
        self._store = store
        self._scheduler: BackgroundScheduler | None = None
        self._metrics = metrics or RetrainMetrics(ctx.registry)

    def _retrain_job(self) -> None:
        started = time.monotonic()
        try:
            outcome = retrain_once(self._ctx.settings, self._store)
        except Exception:
            log.exception("retrain failed; serving version unchanged")
            self._metrics.runs.labels("failed").inc()
            return
        finally:
            self._metrics.seconds.observe(time.monotonic() - started)
        result = "promoted" if outcome.promoted else "kept" if outcome.trained else "skipped"
        self._metrics.runs.labels(result).inc()
        log.info("retrain finished", **outcome.__dict__)
        if outcome.promoted:
            self._reload()

    def _reload(self) -> None:
        engine = self._ctx.shared.get("engine")
        if engine is not None and engine.reload_if_changed():
            log.info("engine now serves a new model version", version=engine.version)

    def run(self, stop: threading.Event) -> None:
        cfg = self._ctx.settings.retrain
        scheduler = BackgroundScheduler(timezone=timezone.utc)
        if cfg.enabled:
            scheduler.add_job(self._retrain_job, CronTrigger.from_crontab(cfg.cron, timezone=timezone.utc),
                              id="retrain", max_instances=1, coalesce=True)
        scheduler.start()
        self._scheduler = scheduler
        if cfg.enabled:
            log.info("nightly retrain scheduled", cron=cfg.cron, next=str(scheduler.get_job("retrain").next_run_time))
        else:
            log.info("nightly retrain disabled (retrain.enabled=false)")
        stop.wait()
        scheduler.shutdown(wait=True)

    def ready(self) -> tuple[bool, str]:
        ok = self._scheduler is not None and self._scheduler.running
        return ok, "scheduler running" if ok else "starting"


def build_retrain(ctx: Context) -> Component:
    store = LabelStore(ctx.settings.state_dir / "labels.db")
    metrics = RetrainMetrics(ctx.registry)
    return Component(
        name="retrain",
        stages=[LabelCollector(ctx, store, metrics), RetrainScheduler(ctx, store, metrics)],
        close=store.close,
    )
