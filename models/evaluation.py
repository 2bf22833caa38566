"""Batched scoring of texts with a model, and the metrics finsent reports (via sklearn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sklearn.metrics import accuracy_score, f1_score

from models.batching import pad_batch, plan_batches
from models.data import Task, labels_for, model_text


def classification_metrics(task: Task, y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, Any]:
    """``n``, ``accuracy``, ``macro_f1`` (over every class of the task) and ``per_class`` F1."""
    names = labels_for(task)
    ids = list(range(len(names)))
    per = f1_score(y_true, y_pred, labels=ids, average=None, zero_division=0)
    present = sorted(set(y_true) | set(y_pred))
    return {
        "task": task,
        "n": len(y_true),
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        # macro over the classes that occur (in truth or prediction), as sklearn does by default
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)), 4),
        "per_class": {names[i]: round(float(per[i]), 4) for i in ids},
    }


@torch.inference_mode()
def compute_logits(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    device: torch.device,
    max_batch_tokens: int = 8192,
    max_batch_size: int = 256,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Logits of every head for ``texts`` (float32, on CPU, in input order)."""
    was_training = model.training
    model.eval()
    enc = tokenizer([model_text(t) for t in texts], truncation=True, max_length=max_length)["input_ids"]
    out: dict[str, torch.Tensor] = {}
    try:
        for batch in plan_batches([len(x) for x in enc], max_batch_tokens, max_batch_size):
            ids, mask = pad_batch(enc, batch)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                logits = model.all_logits(ids.to(device), mask.to(device))
            index = torch.tensor(batch)
            for task, value in logits.items():
                if task not in out:
                    out[task] = torch.zeros((len(texts), value.shape[-1]), dtype=torch.float32)
                out[task][index] = value.float().cpu()
    finally:
        model.train(was_training)
    return out
