"""Training phase: the network and its optimiser.

:func:`build_network` loads the tokenizer and ``FinsentModel`` from the base model, freezes the
word embeddings and the lowest ``frozen_layers`` encoder layers, and moves it to the device;
:func:`encode_rows` tokenises every training row and caches the frozen layers' output of each (so
each step runs only the layers above); :func:`build_optimiser` makes AdamW with layer-wise learning
rate decay and the warmup-then-linear-decay schedule.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch
from transformers import AutoTokenizer

from models.batching import pad_batch, plan_batches
from models.data import model_text
from models.entities import EntityExample, target_spans, token_mask
from models.network import FinsentModel, base_model_path
from models.training_config import RunConfig, TrainProfile
from models.training_data import TrainingData

log = structlog.get_logger(__name__)


@dataclass
class Network:
    """The model being trained, with its tokenizer."""

    model: FinsentModel
    tokenizer: Any
    base: Path  # the base model's directory (its files are hashed into the manifest)
    frozen: int  # lowest encoder layers kept frozen (0 = none); their output is cached per training row


def build_network(run: RunConfig, entity: bool) -> Network:
    """Tokenizer and model from the base model (``entity``: with the entity head), frozen as the
    profile says, on the run's device. Draws the heads' initial weights from torch's seeded RNG."""
    prof = run.profile
    base = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = FinsentModel.from_base(base, dropout=prof.dropout, entity=entity)
    frozen = min(prof.frozen_layers, model.config.num_hidden_layers - 1)
    if prof.freeze_embeddings or frozen:
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    if frozen:
        for p in [*model.bert.embeddings.parameters(), *model.bert.encoder.layer[:frozen].parameters()]:
            p.requires_grad_(False)
    model.to(run.device)  # type: ignore[arg-type]  # transformers wraps .to in a decorator mypy reads wrongly
    return Network(model, tokenizer, base, frozen)


def encode_rows(data: TrainingData, net: Network, run: RunConfig) -> None:
    """Fill in every training row's token ids (entity rows: and their targets' word-piece masks) and,
    with frozen layers, the frozen layers' output of each row (computed once, reused every epoch)."""
    max_length = run.profile.max_length
    for td in data.tasks.values():
        td.enc = net.tokenizer([model_text(r.text) for r in td.train], truncation=True, max_length=max_length)[
            "input_ids"
        ]
    ents = data.entities
    if ents is not None:
        ents.enc, ents.masks = _entity_encode(net.tokenizer, ents.train, max_length)
    if net.frozen:
        cache_started = time.time()
        for td in data.tasks.values():
            td.states = _cache_lower_states(net.model, td.enc, net.frozen, run.device, run.amp)
        if ents is not None:
            ents.states = _cache_lower_states(net.model, ents.enc, net.frozen, run.device, run.amp)
        log.info(
            "frozen_layers_cached",
            layers=net.frozen,
            rows=sum(len(td.enc) for td in data.tasks.values()) + (len(ents.enc) if ents else 0),
            seconds=round(time.time() - cache_started, 1),
        )


def _entity_encode(
    tokenizer: Any, examples: Sequence[EntityExample], max_length: int
) -> tuple[list[list[int]], list[list[tuple[list[int], int]]]]:
    """Token ids of each row and, per row, each target's word-piece mask with its label (targets
    outside the truncated text are dropped)."""

    clean = [model_text(e.text) for e in examples]
    enc = tokenizer(clean, truncation=True, max_length=max_length, return_offsets_mapping=True)
    masks: list[list[tuple[list[int], int]]] = []
    for ex, text, offsets in zip(examples, clean, enc["offset_mapping"]):
        row = []
        for t in ex.targets:
            m = token_mask(offsets, target_spans(ex.text, text, t))
            if any(m):
                row.append((m, t.label))
        masks.append(row)
    return enc["input_ids"], masks


@torch.inference_mode()
def _cache_lower_states(
    model: Any,
    enc: Sequence[Sequence[int]],
    layers: int,
    device: torch.device,
    amp: torch.dtype | None,
    budget: int = 8192,
) -> list[torch.Tensor]:
    """Output of the embeddings + first ``layers`` encoder layers for every row (dropout off), on CPU.

    Stored in the autocast dtype (bf16 halves the memory: ~0.5 GB for both training sets).
    """
    was_training = model.training
    model.eval()
    out: list[torch.Tensor | None] = [None] * len(enc)
    try:
        for batch in plan_batches([len(x) for x in enc], budget, 256):
            ids, mask = pad_batch(enc, batch)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                states = model.lower_states(ids.to(device), mask.to(device), layers)
            states = states.to("cpu", dtype=amp or torch.float32)
            for r, i in enumerate(batch):
                out[i] = states[r, : len(enc[i])].clone()
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


# -- the optimiser ---------------------------------------------------------------------------
@dataclass
class Optimiser:
    """AdamW, its learning-rate schedule and the loss scaler (active only under fp16 autocast)."""

    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    total_steps: int

    def step(self, loss: torch.Tensor, model: Any) -> None:
        """Back-propagate ``loss``, clip the gradient norm to 1, update the weights and the schedule."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()


def build_optimiser(model: Any, prof: TrainProfile, total_steps: int, amp: torch.dtype | None) -> Optimiser:
    """AdamW over the trainable parameters (:func:`param_groups`), linear warmup over
    ``warmup_ratio`` of ``total_steps`` then linear decay to 0."""
    warmup = max(1, int(prof.warmup_ratio * total_steps))
    optimizer = torch.optim.AdamW(param_groups(model, prof), lr=prof.lr, betas=(0.9, 0.98), eps=1e-6, foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    return Optimiser(optimizer, scheduler, scaler, total_steps)


def param_groups(model: Any, profile: TrainProfile) -> list[dict[str, Any]]:
    """Layer-wise lr decay: every head (story and entity) at head_lr, top layer at lr, each layer
    below x layer_decay."""
    n_layers = model.config.num_hidden_layers
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("bert.encoder.layer."):
            depth = n_layers - 1 - int(name.split(".")[3])
            lr = profile.lr * profile.layer_decay**depth
        elif name.startswith("bert."):  # embeddings (and a pooler, if any)
            lr = profile.lr * profile.layer_decay**n_layers
        else:  # every head the encoder feeds: story heads and the entity head
            lr = profile.head_lr
        wd = 0.0 if (p.ndim == 1 or "LayerNorm" in name) else profile.weight_decay
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
