"""Shadow scoring: a challenger scores a sampled share of live traffic beside the serving model.

The retrain job (with ``retrain.shadow_period`` > 0) puts a challenger that passed the gate in
shadow instead of promoting it: it writes ``<models_dir>/shadow.json`` (version, since, run id).
Every classify worker follows that file (checked every ``classify.reload_interval``), loads the
challenger beside its engine and scores ``retrain.shadow_share`` of each micro-batch with it too,
after the batch's results are produced (the served path never waits for the shadow's results to
be written). It exports agreement, both models' class mix and the added latency, and keeps
running totals in ``<state_dir>/shadow-stats.json``. The retrain scheduler's shadow check
(:func:`monitor.learning.retrain.check_shadow`) promotes the challenger once it has been shadowed for
``retrain.shadow_period`` over at least ``retrain.shadow_min_samples`` stories with sentiment
agreement of at least ``retrain.shadow_min_agreement``, and drops it otherwise.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = structlog.get_logger(__name__)

POINTER = "shadow.json"
STATS = "shadow-stats.json"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("unreadable shadow file", path=str(path), error=str(err))
        return None
    return data if isinstance(data, dict) else None


def start_shadow(models_dir: Path, version: str, run_id: str) -> None:
    _write_json(models_dir / POINTER, {"version": version, "since": time.time(), "run_id": run_id})


def stop_shadow(models_dir: Path) -> None:
    (models_dir / POINTER).unlink(missing_ok=True)


def shadow_pointer(models_dir: Path) -> dict[str, Any] | None:
    return read_json(models_dir / POINTER)


def shadow_stats(state_dir: Path) -> dict[str, Any] | None:
    return read_json(state_dir / STATS)


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.scored = Counter(
            "finsent_shadow_scored", "Stories also scored by the shadowed challenger", registry=registry
        )
        self.agreed = Counter(
            "finsent_shadow_agreed", "Shadow-scored stories whose sentiment both models agree on", registry=registry
        )
        self.agreement = Gauge(
            "finsent_shadow_agreement_ratio",
            "Sentiment agreement of the shadowed challenger with the serving model",
            registry=registry,
        )
        self.mix = Counter(
            "finsent_shadow_predictions",
            "Sentiment predicted on shadow-scored stories, per model",
            ["model", "sentiment"],
            registry=registry,
        )
        self.added = Histogram(
            "finsent_shadow_added_seconds",
            "Time the shadow scoring added to a micro-batch",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )


class ShadowScorer:
    """Follows ``shadow.json``; scores a sampled share of each batch with the challenger."""

    def __init__(
        self,
        models_dir: Path,
        state_dir: Path,
        share: float,
        registry: CollectorRegistry,
        load: Callable[[str], Any],
        seed: int | None = None,
    ) -> None:
        self._pointer = models_dir / POINTER
        self._stats_path = state_dir / STATS
        self.share = share
        self._load = load
        self._rng = random.Random(seed)
        self.metrics = ShadowMetrics(registry)
        self.engine: Any | None = None
        self.version: str | None = None
        self._stats: dict[str, Any] = {}
        self._last_write = 0.0

    def refresh(self) -> None:
        """Load the challenger named in ``shadow.json`` (or drop it when the file is gone)."""
        if self.share <= 0:
            return
        pointer = read_json(self._pointer)
        wanted = pointer.get("version") if pointer else None
        if wanted == self.version:
            return
        self.engine, self.version = None, None
        if wanted:
            try:
                self.engine = self._load(wanted)
            except Exception as err:
                log.error("shadow model not loaded", version=wanted, error=str(err))
                return
            self.version = wanted
            previous = read_json(self._stats_path)
            self._stats = (
                previous
                if previous is not None and previous.get("version") == wanted
                else {"version": wanted, "n": 0, "agree": 0, "added_s": 0.0, "mix": {"champion": {}, "challenger": {}}}
            )
            log.info("shadow scoring started", version=wanted, share=self.share)
        else:
            log.info("shadow scoring stopped")

    def observe(self, texts: Sequence[str], served: Sequence[str]) -> None:
        """``texts`` just scored with sentiments ``served``; score a sampled share with the challenger."""
        if self.engine is None or not texts:
            return
        picked = [i for i in range(len(texts)) if self._rng.random() < self.share]
        if not picked:
            return
        started = time.perf_counter()
        try:
            preds = self.engine.predict([texts[i] for i in picked])
        except Exception as err:
            log.warning("shadow scoring failed", version=self.version, error=str(err))
            return
        added = time.perf_counter() - started
        self.metrics.added.observe(added)
        agree = 0
        for i, p in zip(picked, preds):
            agree += p.sentiment == served[i]
            for role, label in (("champion", served[i]), ("challenger", p.sentiment)):
                self.metrics.mix.labels(role, label).inc()
                mix = self._stats["mix"][role]
                mix[label] = mix.get(label, 0) + 1
        self.metrics.scored.inc(len(picked))
        self.metrics.agreed.inc(agree)
        s = self._stats
        s["n"] += len(picked)
        s["agree"] += agree
        s["added_s"] = round(s["added_s"] + added, 4)
        s["agreement"] = round(s["agree"] / s["n"], 4)
        self.metrics.agreement.set(s["agreement"])
        now = time.monotonic()
        if now - self._last_write > 1.0:
            self.flush()
            self._last_write = now

    def flush(self) -> None:
        if self.version is not None and self._stats.get("n"):
            _write_json(self._stats_path, self._stats)
