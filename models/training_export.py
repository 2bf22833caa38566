"""Training phase: the served formats of a trained model and their accuracy checks.

:func:`check_quantization` measures torch dynamic int8 against the trained model (the manifest's
``quantization`` section); :func:`export_onnx` writes the version's ONNX Runtime files
(``models/onnx_backend.py``) while it is being published.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import structlog
import torch

from models import onnx_backend
from models.data import Task
from models.evaluation import compute_logits
from models.lexical import mix_log_probs
from models.quantization import quantize_dynamic_int8
from models.training_config import TrainProfile, cpu_has_bf16
from models.training_data import TaskData

log = structlog.get_logger(__name__)


def check_quantization(
    model: Any, tokenizer: Any, tasks: dict[Task, TaskData], prof: TrainProfile, fp_logits: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """Dynamic int8 (Linear layers) on CPU: ok when accuracy drops <= 0.5 pt on every task.

    ``fp_logits``: the trained network's logits on each task's tweet validation set."""

    if not prof.check_quantization:
        return {"checked": False, "ok": False}
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    qmodel = quantize_dynamic_int8(cpu_model)
    result: dict[str, Any] = {
        "checked": True,
        "method": "torch dynamic int8 (nn.Linear)",
        "tolerance": 0.005,
        "reference": "bf16 autocast" if prof.cpu_bf16 and cpu_has_bf16() else "fp32",
    }
    ok = True
    for task, td in tasks.items():
        y = torch.tensor([r.label for r in td.valid])
        q = compute_logits(
            qmodel, tokenizer, [r.text for r in td.valid], max_length=prof.max_length, device=torch.device("cpu")
        )[task]
        fp_acc = float((fp_logits[task].argmax(-1) == y).float().mean())
        q_acc = float((q.argmax(-1) == y).float().mean())
        result[task] = {
            "fp_accuracy": round(fp_acc, 4),
            "int8_accuracy": round(q_acc, 4),
            "agreement": round(float((q.argmax(-1) == fp_logits[task].argmax(-1)).float().mean()), 4),
        }
        ok = ok and (fp_acc - q_acc) <= 0.005 + 1e-9
    result["ok"] = ok
    log.info("quantization_checked", **{k: v for k, v in result.items() if k != "tolerance"})
    return result


def export_onnx(
    model: Any,
    tokenizer: Any,
    out_dir: Path,
    tasks: dict[Task, TaskData],
    prof: TrainProfile,
    lexical_info: dict[str, Any],
) -> dict[str, Any]:
    """The ONNX Runtime files of the version and their accuracy check (models/onnx_backend.py)."""

    if not onnx_backend.available():
        return {"exported": False, "error": "onnxruntime is not installed"}
    lexical = lexical_info.get("valid") or {}  # per task, per validation set; the check reads "tweets"
    weights = lexical_info.get("weights") or {}

    def mix(task: str, logits: Any) -> Any:
        lex = (lexical.get(task) or {}).get("tweets")
        weight = float(weights.get(task, lexical_info.get("weight", 0.0)))
        return mix_log_probs(logits, lex.numpy() if lex is not None else None, weight)

    valid: dict[str, tuple[list[str], list[int]]] = {
        t: ([r.text for r in td.valid], [r.label for r in td.valid]) for t, td in tasks.items()
    }
    return onnx_backend.build(model, tokenizer, out_dir, valid, max_length=prof.max_length, mix=mix)
