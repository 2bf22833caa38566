"""The retrain child process: train a challenger, then score it and the champion side by side.

Run by ``monitor.learning.retrain`` as ``python -m monitor.app.commands.challenger SPEC.json OUT.json`` (with capped
threads and a lower priority, killed past its time budget). SPEC (JSON)::

    {"home": ..., "classifier": {...}, "training": {...}, "profile": "tiny", "champion": V | null,
     "train": [[task, text, label], ...],      # fresh labels to learn (the profile's base rows are replayed)
     "holdout": [[task, text, label], ...],    # fresh labels training never sees
     "validation_sets": [{"name", "task", "path", "bundled"}], "validation_limit": N | null}

OUT (JSON): ``challenger`` (the new, unpromoted version), ``champion``, ``fixed`` (per set: ``n``,
``champion`` and ``challenger`` accuracy/macro-F1), ``holdout`` (pooled and per task) and
``training`` (rows, seconds). The parent applies :mod:`models.gate` and promotes.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import structlog

from models.data import labels_for, parse_label, read_labelled_csv
from models.domains import validation_sets

log = structlog.get_logger(__name__)


def load_fixed_sets(specs: list[dict[str, Any]], limit: int | None, seed: int) -> dict[str, tuple[str, list]]:
    """``{name: (task, [Example])}``: each set's rows, a seeded sample of ``limit`` when given."""

    out = {}
    bundled: dict[str, dict[str, list]] = {}
    for spec in specs:
        task = spec["task"]
        if spec.get("path"):
            rows = read_labelled_csv(Path(spec["path"]), task)
        else:
            if task not in bundled:
                bundled[task] = validation_sets(task)
            rows = bundled[task][spec.get("bundled") or "tweets"]
        if limit is not None and limit < len(rows):
            rows = random.Random(seed).sample(rows, limit)
        out[spec["name"]] = (task, rows)
    return out


def _scores(engine: Any, task: str, texts: list[str], labels: list[int]) -> dict[str, Any]:
    from models.evaluation import classification_metrics  # heavy: imports torch and scikit-learn

    names = list(labels_for(task))  # type: ignore[arg-type]
    preds = engine.predict(texts)
    y_pred = [names.index(p.sentiment if task == "sentiment" else p.topic) for p in preds]
    m = classification_metrics(task, labels, y_pred)  # type: ignore[arg-type]
    return {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "correct": round(m["accuracy"] * m["n"])}


def compare(
    settings: Any,
    champion: str | None,
    challenger: str,
    fixed: dict[str, tuple[str, list]],
    holdout: list[tuple[str, str, int]],
) -> dict[str, Any]:
    """Both versions on every fixed set and on the held-out fresh labels."""
    from models.engine import InferenceEngine  # heavy: imports torch and transformers

    engines = {"challenger": InferenceEngine.from_settings(settings, version=challenger, device="cpu")}
    if champion:
        engines["champion"] = InferenceEngine.from_settings(settings, version=champion, device="cpu")
    out: dict[str, Any] = {"fixed": {}, "holdout": {"by_task": {}}}
    for name, (task, rows) in fixed.items():
        texts, labels = [r.text for r in rows], [r.label for r in rows]
        out["fixed"][name] = {
            "task": task,
            "n": len(rows),
            **{role: _scores(e, task, texts, labels) for role, e in engines.items()},
        }
    pooled = dict.fromkeys(engines, 0)
    for task in ("sentiment", "topic"):
        rows = [(text, label) for t, text, label in holdout if t == task]
        if not rows:
            continue
        entry: dict[str, Any] = {
            "n": len(rows),
            **{role: _scores(e, task, [r[0] for r in rows], [r[1] for r in rows]) for role, e in engines.items()},
        }
        out["holdout"]["by_task"][task] = entry
        for role in engines:
            pooled[role] += entry[role]["correct"]
    n = len(holdout)
    out["holdout"]["n"] = n
    for role in engines:
        out["holdout"][role] = {"accuracy": round(pooled[role] / n, 4) if n else 0.0}
    return out


def run(settings: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Train the challenger the spec describes and compare it with the champion. ``settings``:
    finsent's settings with the spec's ``home``, ``classifier`` and ``training`` sections."""
    from models.training import train  # heavy: imports torch

    started = time.time()
    fixed = load_fixed_sets(spec["validation_sets"], spec.get("validation_limit"), settings.training.seed)
    log.info(
        "retrain_child_started",
        profile=spec["profile"],
        fresh_train=len(spec["train"]),
        holdout=len(spec["holdout"]),
        champion=spec["champion"],
        threads=settings.training.threads,
        nice=os.nice(0),
    )
    result = train(
        settings,
        profile=spec["profile"],
        extra_examples=[tuple(r) for r in spec["train"]],
        promote=False,
        progress=False,
    )
    holdout = [(t, text, parse_label(t, label)) for t, text, label in spec["holdout"]]
    log.info("retrain_child_comparing", challenger=result.version, champion=spec["champion"])
    out = compare(settings, spec["champion"], result.version, fixed, holdout)
    training = result.manifest["training"]
    out.update(
        challenger=result.version,
        champion=spec["champion"],
        training={
            "profile": training["profile"],
            "train_rows": training["train_rows"],
            "extra_examples": training["extra_examples"],
            "threads": training["threads"],
            "train_seconds": training["train_seconds"],
            "duration_s": training["duration_s"],
        },
        child_seconds=round(time.time() - started, 1),
    )
    return out
