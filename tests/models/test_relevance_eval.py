"""Relevance against hand-labelled stories (models/data/relevance/relevance_eval.jsonl).

Each line is a story (title, body) and, per ticker the connector finds in it, whether the story
is *about* that company (true) or only mentions it in passing or in a list (false); labelled by
the finsent developers from that definition, not from the formula's output. With the default
alias table and the trend floor (0.2), the rule in models/relevance.py must agree with at least
85 % of the labels, and every list story (3+ tickers in a row) must fall below the floor.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from connectors.tickers import TickerExtractor, default_aliases
from models.data import DATA_DIR
from models.relevance import relevance
from monitor.core.records import NewsItem

FLOOR = 0.2


def test_relevance_agrees_with_hand_labels() -> None:
    finder = TickerExtractor(default_aliases(), max_tickers=8)
    agree = total = 0
    wrong = []
    for line in (DATA_DIR / "relevance" / "relevance_eval.jsonl").read_text().splitlines():
        row = json.loads(line)
        tickers, mentions = finder.mentions([], row["title"], row["body"])
        item = NewsItem(
            id="x",
            source="s",
            title=row["title"],
            body=row["body"],
            published_at=datetime(2026, 12, 1, tzinfo=timezone.utc),
            tickers=tickers,
            mentions=mentions,
        )
        rel = relevance(item)
        for ticker, about in row["relevant"].items():
            assert ticker in rel, (ticker, row["title"])  # the labelled tickers are the ones found
            total += 1
            if (rel[ticker] >= FLOOR) == about:
                agree += 1
            else:
                wrong.append((row["title"], ticker, rel[ticker], about))
    assert total >= 80
    assert agree / total >= 0.85, wrong
