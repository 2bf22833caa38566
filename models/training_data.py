"""Training phase: every head's rows for one run, and the validation sets model selection reads.

:func:`prepare_data` loads each task's training and validation split, caps them as the profile
says (each cap with its own seeded ``random.Random``, so the rows do not depend on the order they
are loaded in), adds the SEntFiN news headlines to the sentiment head and the caller's fresh labels
to their task, and gathers the entity head's rows. Token ids and the frozen-layer cache are filled
in later, by ``models.training_model.encode_rows``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from models.data import (
    TASKS,
    Example,
    LabelledExample,
    Task,
    dedup_against,
    load_split,
    parse_label,
)
from models.domains import load_semeval2017, load_sentfin
from models.entities import EntityExample, load_sentfin_entities, single_cashtag_examples
from models.training_config import TrainProfile

R = TypeVar("R")
"""Rows of any kind (story or entity examples) for :func:`subsample`."""


@dataclass
class TaskData:
    """One story head's rows. ``train`` is laid out as tweets, then news headlines, then fresh labels."""

    train: list[Example]
    valid: list[Example]
    dedup_mask: list[bool] = field(default_factory=list)  # valid rows that survive de-duplication
    n_extra: int = 0  # the last n_extra training rows are fresh labels (always used)
    n_news: int = 0  # the n_news rows before them are news headlines (sampled per epoch)
    # further fixed validation sets by name (models/domains.py), e.g. "news", "news_semeval"
    more_valid: dict[str, list[Example]] = field(default_factory=dict)
    enc: list[list[int]] = field(default_factory=list)  # token ids of each training row
    states: list[torch.Tensor] | None = None  # per training row: frozen layers' output (seq x hidden)

    @property
    def n_base(self) -> int:
        """How many training rows come from the task's own dataset (the tweets, first in ``train``)."""
        return len(self.train) - self.n_extra - self.n_news


@dataclass
class EntityData:
    """The entity head's rows: texts with their targets (``models.entities``)."""

    train: list[EntityExample]
    valid: list[EntityExample]
    enc: list[list[int]] = field(default_factory=list)
    masks: list[list[tuple[list[int], int]]] = field(default_factory=list)  # per row: (word-piece mask, label)
    states: list[torch.Tensor] | None = None


@dataclass
class TrainingData:
    """What :func:`prepare_data` hands to the later phases."""

    tasks: dict[Task, TaskData]  # in TASKS order
    entities: EntityData | None  # None: the profile trains no entity head
    extra: list[tuple[Task, Example]]  # the caller's fresh labels, validated
    data_dir: Path  # where the vendored datasets were read from (hashed into the manifest)


def prepare_data(
    prof: TrainProfile,
    seed: int,
    extra_examples: Iterable[LabelledExample | tuple[str, str, str | int]],
    data_dir: Path,
) -> TrainingData:
    """Load, cap and de-duplicate every head's rows for one run (see the module docstring)."""
    extra = coerce_extra(extra_examples)
    tasks = {task: _task_data(task, prof, seed, [e for t, e in extra if t == task], data_dir) for task in TASKS}
    return TrainingData(tasks, _entity_data(tasks["sentiment"], prof, seed, data_dir), extra, data_dir)


def _task_data(task: Task, prof: TrainProfile, seed: int, fresh: list[Example], data_dir: Path) -> TaskData:
    train_rows = load_split(task, "train", data_dir)
    valid_rows = load_split(task, "valid", data_dir)
    dedup_keep = {id(r) for r in dedup_against(valid_rows, train_rows)}
    if prof.valid_limit is not None and prof.valid_limit < len(valid_rows):
        valid_rows = random.Random(seed + 1).sample(valid_rows, prof.valid_limit)
    news: list[Example] = []
    more: dict[str, list[Example]] = {}
    if task == "sentiment":
        train_rows = subsample(train_rows, prof.sentiment_train, random.Random(seed + 2))
        if prof.news_per_epoch != 0:  # capped like the tweets in the small profiles
            news = subsample(load_sentfin("train", data_dir), prof.sentiment_train, random.Random(seed + 4))
        more = {"news": load_sentfin("valid", data_dir), "news_semeval": load_semeval2017(data_dir)}
        if prof.valid_limit is not None:
            more = {k: subsample(v, prof.valid_limit, random.Random(seed + 3)) for k, v in more.items()}
    if task == "topic":
        train_rows = subsample(train_rows, prof.topic_train, random.Random(seed + 5))
    return TaskData(
        train_rows + news + fresh,
        valid_rows,
        [id(r) in dedup_keep for r in valid_rows],
        n_extra=len(fresh),
        n_news=len(news),
        more_valid=more,
    )


def _entity_data(sentiment: TaskData, prof: TrainProfile, seed: int, data_dir: Path) -> EntityData | None:
    """SEntFiN entity rows plus the sentiment tweets that name exactly one cashtag (None: no entity head)."""
    if prof.entity_per_epoch == 0:
        return None
    tweet_rows = sentiment.train[: sentiment.n_base]
    e_train = subsample(load_sentfin_entities("train", data_dir), prof.entity_train, random.Random(seed + 6))
    e_valid = load_sentfin_entities("valid", data_dir)
    if prof.valid_limit is not None:
        e_valid = subsample(e_valid, prof.valid_limit, random.Random(seed + 7))
    return EntityData(e_train + single_cashtag_examples(tweet_rows), e_valid)


def subsample(rows: Sequence[R], n: int | None, rng: random.Random) -> list[R]:
    """``n`` rows drawn by ``rng`` (all of them, in order, when ``n`` is None or not smaller)."""
    kept = list(rows)
    if n is None or n >= len(kept):
        return kept
    return rng.sample(kept, n)


def coerce_extra(extra: Iterable[LabelledExample | tuple[str, str, str | int]]) -> list[tuple[Task, Example]]:
    """Fresh labels as ``(task, Example)``; ``ValueError`` naming the first bad one."""
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


# -- model selection -------------------------------------------------------------------------
def valid_sets(td: TaskData, prof: TrainProfile, report: bool = False) -> dict[str, list[Example]]:
    """The validation sets model selection uses (``report``: the ones it only reports), by name."""
    chosen = {
        "tweets": td.valid,
        **({"news": td.more_valid["news"]} if prof.select_on_news and "news" in td.more_valid else {}),
    }
    if not report:
        return chosen
    return {k: v for k, v in td.more_valid.items() if k not in chosen}


def selection_score(macro_f1_by_set: dict[str, float]) -> float:
    """The selection rule: the mean macro-F1 over a head's selection sets (tweets, and news when
    ``select_on_news``), each set weighted equally whatever its size. Early stopping averages it
    over the two heads; the lexical weight of a head maximises it (ties: the smaller weight)."""
    return sum(macro_f1_by_set.values()) / max(1, len(macro_f1_by_set))
