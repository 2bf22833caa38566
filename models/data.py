"""Labelled data: the vendored twitter-financial-news sets, label maps, de-duplication, hashing.

Label indices used everywhere inside finsent (model heads, metrics, manifests):

* sentiment: ``SENTIMENT_LABELS`` order, i.e. 0 negative, 1 neutral, 2 positive;
* topic: ``TOPIC_LABELS`` order, identical to the dataset's ``labels.txt`` ids.

The sentiment dataset numbers its classes differently (0 Bearish, 1 Bullish, 2 Neutral);
:func:`parse_label` maps those ids, and label names, onto finsent's indices.
"""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from monitor.core.checksum import sha256_file
from monitor.core.records import SENTIMENT_LABELS

Task = Literal["sentiment", "topic"]
Split = Literal["train", "valid"]
TASKS: tuple[Task, ...] = ("sentiment", "topic")

DATA_DIR = Path(__file__).resolve().parent / "data"

TOPIC_LABELS: tuple[str, ...] = (
    "Analyst Update",
    "Fed | Central Banks",
    "Company | Product News",
    "Treasuries | Corporate Debt",
    "Dividend",
    "Earnings",
    "Energy | Oil",
    "Financials",
    "Currencies",
    "General News | Opinion",
    "Gold | Metals | Materials",
    "IPO",
    "Legal | Regulation",
    "M&A | Investments",
    "Macro",
    "Markets",
    "Politics",
    "Personnel Change",
    "Stock Commentary",
    "Stock Movement",
)

# The sentiment dataset's ids -> finsent's sentiment index (0 Bearish, 1 Bullish, 2 Neutral).
_SENTIMENT_DATASET_IDS: dict[int, int] = {
    0: SENTIMENT_LABELS.index("negative"),
    1: SENTIMENT_LABELS.index("positive"),
    2: SENTIMENT_LABELS.index("neutral"),
}
_SENTIMENT_ALIASES: dict[str, str] = {"bearish": "negative", "bullish": "positive"}

_FILES: dict[tuple[Task, Split], str] = {
    ("sentiment", "train"): "sentiment/sent_train.csv",
    ("sentiment", "valid"): "sentiment/sent_valid.csv",
    ("topic", "train"): "topic/topic_train.csv",
    ("topic", "valid"): "topic/topic_valid.csv",
}
# news-domain sentiment sets, read by models/domains.py (raw files, vendored byte for byte)
NEWS_FILES: tuple[str, ...] = ("news/sentfin_dataset_1.csv", "news/semeval2017_task5_headlines.json")

_URL = re.compile(r"https?://\S+")
_SPACES = re.compile(r"\s+")
URL_MARKER = "http"  # one word-piece: keeps "this story links somewhere" without the random t.co path


def model_text(text: str) -> str:
    """What the encoder reads: HTML entities decoded, each URL reduced to one marker token, spaces folded.

    Shortened links (``https://t.co/XKcPDilIuU``) cost ~10 word-pieces of noise each; dropping
    them cuts the average tweet from 44 to 27 tokens (topic set), which makes training and
    inference ~1.4x faster at no cost in accuracy. Training, evaluation, the engine and the
    benchmark all call this, so a model always sees the same kind of text.
    """
    if not isinstance(text, str):
        return " "
    out = _SPACES.sub(" ", _URL.sub(URL_MARKER, html.unescape(text))).strip()
    return out or " "


class DataError(ValueError):
    """A labelled file is malformed; the message names the file and row."""


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: int  # finsent index for the task


@dataclass(frozen=True, slots=True)
class LabelledExample:
    """An extra training example (e.g. a fresh human label) given by name or dataset id."""

    task: Task
    text: str
    label: str | int


def labels_for(task: Task) -> tuple[str, ...]:
    if task == "sentiment":
        return SENTIMENT_LABELS
    if task == "topic":
        return TOPIC_LABELS
    raise ValueError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")


def parse_label(task: Task, raw: str | int) -> int:
    """Map a label name (case-insensitive) or the dataset's integer id to finsent's index."""
    names = labels_for(task)
    if isinstance(raw, bool):
        raise ValueError(f"unknown {task} label {raw!r}")
    if isinstance(raw, int):
        value = raw
    else:
        text = str(raw).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            value = int(text)
        else:
            lowered = text.lower()
            if task == "sentiment":
                lowered = _SENTIMENT_ALIASES.get(lowered, lowered)
            for i, name in enumerate(names):
                if name.lower() == lowered:
                    return i
            raise ValueError(f"unknown {task} label {text!r} (expected one of: {', '.join(names)} or an id)")
    if task == "sentiment":
        if value in _SENTIMENT_DATASET_IDS:
            return _SENTIMENT_DATASET_IDS[value]
    elif 0 <= value < len(names):
        return value
    raise ValueError(f"unknown {task} label id {value} (valid ids 0..{len(names) - 1})")


def read_labelled_csv(path: Path, task: Task) -> list[Example]:
    """Read a ``text,label`` CSV (texts may span lines). Raises :class:`DataError` naming the row."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as err:
        raise DataError(f"{path}: cannot open: {err.strerror or err}") from None
    with handle:
        reader = csv.DictReader(handle)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        missing = [c for c in ("text", "label") if c not in fields]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)} (header has: {', '.join(fields) or 'nothing'})"
            )
        reader.fieldnames = fields
        out: list[Example] = []
        for row in reader:
            # Row numbers as a spreadsheet shows them: header is row 1.
            rowno = len(out) + 2
            text = row.get("text")
            label = row.get("label")
            if text is None or label is None or label.strip() == "":
                raise DataError(f"{path}: row {rowno}: missing text or label")
            try:
                idx = parse_label(task, label)
            except ValueError as err:
                raise DataError(f"{path}: row {rowno}: {err}") from None
            out.append(Example(text=text, label=idx))
    if not out:
        raise DataError(f"{path}: no rows")
    return out


def data_path(task: Task, split: Split, data_dir: Path = DATA_DIR) -> Path:
    return data_dir / _FILES[(task, split)]


def load_split(task: Task, split: Split, data_dir: Path = DATA_DIR) -> list[Example]:
    return read_labelled_csv(data_path(task, split, data_dir), task)


def normalise_for_dedup(text: str) -> str:
    """URLs stripped, then trimmed and lower-cased: two rows equal here are near-copies."""
    return _URL.sub("", text).strip().lower()


def dedup_against(rows: Sequence[Example], reference: Iterable[Example]) -> list[Example]:
    """``rows`` without the ones that are near-copies of a text in ``reference``."""
    seen = {normalise_for_dedup(r.text) for r in reference}
    return [r for r in rows if normalise_for_dedup(r.text) not in seen]


def data_hashes(data_dir: Path = DATA_DIR) -> dict[str, str]:
    """sha256 of every vendored data file, keyed by its path relative to ``data_dir``."""
    return {rel: sha256_file(data_dir / rel) for rel in sorted([*_FILES.values(), *NEWS_FILES])}
