"""What a training run trains with: the recipes (:class:`TrainProfile`, :data:`PROFILES`), the
device and precision it runs on, and :class:`RunConfig`, the first phase of ``models.training.train``
(profile, seed and device resolved; torch's threads and seed set).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from models.settings import ClassifierSettings
from models.threads import ThreadGovernor

Device = Literal["auto", "cpu", "cuda"]


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
    # temperatures use the tweet AND the news validation sets (rule: models/training_data.py
    # ``selection_score``); False = the tweet sets alone
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


@dataclass(frozen=True)
class RunConfig:
    """One run's settings, resolved: every later phase reads them from here."""

    profile: TrainProfile  # with the ``epochs`` override applied
    seed: int
    device: torch.device
    amp: torch.dtype | None  # autocast dtype (None: fp32)
    batch_size: int  # training rows per step on this device
    engine_budget: int  # max tokens per validation batch: what the engine batches with when serving
    started: float  # time.time() at the start of the run
    threads: ThreadGovernor  # torch's CPU threads, re-decided while training runs (``tick``)


def configure_run(
    settings: Any, profile: str | TrainProfile, epochs: int | None, device: Device | str, seed: int | None
) -> RunConfig:
    """Resolve the profile (``epochs`` wins over ``settings.training.epochs``, which only the default
    profile reads), the seed, the device and its autocast dtype; set torch's threads and seed."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    if epochs is not None:
        prof = replace(prof, epochs=epochs)
    elif prof.name == "default" and getattr(settings.training, "epochs", None):
        prof = replace(prof, epochs=settings.training.epochs)
    seed = settings.training.seed if seed is None else seed
    dev = resolve_device(device)
    amp = autocast_dtype(dev, prof.cpu_bf16)
    threads = ThreadGovernor(fixed=getattr(settings.training, "threads", None))
    threads.start()
    torch.manual_seed(seed)
    serving = getattr(settings, "classifier", None) or ClassifierSettings()  # what the engine will batch with
    return RunConfig(
        profile=prof,
        seed=seed,
        device=dev,
        amp=amp,
        batch_size=prof.cuda_batch_size if dev.type == "cuda" else prof.batch_size,
        engine_budget=serving.max_batch_tokens
        if dev.type == "cuda"
        else min(serving.max_batch_tokens, serving.cpu_max_batch_tokens),
        started=time.time(),
        threads=threads,
    )
