"""The batch aggregation the streaming aggregator must agree with, written from docs/STREAMING.md
("Windows and points", "Per-ticker sentiment and relevance") and NOT from the implementation:
this module imports nothing from ``monitor/stages/`` (issue #27), only the record types.

What it answers, per (trend key, window name, window start): count, mean, negative share,
positive share, weighted mean (see :func:`batch_aggregate`). It knows nothing of watermarks, grace,
partitions or checkpoints: every story lands in every window it falls in.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from monitor.core.records import ScoredItem

MILLIONTHS = 1_000_000
"""The spec: sums are integers in millionths, each story's term rounded to the nearest millionth."""


def millionths(x: float) -> int:
    return round(x * MILLIONTHS)


def windows_of(windows: Iterable[Any]) -> list[tuple[str, float, float]]:
    """(name, size, hop) in seconds from config-like window objects (``name``, ``size``, ``hop``)."""
    return [(w.name, float(w.size), float(w.hop if w.hop is not None else w.size)) for w in windows]


def starts_containing(size: float, hop: float, t: float) -> list[float]:
    """Every epoch-aligned window start ``k * hop`` (k an integer) with ``start <= t < start + size``."""
    first = math.floor((t - size) / hop)  # one step early on purpose; the filter decides
    last = math.floor(t / hop)
    return [k * hop for k in range(first, last + 1) if k * hop <= t < k * hop + size]


def keys_and_terms(s: ScoredItem, floor: float) -> list[tuple[str, float, str, float, float]]:
    """(key, score, label, confidence, relevance) for every series the story feeds.

    ``all``, ``topic:<topic>``, ``source:<source>`` get the story's own sentiment at relevance 1;
    ``ticker:<SYM>`` for each ticker of the story (``NewsItem.tickers``, upper-cased, first
    occurrence) gets the entity verdict for SYM when there is one, and only if its relevance is at
    least ``floor``; without a verdict (schema-1 record) the story's sentiment at relevance 1.
    """
    story_conf = max(s.sentiment_probs.values()) if s.sentiment_probs else 0.0
    story = (s.sentiment_score, s.sentiment, story_conf, 1.0)
    out = [(k, *story) for k in ("all", f"topic:{s.topic}", f"source:{s.item.source}")]
    verdicts = {}
    for e in s.entities:
        verdicts.setdefault(e.ticker.upper(), e)
    done: set[str] = set()
    for t in s.item.tickers:
        sym = t.upper()
        if not sym or sym in done:
            continue
        done.add(sym)
        e = verdicts.get(sym)
        if e is None:
            out.append((f"ticker:{sym}", *story))
        elif e.relevance >= floor:
            conf = max(e.sentiment_probs.values()) if e.sentiment_probs else 0.0
            out.append((f"ticker:{sym}", e.sentiment_score, e.sentiment, conf, e.relevance))
    return out


def keys_of(s: ScoredItem, floor: float) -> list[str]:
    return [row[0] for row in keys_and_terms(s, floor)]


def batch_aggregate_specs(windows: list[tuple[str, float, float]], floor: float, stories: Iterable[ScoredItem]) -> dict:
    """(key, window name, window start as UTC datetime) ->
    (count, mean, negative share, positive share, weighted mean), each rounded to 9 places:

    * count = number of stories (each story id once);
    * mean = sum(r * x) / sum(r); negative/positive share = sum of r over the stories so labelled
      / sum(r); all 0 when sum(r) = 0;
    * weighted mean = sum(w * x) / sum(w) with w = novelty * confidence * r; the mean when sum(w) = 0.
    """
    acc: dict = defaultdict(lambda: [0, 0, 0, 0, 0, 0, 0])
    for s in {s.id: s for s in stories}.values():
        t = s.item.published_at.timestamp()
        for key, x, label, conf, r in keys_and_terms(s, floor):
            w = s.item.novelty * conf * r
            for name, size, hop in windows:
                for start in starts_containing(size, hop, t):
                    a = acc[(key, name, datetime.fromtimestamp(start, tz=timezone.utc))]
                    a[0] += 1
                    a[1] += millionths(r)
                    a[2] += millionths(r * x)
                    a[3] += millionths(r) if label == "negative" else 0
                    a[4] += millionths(r) if label == "positive" else 0
                    a[5] += millionths(w)
                    a[6] += millionths(w * x)
    out = {}
    for k, (n, rs, rx, neg, pos, ws, wx) in acc.items():
        mean = rx / rs if rs else 0.0
        out[k] = (
            n,
            round(mean, 9),
            round(neg / rs if rs else 0.0, 9),
            round(pos / rs if rs else 0.0, 9),
            round(wx / ws if ws else mean, 9),
        )
    return out


def batch_aggregate(cfg: Any, stories: Iterable[ScoredItem]) -> dict:
    """:func:`batch_aggregate_specs` for an aggregator config (``windows``, ``ticker_relevance_floor``)."""
    return batch_aggregate_specs(windows_of(cfg.windows), cfg.ticker_relevance_floor, stories)
