"""Training phase: the epochs.

Each head trains on its own rows; every epoch's batches of all heads are shuffled together and run
in one loop (one optimiser, one schedule). Batches are length-bucketed (sorted within large shuffled
chunks) to cut padding, which matters a lot on CPU. After each epoch the network is scored on the
selection sets (``models.training_data.selection_score``); the best epoch's weights are kept and
training stops early after ``patience`` epochs without a better score.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
import torch
from tqdm.auto import tqdm

from models.batching import pad_batch
from models.data import TASKS, Task
from models.evaluation import classification_metrics, compute_entity_logits, compute_logits
from models.training_config import RunConfig
from models.training_data import EntityData, TaskData, TrainingData, selection_score, valid_sets
from models.training_model import Network, build_optimiser
from models.training_progress import ProgressReporter

log = structlog.get_logger(__name__)

Logits = dict[str, dict[str, torch.Tensor]]
"""Per head, per validation set name: logits (rows x classes)."""


@dataclass
class Batch:
    """One training step's rows, all of one head, padded to the longest."""

    head: Task | Literal["entity"]
    ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    states: torch.Tensor | None = None  # cached output of the frozen lower layers, padded like ids
    targets: torch.Tensor | None = None  # entity batches: (n targets, width) word-piece mask of each target
    owner: torch.Tensor | None = None  # entity batches: (n targets,) the row of each target


@dataclass
class FitResult:
    """What the loop hands on; the network then holds the best epoch's weights, in eval mode."""

    history: list[dict[str, Any]]  # one entry per epoch run (the manifest's ``training.history``)
    best_epoch: int  # 1-based
    logits: Logits  # the best epoch's network logits per story head on every validation set
    entity_logits: torch.Tensor | None  # ... and the entity head's on the SEntFiN validation targets
    first_window: dict[str, list[float]]  # per head: the losses of its first few steps
    train_seconds: float


# -- batches ---------------------------------------------------------------------------------
def epoch_batches(run: RunConfig, data: TrainingData, epoch: int) -> list[Batch]:
    """One epoch's batches of every head, shuffled together; drawn from ``random.Random(seed * 1000 + epoch)``."""
    prof = run.profile
    erng = random.Random(run.seed * 1000 + epoch)
    batches: list[Batch] = []
    for task, td in data.tasks.items():
        n_base = td.n_base
        indices = list(range(n_base))
        if task == "topic" and prof.topic_per_epoch is not None and prof.topic_per_epoch < n_base:
            indices = erng.sample(indices, prof.topic_per_epoch)
        if task == "sentiment" and prof.sentiment_repeats != 1.0:
            whole, part = divmod(prof.sentiment_repeats, 1.0)
            indices = indices * int(whole) + erng.sample(indices, round(part * n_base))
        news = list(range(n_base, n_base + td.n_news))  # mixed into the same batches as the tweets
        indices += news if prof.news_per_epoch is None else erng.sample(news, min(len(news), prof.news_per_epoch))
        indices += range(n_base + td.n_news, len(td.train))
        batches += make_batches(task, td, indices, run.batch_size, erng)
    ents = data.entities
    if ents is not None:
        usable = [i for i, m in enumerate(ents.masks) if m]
        k = prof.entity_per_epoch
        batches += make_batches(
            "entity", ents, usable if k is None or k >= len(usable) else erng.sample(usable, k), run.batch_size, erng
        )
    erng.shuffle(batches)
    return batches


def make_batches(
    head: Task | Literal["entity"],
    rows: TaskData | EntityData,
    indices: Sequence[int],
    batch_size: int,
    rng: random.Random,
) -> list[Batch]:
    """Shuffle, sort by length inside chunks of 50 batches, cut into batches (less padding).

    Entity rows (``rows`` is :class:`EntityData`) train every target of a row in its batch: the
    batch's ``labels`` are per target, ``targets`` holds each target's word-piece mask and ``owner``
    its row in the batch."""
    order = list(indices)
    rng.shuffle(order)
    enc = rows.enc
    chunk = batch_size * 50
    batches: list[Batch] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(enc[i]))
        for b in range(0, len(part), batch_size):
            idx = part[b : b + batch_size]
            ids, mask = pad_batch(enc, idx)
            width = ids.shape[1]
            states = _padded_states(rows.states, enc, idx, width)
            if isinstance(rows, EntityData):
                targets, owner, labels = [], [], []
                for r, i in enumerate(idx):
                    for tmask, label in rows.masks[i]:
                        targets.append(tmask + [0] * (width - len(tmask)))
                        owner.append(r)
                        labels.append(label)
                batches.append(
                    Batch(head, ids, mask, torch.tensor(labels), states, torch.tensor(targets), torch.tensor(owner))
                )
            else:
                batches.append(Batch(head, ids, mask, torch.tensor([rows.train[i].label for i in idx]), states))
    return batches


def _padded_states(
    states: list[torch.Tensor] | None, enc: Sequence[Sequence[int]], idx: Sequence[int], width: int
) -> torch.Tensor | None:
    """The cached frozen-layer outputs of rows ``idx``, padded to ``width`` like their token ids."""
    if states is None:
        return None
    first = states[idx[0]]
    out = torch.zeros((len(idx), width, first.shape[-1]), dtype=first.dtype)
    for r, i in enumerate(idx):
        out[r, : len(enc[i])] = states[i]
    return out


# -- validation ------------------------------------------------------------------------------
def validation_logits(
    run: RunConfig, data: TrainingData, net: Network, report: bool = False
) -> tuple[Logits, dict[str, dict[str, float]]]:
    """Network logits and macro-F1 per head and validation set: the selection sets (and the entity
    head's), or (``report``) the story heads' report-only sets. Batched as the engine batches, so
    ``finsent eval`` reproduces the metrics."""
    prof = run.profile
    logits: Logits = {}
    f1: dict[str, dict[str, float]] = {}
    for task, td in data.tasks.items():
        logits[task], f1[task] = {}, {}
        for name, rows in valid_sets(td, prof, report=report).items():
            lg = compute_logits(
                net.model,
                net.tokenizer,
                [r.text for r in rows],
                max_length=prof.max_length,
                device=run.device,
                autocast_dtype=run.amp,
                max_batch_tokens=run.engine_budget,
            )[task]
            logits[task][name] = lg
            f1[task][name] = classification_metrics(task, [r.label for r in rows], lg.argmax(-1).tolist())["macro_f1"]
    ents = data.entities
    if ents is not None and not report:
        lg, _ = compute_entity_logits(
            net.model,
            net.tokenizer,
            ents.valid,
            max_length=prof.max_length,
            device=run.device,
            autocast_dtype=run.amp,
            max_batch_tokens=run.engine_budget,
        )
        logits["entity"] = {"sentfin": lg}
        f1["entity"] = {
            "sentfin": classification_metrics(
                "sentiment", [t.label for e in ents.valid for t in e.targets], lg.argmax(-1).tolist()
            )["macro_f1"]
        }
    return logits, f1


# -- the loop --------------------------------------------------------------------------------
def fit(
    run: RunConfig, data: TrainingData, net: Network, *, progress: bool, report: ProgressReporter | None = None
) -> FitResult:
    """Train for up to ``epochs`` epochs with early stopping; restore the best epoch's weights and
    score them on the report-only validation sets too. ``progress``: the terminal's bar;
    ``report``: told each step. Torch's threads follow the machine between steps (``run.threads``)."""
    prof, model = run.profile, net.model
    first = epoch_batches(run, data, 0)
    steps_per_epoch = len(first)
    opt = build_optimiser(model, prof, steps_per_epoch * prof.epochs, run.amp)
    total_steps = opt.total_steps
    _log_start(run, data, total_steps)
    if report is not None:
        report.phase("train", steps=total_steps)

    history: list[dict[str, Any]] = []
    best_score, best_state, best_logits, best_epoch, bad_epochs = -1.0, None, None, -1, 0
    heads = [*TASKS, *(["entity"] if data.entities is not None else [])]
    first_window: dict[str, list[float]] = {t: [] for t in heads}
    window = max(3, total_steps // (10 * len(TASKS)))
    seen = 0
    bar = tqdm(
        total=total_steps,
        desc=f"train[{prof.name}]",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    train_started = time.time()
    step = 0
    for epoch in range(prof.epochs):
        model.train()
        batches = first if epoch == 0 else epoch_batches(run, data, epoch)
        losses: dict[str, list[float]] = {t: [] for t in heads}
        ema = None
        for b in batches[:steps_per_epoch]:
            loss = _batch_loss(run, net, b)
            opt.step(loss, model)
            step += 1
            run.threads.tick()
            if report is not None:
                report.step(step)
            value = float(loss.detach())
            losses[b.head].append(value)
            if len(first_window[b.head]) < window:
                first_window[b.head].append(value)
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            seen += len(b.labels)
            bar.update(1)
            bar.set_postfix(
                epoch=epoch + 1, loss=f"{ema:.3f}", ex_s=f"{seen / max(1e-6, time.time() - train_started):.0f}"
            )
        valid_logits, f1_sets = validation_logits(run, data, net)
        f1 = {task: selection_score(sets) for task, sets in f1_sets.items()}
        score = sum(f1.values()) / len(f1)
        all_losses = [v for vs in losses.values() for v in vs]
        entry = {
            "epoch": epoch + 1,
            "train_loss": round(sum(all_losses) / max(1, len(all_losses)), 4),
            "train_loss_by_task": {t: round(sum(v) / max(1, len(v)), 4) for t, v in losses.items()},
            "valid_macro_f1": {k: round(v, 4) for k, v in f1.items()},
            "valid_macro_f1_by_set": {t: {k: round(v, 4) for k, v in sets.items()} for t, sets in f1_sets.items()},
            "score": round(score, 4),
        }
        history.append(entry)
        log.info("epoch_done", **entry, elapsed_s=round(time.time() - run.started, 1))
        if score > best_score:
            best_score, best_epoch, bad_epochs = score, epoch + 1, 0
            best_logits = valid_logits
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
            if bad_epochs >= prof.patience and epoch + 1 < prof.epochs:
                log.info("early_stopping", epoch=epoch + 1, best_epoch=best_epoch)
                bar.total = step
                break
    bar.close()
    train_seconds = time.time() - train_started
    assert best_state is not None and best_logits is not None
    model.load_state_dict(best_state)
    model.eval()
    for head, report_only in validation_logits(run, data, net, report=True)[0].items():
        best_logits[head].update(report_only)  # the best epoch's network on the report-only sets
    entity_logits = best_logits.pop("entity", {}).get("sentfin")
    return FitResult(history, best_epoch, best_logits, entity_logits, first_window, train_seconds)


def _batch_loss(run: RunConfig, net: Network, b: Batch) -> torch.Tensor:
    """The forward pass of one batch (from the cached frozen-layer states when there are some) and
    its label-smoothed cross-entropy."""
    dev, amp, model, frozen = run.device, run.amp, net.model, net.frozen
    ids, mask, labels = b.ids.to(dev), b.mask.to(dev), b.labels.to(dev)
    with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
        if b.head == "entity":
            assert b.targets is not None and b.owner is not None
            hidden = (
                model.upper_states(b.states.to(dev), mask, frozen)
                if b.states is not None
                else model.token_states(ids, mask)
            )
            logits = model.entity_logits(hidden, mask, b.targets.to(dev), b.owner.to(dev))
        elif b.states is not None:
            logits = model.task_logits_from(b.states.to(dev), mask, frozen, b.head)
        else:
            logits = model.task_logits(ids, mask, b.head)
    return torch.nn.functional.cross_entropy(logits.float(), labels, label_smoothing=run.profile.label_smoothing)


def _log_start(run: RunConfig, data: TrainingData, total_steps: int) -> None:
    prof, tasks, ents = run.profile, data.tasks, data.entities
    log.info(
        "training_started",
        profile=prof.name,
        device=str(run.device),
        autocast=str(run.amp) if run.amp else None,
        epochs=prof.epochs,
        steps=total_steps,
        sentiment_rows=len(tasks["sentiment"].train),
        news_rows=tasks["sentiment"].n_news,
        topic_rows_per_epoch=len(tasks["topic"].train)
        if prof.topic_per_epoch is None
        else min(len(tasks["topic"].train), prof.topic_per_epoch),
        entity_rows=len(ents.train) if ents else 0,
        extra=len(data.extra),
    )
