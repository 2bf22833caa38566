"""Batched scoring of texts with a model, and the metrics finsent reports (via sklearn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from sklearn.metrics import accuracy_score, f1_score

from models.batching import pad_batch, plan_batches
from models.data import Task, labels_for, model_text
from models.entities import target_spans, token_mask
from models.network import ENTITY_OUTPUT

if TYPE_CHECKING:
    from models.network import FinsentModel


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
    model: FinsentModel,
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


@torch.inference_mode()
def compute_entity_logits(
    model: FinsentModel,
    tokenizer: Any,
    examples: Sequence[Any],
    *,
    max_length: int,
    device: torch.device,
    max_batch_tokens: int = 8192,
    max_batch_size: int = 256,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(entity logits, story sentiment logits)`` of ``models.entities.EntityExample`` rows: one
    entity row per target in example order (a target the model cannot see in the truncated text
    gets its story's sentiment logits, as the engine serves it), one story row per example."""

    was_training = model.training
    model.eval()
    clean = [model_text(e.text) for e in examples]
    enc = tokenizer(clean, truncation=True, max_length=max_length, return_offsets_mapping=True)
    ids_all = enc["input_ids"]
    masks = [
        [token_mask(o, target_spans(e.text, c, t)) for t in e.targets]
        for e, c, o in zip(examples, clean, enc["offset_mapping"])
    ]
    first = [0]
    for e in examples:
        first.append(first[-1] + len(e.targets))
    n_labels = len(labels_for("sentiment"))
    entity = torch.zeros((first[-1], n_labels), dtype=torch.float32)
    story = torch.zeros((len(examples), n_labels), dtype=torch.float32)
    try:
        for batch in plan_batches([len(x) for x in ids_all], max_batch_tokens, max_batch_size):
            ids, mask = pad_batch(ids_all, batch)
            width = ids.shape[1]
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                out = model.serving_outputs(ids.to(device), mask.to(device))
                story[torch.tensor(batch)] = out["sentiment"].float().cpu()
                targets, owner, dest = [], [], []
                for r, i in enumerate(batch):
                    for k, m in enumerate(masks[i]):
                        if any(m):
                            targets.append(m + [0] * (width - len(m)))
                            owner.append(r)
                            dest.append(first[i] + k)
                        else:
                            entity[first[i] + k] = story[i]
                if targets:
                    lg = model.entity_logits(
                        out[ENTITY_OUTPUT],
                        mask.to(device),
                        torch.tensor(targets, device=device),
                        torch.tensor(owner, device=device),
                    )
                    entity[torch.tensor(dest)] = lg.float().cpu()
    finally:
        model.train(was_training)
    return entity, story
