"""The news-domain sentiment sets and the fixed validation sets of every task, per domain.

finsent reads news headlines and story text, but its tweet sets (``models/data/sentiment``) are
finance tweets. Two public sets of human-labelled financial **news headlines** are vendored byte
for byte under ``models/data/news/`` (sources and what is known of their licences:
``models/data/news/ATTRIBUTION.md``); this module maps them onto finsent's sentiment labels:

* **SEntFiN 1.0** (``sentfin_dataset_1.csv``, 10,753 headlines, one label per entity named in the
  headline). A headline is kept only when all its entities carry the same label (9,518 of 10,753;
  1,235 with conflicting entity labels are dropped), and that label is the headline's. Split by a
  hash of the normalised text (so near-copies land on the same side): one headline in five is
  validation (``news``, 1,9xx rows), the rest training rows.
* **SemEval-2017 Task 5, subtask 2** headlines (``semeval2017_task5_headlines.json``, 1,142
  headlines with a continuous score in [-1, 1]): ``score < -0.1`` negative, ``score > 0.1``
  positive, otherwise neutral (``SEMEVAL_NEUTRAL_BAND``). Used for evaluation only, never for
  training or model selection: an untouched second news source.

Financial PhraseBank (and anything containing it) is deliberately absent: it is reserved for
independent evaluation.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from models.data import (
    DATA_DIR,
    NEWS_FILES,
    DataError,
    Example,
    Task,
    dedup_against,
    load_split,
    normalise_for_dedup,
    parse_label,
)

SENTFIN_FILE, SEMEVAL_FILE = NEWS_FILES
SENTFIN_VALID_EVERY = 5  # one headline in five (by text hash) is validation
SEMEVAL_NEUTRAL_BAND = 0.1  # |score| <= band -> neutral

Domain = Literal["tweets", "news"]
# name -> (domain, used for model selection?); the order is the report order
SET_INFO: dict[str, tuple[Domain, bool]] = {
    "tweets": ("tweets", True),
    "tweets_dedup": ("tweets", False),
    "news": ("news", True),
    "news_semeval": ("news", False),
}


def _is_valid_row(text: str) -> bool:
    digest = hashlib.sha256(normalise_for_dedup(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % SENTFIN_VALID_EVERY == 0


def sentfin_rows(data_dir: Path = DATA_DIR) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(row number, headline, {entity: label})`` of every SEntFiN row (DataError names a bad one)."""
    path = data_dir / SENTFIN_FILE
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as err:
        raise DataError(f"{path}: cannot open: {err.strerror or err}") from None
    with handle:
        for rowno, row in enumerate(csv.DictReader(handle), start=2):
            try:
                decisions = json.loads(row["Decisions"])
                text = row["Title"]
            except (KeyError, TypeError, json.JSONDecodeError) as err:
                raise DataError(f"{path}: row {rowno}: unreadable row ({err})") from None
            if not isinstance(decisions, dict):
                raise DataError(f"{path}: row {rowno}: Decisions is not an object")
            yield rowno, text, decisions


def in_split(text: str, split: Literal["train", "valid", "all"]) -> bool:
    """Whether a SEntFiN headline belongs to ``split`` (one in five, by its normalised text, is valid)."""
    return split == "all" or (split == "valid") == _is_valid_row(text)


def load_sentfin(split: Literal["train", "valid", "all"], data_dir: Path = DATA_DIR) -> list[Example]:
    """SEntFiN headlines whose entities agree, labelled with that shared sentiment."""
    out: list[Example] = []
    for rowno, text, decisions in sentfin_rows(data_dir):
        labels = {str(v).strip().lower() for v in decisions.values()}
        if len(labels) != 1 or not text or not text.strip():
            continue  # entities disagree (or nothing to read): not a headline-level label
        try:
            label = parse_label("sentiment", labels.pop())
        except ValueError as err:
            raise DataError(f"{data_dir / SENTFIN_FILE}: row {rowno}: {err}") from None
        if in_split(text, split):
            out.append(Example(text=text, label=label))
    if not out:
        raise DataError(f"{data_dir / SENTFIN_FILE}: no rows")
    return out


def semeval_label(score: float) -> int:
    """SemEval-2017 Task 5 score in [-1, 1] -> finsent sentiment index."""
    if score < -SEMEVAL_NEUTRAL_BAND:
        return parse_label("sentiment", "negative")
    if score > SEMEVAL_NEUTRAL_BAND:
        return parse_label("sentiment", "positive")
    return parse_label("sentiment", "neutral")


def load_semeval2017(data_dir: Path = DATA_DIR) -> list[Example]:
    path = data_dir / SEMEVAL_FILE
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        return [Example(text=r["title"], label=semeval_label(float(r["sentiment"]))) for r in records]
    except OSError as err:
        raise DataError(f"{path}: cannot open: {err.strerror or err}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: unreadable record ({err})") from None


def validation_sets(task: Task, data_dir: Path = DATA_DIR) -> dict[str, list[Example]]:
    """The fixed validation sets of ``task``, by name (see ``SET_INFO`` for domain and role).

    sentiment: ``tweets`` (tweet validation), ``tweets_dedup`` (minus near-copies of training
    rows), ``news`` (SEntFiN validation part), ``news_semeval`` (SemEval-2017, report only);
    topic: ``tweets``, ``tweets_dedup``. The retraining gate and ``finsent eval`` use these.
    """
    valid = load_split(task, "valid", data_dir)
    sets = {"tweets": valid, "tweets_dedup": dedup_against(valid, load_split(task, "train", data_dir))}
    if task == "sentiment":
        sets["news"] = load_sentfin("valid", data_dir)
        sets["news_semeval"] = load_semeval2017(data_dir)
    return sets
