"""Throughput/latency of the engine against what a user would write: a transformers pipeline.

Both run the same registry version on the same texts, in one process, one after the other:

* engine: ``InferenceEngine.predict`` on requests of ``request_size`` texts (what the classify
  stage hands it after a poll), token-budget micro-batching inside, on the backend/precision it
  serves (ONNX Runtime int8 on CPU when the version's check allows it); on CPU every other
  backend/precision is measured too (``candidates``), interleaved with the baseline;
* baseline: ``transformers.pipeline("text-classification", model=<same model>, batch_size=32)``
  over chunks of 32 texts (fp32 on CPU; fp16/bf16 weights on CUDA would be unfair to omit, so the
  baseline gets the model in the same dtype the engine uses on CUDA). It is fed the same model
  input as the engine (``models.data.model_text``: URLs reduced to one marker), so both pay for
  the same tokens and the ratio measures the engine alone.

Latency is per request (engine) / per batch of 32 (baseline); throughput is texts / total time.

``entity`` (:func:`bench_entities`): what per-ticker sentiment costs. On a realistic mix of
stories (every SEntFiN validation headline with its entities, every tweet of the sentiment
validation set with its cashtags: the multi-ticker share of the bundled news sets) the served
engine runs with targets (story + per-ticker sentiment) and without (story sentiment alone, the
pre-#25 behaviour), alternated, best of ``repeat`` each; ``ratio`` = stories/s with / without.
When labels are available (the default: the sentiment validation set) sentiment accuracy of both
is reported too, so a speed-up that costs accuracy is visible.
"""

from __future__ import annotations

import csv
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from models.data import Example, data_path, labels_for, load_split, model_text, parse_label
from models.engine import InferenceEngine
from models.entities import _CASHTAG, load_sentfin_entities
from models.network import FinsentModel
from models.registry import Registry

log = structlog.get_logger(__name__)

BASELINE_BATCH = 32


def read_texts(path: Path) -> tuple[list[str], list[int] | None]:
    """A CSV with a ``text`` column (and optionally ``label``) or a plain file, one text a line."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or "text" not in rows[0]:
            raise ValueError(f"{path}: expected a CSV with a 'text' column")
        texts = [r["text"] for r in rows]
        try:
            labels = [parse_label("sentiment", r["label"]) for r in rows] if "label" in rows[0] else None
        except ValueError:
            labels = None
        return texts, labels
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"{path}: no texts")
    return texts, None


def default_texts() -> tuple[list[str], list[int]]:
    rows: list[Example] = load_split("sentiment", "valid")
    return [r.text for r in rows], [r.label for r in rows]


def _percentiles(latencies: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(latencies) * 1000.0
    return {"p50_ms": round(float(np.percentile(arr, 50)), 2), "p99_ms": round(float(np.percentile(arr, 99)), 2)}


def _accuracy(pred: Sequence[int], labels: Sequence[int] | None) -> float | None:
    if labels is None:
        return None
    return round(float(np.mean(np.asarray(pred) == np.asarray(labels))), 4)


def bench_engine(engine: InferenceEngine, texts: Sequence[str], request_size: int) -> tuple[dict[str, Any], list[int]]:
    engine.predict(list(texts[: min(len(texts), 64)]))  # warm-up
    engine.forget_tokens()  # tokenising is part of what is measured, as it is for the baseline
    names = list(labels_for("sentiment"))
    latencies: list[float] = []
    preds: list[int] = []
    start = time.perf_counter()
    for i in range(0, len(texts), request_size):
        t0 = time.perf_counter()
        out = engine.predict(list(texts[i : i + request_size]))
        latencies.append(time.perf_counter() - t0)
        preds.extend(names.index(p.sentiment) for p in out)
    total = time.perf_counter() - start
    return {
        "texts_per_s": round(len(texts) / total, 1),
        "seconds": round(total, 3),
        "request_size": request_size,
        "int8": engine.quantized,
        "backend": engine.backend,
        "precision": engine.precision,
        **_percentiles(latencies),
    }, preds


def story_mix() -> tuple[list[str], list[list[tuple[str, list[str]]]]]:
    """The realistic mix: texts and, per text, its targets ``(name, surfaces)``."""

    texts: list[str] = []
    targets: list[list[tuple[str, list[str]]]] = []
    for e in load_sentfin_entities("valid"):
        texts.append(e.text)
        targets.append([(t.name, list(t.surfaces)) for t in e.targets])
    for r in load_split("sentiment", "valid"):
        texts.append(r.text)
        tags = dict.fromkeys(m.group(1).upper() for m in _CASHTAG.finditer(r.text))
        targets.append([(t, [f"${t}"]) for t in tags])
    return texts, targets


def bench_entities(engine: InferenceEngine, request_size: int = 256, repeat: int = 3) -> dict[str, Any]:
    """Stories/s of the served engine on :func:`story_mix`, with and without per-ticker sentiment."""
    texts, targets = story_mix()
    engine.predict(texts[:64], targets[:64])  # warm-up

    def run(with_targets: bool) -> float:
        engine.forget_tokens()
        start = time.perf_counter()
        for i in range(0, len(texts), request_size):
            engine.predict(texts[i : i + request_size], targets[i : i + request_size] if with_targets else None)
        return len(texts) / (time.perf_counter() - start)

    story_only: list[float] = []
    with_entities: list[float] = []
    for _ in range(max(1, repeat)):
        story_only.append(run(False))
        with_entities.append(run(True))
    n_targets = [len(t) for t in targets]
    return {
        "stories": len(texts),
        "multi_ticker_share": round(sum(n > 1 for n in n_targets) / len(texts), 4),
        "with_ticker_share": round(sum(n > 0 for n in n_targets) / len(texts), 4),
        "targets_per_story": round(sum(n_targets) / len(texts), 3),
        "entity_head": engine._loaded.entity_head is not None,
        "story_only_stories_per_s": round(max(story_only), 1),
        "with_entities_stories_per_s": round(max(with_entities), 1),
        "runs_story_only": [round(x, 1) for x in story_only],
        "runs_with_entities": [round(x, 1) for x in with_entities],
        "ratio": round(max(with_entities) / max(story_only), 3),
    }


def make_pipeline(version_dir: Path, device: torch.device) -> Any:
    """What a user would write: ``pipeline("text-classification")`` over the same weights."""
    from transformers import AutoTokenizer, pipeline
    from transformers.utils import logging as hf_logging

    model = FinsentModel.from_pretrained(str(version_dir), local_files_only=True).eval()
    if device.type == "cuda":
        model = model.to(device=device, dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    tokenizer = AutoTokenizer.from_pretrained(str(version_dir), local_files_only=True)
    verbosity = hf_logging.get_verbosity()
    # "The model 'FinsentModel' is not supported for text-classification" is logged at ERROR level
    # but expected (a custom class the pipeline runs fine): nothing that reads like an error
    hf_logging.set_verbosity(hf_logging.CRITICAL)
    try:
        return pipeline(
            "text-classification", model=model, tokenizer=tokenizer, device=device, batch_size=BASELINE_BATCH
        )
    finally:
        hf_logging.set_verbosity(verbosity)


def bench_pipeline(pipe: Any, texts: Sequence[str]) -> tuple[dict[str, Any], list[int]]:
    """The pipeline reads the same model input as the engine (``model_text``): same tokens, fair ratio."""
    label_index = {name: i for i, name in enumerate(labels_for("sentiment"))}
    texts = [model_text(t) for t in texts]
    pipe(list(texts[: min(len(texts), 64)]), batch_size=BASELINE_BATCH, truncation=True)  # warm-up
    latencies: list[float] = []
    preds: list[int] = []
    start = time.perf_counter()
    for i in range(0, len(texts), BASELINE_BATCH):
        t0 = time.perf_counter()
        out = pipe(list(texts[i : i + BASELINE_BATCH]), batch_size=BASELINE_BATCH, truncation=True)
        latencies.append(time.perf_counter() - t0)
        preds.extend(label_index[o["label"]] for o in out)
    total = time.perf_counter() - start
    return {
        "texts_per_s": round(len(texts) / total, 1),
        "seconds": round(total, 3),
        "batch_size": BASELINE_BATCH,
        **_percentiles(latencies),
    }, preds


# CPU backends/precisions the bench tries besides the one served: (label, classifier overrides)
CPU_CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("onnx int8", {"backend": "onnx", "quantize": True}),
    ("onnx float32", {"backend": "onnx", "quantize": False}),
    ("torch", {"backend": "torch", "quantize": True}),  # torch int8 when validated, else bf16/fp32
    ("torch float32", {"backend": "torch", "quantize": False, "cpu_bf16": False}),
)


def _candidates(registry: Registry, settings: Any, version: str, dev: str) -> list[tuple[str, InferenceEngine]]:
    """The served engine first, then every other backend/precision that loads without falling back."""
    served = InferenceEngine(registry, settings.classifier, version=version, device=dev)
    engines = [("served", served)]
    if served.device.type != "cpu":
        return engines
    seen = {(served.backend, served.precision)}
    for label, overrides in CPU_CANDIDATES:
        cfg = settings.classifier.model_copy(update=overrides)
        engine = InferenceEngine(registry, cfg, version=version, device=dev)
        key = (engine.backend, engine.precision)
        if engine.fallback_reason and overrides.get("backend") == "onnx":
            log.info("bench_candidate_unavailable", candidate=label, reason=engine.fallback_reason)
            engines.append((f"{label} (unavailable: {engine.fallback_reason})", None))  # type: ignore[arg-type]
            continue
        if key not in seen:
            seen.add(key)
            engines.append((label, engine))
    return engines


def _accuracy_check(manifest: dict[str, Any], backend: str, precision: str) -> bool | None:
    """Whether the version's own check allows serving this backend/precision (None: no check needed)."""
    if backend == "onnx":
        variant = "int8" if precision == "int8" else "fp32"
        return bool((((manifest.get("onnx") or {}).get("variants") or {}).get(variant) or {}).get("ok"))
    if precision == "int8":
        return bool((manifest.get("quantization") or {}).get("ok"))
    return None


def run_bench(
    settings: Any,
    *,
    texts: Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
    devices: Sequence[str] = ("cpu",),
    n: int | None = None,
    version: str | None = None,
    request_size: int = 256,
    repeat: int = 3,
) -> dict[str, Any]:
    """Measure every backend/precision and the baseline on each device; the top level reports the
    one the engine serves (first device). ``candidates`` lists every one tried."""
    if texts is None:
        texts, labels = default_texts()
        source = str(data_path("sentiment", "valid"))
    else:
        source = "given texts"
    texts = list(texts)
    if n is not None:
        if n < len(texts):
            texts = texts[:n]
            labels = list(labels)[:n] if labels is not None else None
        elif n > len(texts):  # cycle to reach n
            reps = -(-n // len(texts))
            texts = (texts * reps)[:n]
            labels = (list(labels) * reps)[:n] if labels is not None else None
    registry = Registry.from_settings(settings)
    resolved = registry.resolve(version or settings.classifier.version)
    results: dict[str, Any] = {}
    for dev in devices:
        engines = _candidates(registry, settings, resolved, dev)
        served = engines[0][1]
        pipe = make_pipeline(registry.path(resolved), served.device)
        live = [(label, e) for label, e in engines if e is not None]
        # Alternate all of them, best of ``repeat`` each: on a shared machine the load drifts, and
        # interleaving exposes every side to the same conditions.
        runs: dict[str, list[tuple[dict[str, Any], list[int]]]] = {label: [] for label, _ in live}
        base_runs = []
        for _ in range(max(1, repeat)):
            base_runs.append(bench_pipeline(pipe, texts))
            for label, engine in live:
                runs[label].append(bench_engine(engine, texts, request_size))
        base, base_pred = max(base_runs, key=lambda r: r[0]["texts_per_s"])
        base["runs_texts_per_s"] = [r[0]["texts_per_s"] for r in base_runs]
        base["accuracy"] = _accuracy(base_pred, labels)
        candidates = []
        for label, engine in engines:
            if engine is None:
                candidates.append({"candidate": label, "measured": False})
                continue
            best, pred = max(runs[label], key=lambda r: r[0]["texts_per_s"])
            best.update(
                candidate=label,
                backend=engine.backend,
                measured=True,
                runs_texts_per_s=[r[0]["texts_per_s"] for r in runs[label]],
                accuracy=_accuracy(pred, labels),
                accuracy_check_ok=_accuracy_check(engine.manifest, engine.backend, engine.precision),
                ratio=round(best["texts_per_s"] / base["texts_per_s"], 2),
                agreement=round(float(np.mean(np.asarray(pred) == np.asarray(base_pred))), 4),
            )
            candidates.append(best)
        eng = candidates[0]
        results[dev] = {
            "device": dev,
            "engine": eng,
            "baseline": base,
            "ratio": eng["ratio"],
            "agreement": eng["agreement"],
            "candidates": candidates,
        }
        results[dev]["entity"] = bench_entities(served, request_size, repeat)
        log.info(
            "bench_device_done",
            device=dev,
            ratio=results[dev]["ratio"],
            backend=eng["backend"],
            precision=eng["precision"],
            entity_ratio=results[dev]["entity"]["ratio"],
        )
    first = results[devices[0]]
    return {
        "device": first["device"],
        "backend": first["engine"]["backend"],
        "precision": first["engine"]["precision"],
        "texts_per_s": first["engine"]["texts_per_s"],
        "baseline_texts_per_s": first["baseline"]["texts_per_s"],
        "ratio": first["ratio"],
        "accuracy_check_ok": first["engine"]["accuracy_check_ok"],
        "p50_ms": first["engine"]["p50_ms"],
        "p99_ms": first["engine"]["p99_ms"],
        "baseline_p50_ms": first["baseline"]["p50_ms"],
        "baseline_p99_ms": first["baseline"]["p99_ms"],
        "accuracy": first["engine"]["accuracy"],
        "baseline_accuracy": first["baseline"]["accuracy"],
        "candidates": first["candidates"],
        "entity": first["entity"],
        "n": len(texts),
        "texts": source,
        "version": resolved,
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
        "by_device": results,
    }
