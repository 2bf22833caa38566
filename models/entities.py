"""Entity-level (target-aware) sentiment: targets, where they are in a text, and the labelled data.

A *target* is one entity of a text: a ticker or a company name, with the surface forms it is
written as (``$GLBX``, ``Globex``). The network marks no text: it reads the text once and pools
the token states under each target's mentions (``models.network.entity_logits``). This module
finds those mentions in the text the model reads (``model_text``) and turns them into word-piece
masks, for training, evaluation and serving alike.

Labelled data:

* **SEntFiN 1.0** (``models/data/news/sentfin_dataset_1.csv``): every headline, with each named
  entity's own label (conflicting ones included). Split *by headline* with the same hash as the
  story-level news set (``models.domains``): one headline in five is validation.
* **single-entity tweets**: rows of the tweet sentiment training set that name exactly one
  cashtag; the tweet's label is that ticker's label.
* **a JSONL file** for ``finsent eval --task entity`` (format in docs/MODELS.md)::

    {"text": "Globex soars as rival Initech recalls its phone",
     "entities": [{"ticker": "GLBX", "name": "Globex", "label": "positive"},
                  {"name": "Initech", "span": [22, 29], "label": "negative"}]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.data import DATA_DIR, NEWS_FILES, DataError, Example, model_text, parse_label
from models.domains import in_split, sentfin_rows

SENTFIN_FILE = NEWS_FILES[0]
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,5}(?:[.\-][A-Za-z0-9]{1,3})?)(?!\w)")


@dataclass(frozen=True, slots=True)
class Target:
    """One entity of a text: its name (a ticker or a company), the strings it is written as in
    the text, explicit character spans (in the original text) when known, and its label (-1: none)."""

    name: str
    surfaces: tuple[str, ...]
    label: int = -1
    spans: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class EntityExample:
    text: str
    targets: tuple[Target, ...]

    @property
    def disagree(self) -> bool:
        return len({t.label for t in self.targets}) > 1


def _surface_pattern(surface: str) -> re.Pattern[str]:
    body = re.escape(surface.strip())
    left = r"(?<!\w)" if surface[:1].isalnum() else ""
    right = r"(?!\w)" if surface[-1:].isalnum() else ""
    return re.compile(left + body + right, re.IGNORECASE)


def find_spans(text: str, surfaces: Iterable[str]) -> list[tuple[int, int]]:
    """Character spans of every occurrence of any surface in ``text`` (case-insensitive, whole
    words where the surface starts/ends with a letter or digit), longest first on overlaps."""
    found: list[tuple[int, int]] = []
    for surface in sorted({s.strip() for s in surfaces if s and s.strip()}, key=len, reverse=True):
        for m in _surface_pattern(surface).finditer(text):
            if all(m.end() <= a or m.start() >= b for a, b in found):
                found.append((m.start(), m.end()))
    return sorted(found)


def target_spans(text: str, clean: str, target: Target) -> list[tuple[int, int]]:
    """Spans of ``target`` in ``clean`` (= ``model_text(text)``): its explicit spans' strings when
    given (offsets index ``text``, which cleaning may shift), else its surfaces."""
    surfaces = [text[a:b] for a, b in target.spans if 0 <= a < b <= len(text)] or list(target.surfaces)
    return find_spans(clean, surfaces)


def token_mask(offsets: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """1 for every word-piece (by its character ``offsets``) that overlaps one of ``spans``."""
    out = [0] * len(offsets)
    for k, (a, b) in enumerate(offsets):
        if b > a and any(a < e and b > s for s, e in spans):
            out[k] = 1
    return out


# -- labelled data ------------------------------------------------------------------------------
def load_sentfin_entities(split: str, data_dir: Path = DATA_DIR) -> list[EntityExample]:
    """SEntFiN headlines with every entity's own label; ``split``: train / valid / all (by headline)."""

    out: list[EntityExample] = []
    for rowno, text, decisions in sentfin_rows(data_dir):
        if not text or not text.strip() or not in_split(text, split):  # type: ignore[arg-type]
            continue
        clean = model_text(text)
        targets = []
        for name, label in decisions.items():
            if not find_spans(clean, [name]):
                continue  # not written in the headline as named: nothing to point at
            try:
                targets.append(Target(name=name, surfaces=(name,), label=parse_label("sentiment", str(label))))
            except ValueError as err:
                raise DataError(f"{data_dir / SENTFIN_FILE}: row {rowno}: {err}") from None
        if targets:
            out.append(EntityExample(text, tuple(targets)))
    if not out:
        raise DataError(f"{data_dir / SENTFIN_FILE}: no rows")
    return out


def single_cashtag_examples(rows: Iterable[Example]) -> list[EntityExample]:
    """Rows naming exactly one cashtag: the row's label is that ticker's label."""
    out = []
    for r in rows:
        tags = {m.group(1).upper() for m in _CASHTAG.finditer(r.text)}
        if len(tags) == 1:
            tag = tags.pop()
            out.append(EntityExample(r.text, (Target(name=tag, surfaces=(f"${tag}",), label=r.label),)))
    return out


def load_entity_jsonl(path: Path) -> list[EntityExample]:
    """Read the documented JSONL format; every bad line is named (all of them) in one DataError."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot open: {err.strerror or err}") from None
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    out: list[EntityExample] = []
    problems: list[str] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(_entity_row(json.loads(line)))
        except json.JSONDecodeError as err:
            problems.append(f"line {lineno}: not JSON ({err.msg})")
        except (ValueError, TypeError, KeyError) as err:
            problems.append(f"line {lineno}: {err}")
    if problems:
        more = f" (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        raise DataError(f"{path}: " + "; ".join(problems[:20]) + more)
    if not out:
        raise DataError(f"{path}: no rows")
    return out


def _entity_row(obj: Any) -> EntityExample:
    if not isinstance(obj, dict):
        raise ValueError("expected an object with 'text' and 'entities'")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("'text' must be a non-empty string")
    entities = obj.get("entities")
    if not isinstance(entities, list) or not entities:
        raise ValueError("'entities' must be a non-empty list")
    targets = []
    for k, e in enumerate(entities):
        if not isinstance(e, dict):
            raise ValueError(f"entities[{k}]: expected an object")
        ticker, name, span, label = e.get("ticker"), e.get("name"), e.get("span"), e.get("label")
        if not isinstance(label, str):
            raise ValueError(f"entities[{k}]: 'label' must be negative, neutral or positive")
        surfaces = [
            s
            for s in (name, ticker, f"${ticker}" if isinstance(ticker, str) else None)
            if isinstance(s, str) and s.strip()
        ]
        spans: tuple[tuple[int, int], ...] = ()
        if span is not None:
            if (
                not isinstance(span, list)
                or len(span) != 2
                or not all(type(x) is int for x in span)
                or not 0 <= span[0] < span[1] <= len(text)
            ):
                raise ValueError(f"entities[{k}]: 'span' must be [start, end] inside the text")
            spans = ((span[0], span[1]),)
        if not surfaces and not spans:
            raise ValueError(f"entities[{k}]: needs a 'ticker', a 'name' or a 'span'")
        try:
            lab = parse_label("sentiment", label)
        except ValueError as err:
            raise ValueError(f"entities[{k}]: {err}") from None
        targets.append(
            Target(
                name=str(ticker or name or text[spans[0][0] : spans[0][1]]),
                surfaces=tuple(surfaces),
                label=lab,
                spans=spans,
            )
        )
    return EntityExample(text, tuple(targets))


# -- metrics --------------------------------------------------------------------------------------
def entity_report(
    examples: Sequence[EntityExample], predicted: Sequence[Sequence[int]], story: Sequence[int]
) -> dict[str, Any]:
    """Accuracy and macro-F1 of the per-entity predictions overall, on texts with several entities
    and on texts whose entities disagree, each next to the baseline of giving every entity the
    story's predicted sentiment (``story[i]`` for text i: today's behaviour before issue #25)."""
    from models.evaluation import classification_metrics  # heavy: imports torch and scikit-learn

    groups: dict[str, tuple[list[int], list[int], list[int]]] = {
        "all": ([], [], []),
        "multi": ([], [], []),
        "disagree": ([], [], []),
    }
    for ex, preds, s in zip(examples, predicted, story):
        names = ["all"] + (["multi"] if len(ex.targets) > 1 else []) + (["disagree"] if ex.disagree else [])
        for t, p in zip(ex.targets, preds):
            for g in names:
                y, yp, yb = groups[g]
                y.append(t.label)
                yp.append(p)
                yb.append(s)
    report: dict[str, Any] = {}
    for g, (y, yp, yb) in groups.items():
        if not y:
            report[g] = {"n": 0}
            continue
        m = classification_metrics("sentiment", y, yp)
        b = classification_metrics("sentiment", y, yb)
        report[g] = {
            "n": m["n"],
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "per_class": m["per_class"],
            "baseline_story": {"accuracy": b["accuracy"], "macro_f1": b["macro_f1"]},
            "gain_pt": {
                "accuracy": round(100 * (m["accuracy"] - b["accuracy"]), 1),
                "macro_f1": round(100 * (m["macro_f1"] - b["macro_f1"]), 1),
            },
        }
    report["texts"] = len(examples)
    return report
