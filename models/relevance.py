"""How much a story is about each of its tickers: a relevance in [0, 1] computed from the text.

Pure and cheap (no model): it reads the story's ticker mentions (``NewsItem.mentions``, where
each ticker was found) and the title, and multiplies three factors, each documented in
docs/MODELS.md ("Relevance"):

* **where** the ticker is named: first-named in the title 1.0; named later in the title 0.85;
  only in the body 0.3 + 0.1 per further body mention (at most 0.6), or 0.15 + 0.1 per further
  mention when the title names another ticker (the story is about that one); supplied by the
  feed but not found in the text 0.5.
* **list**: a mention inside a run of ``LIST_MIN`` or more tickers written one after the other
  (``$AAPL $MSFT $NVDA …``, ``AAPL, MSFT and NVDA``) is a list entry, not a subject: the factor
  is ``1 / run length`` (a ten-ticker list gives each 0.1).
* **crowd**: a story naming more than ``CROWD_FREE`` distinct tickers is about each of them
  less: ``CROWD_FREE / n``.

Stories without mentions (schema-1 records, or tickers set by code) keep the old behaviour:
each ticker relevance 1.0. The trend stage drops (story, ticker) pairs below
``aggregator.ticker_relevance_floor`` and weights the rest by relevance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from monitor.core.records import NewsItem, TickerMention

TITLE_FIRST = 1.0
TITLE_LATER = 0.85
BODY_BASE = 0.3
BODY_BASE_OTHER_SUBJECT = 0.15  # the title names another ticker: this one is a side note
BODY_PER_EXTRA = 0.1
BODY_MAX = 0.6
FEED_ONLY = 0.5
LIST_MIN = 3  # a run of this many tickers in a row is a list
CROWD_FREE = 3  # distinct tickers a story can name before each counts for less

# what may stand between two list entries: spaces, commas, slashes, '&', 'and', '|', ';', '+'
_LIST_GAP = re.compile(r"^(?:\s|,|/|&|\||;|\+|\band\b|\bor\b)*$", re.IGNORECASE)


def _runs(mentions: Sequence[TickerMention], text: str) -> dict[int, int]:
    """For each mention index (mentions of one field sorted by start), the length of the run of
    consecutive mentions it belongs to (1 when it stands alone)."""
    order = sorted(
        (i for i, m in enumerate(mentions) if m.start is not None and m.end is not None),
        key=lambda i: mentions[i].start or 0,
    )
    out: dict[int, int] = {}
    run: list[int] = []

    def close() -> None:
        for j in run:
            out[j] = len(run)

    for i in order:
        m = mentions[i]
        if run:
            prev = mentions[run[-1]]
            gap = text[prev.end or 0 : m.start or 0]
            if (m.start or 0) >= (prev.end or 0) and _LIST_GAP.match(gap):
                run.append(i)
                continue
            close()
        run = [i]
    if run:
        close()
    return out


def relevance(item: NewsItem) -> dict[str, float]:
    """Relevance of each of ``item.tickers`` (upper-case keys), in [0, 1]."""
    tickers = [t.upper() for t in dict.fromkeys(item.tickers) if t]
    if not tickers:
        return {}
    if not item.mentions:
        return dict.fromkeys(tickers, 1.0)
    title_m = [m for m in item.mentions if m.part == "title"]
    body_m = [m for m in item.mentions if m.part == "body"]
    title_runs = _runs(title_m, item.title)
    body_runs = _runs(body_m, item.body)
    first_in_title = min(title_m, key=lambda m: m.start or 0).ticker.upper() if title_m else None
    crowd = min(1.0, CROWD_FREE / len(tickers))
    out: dict[str, float] = {}
    for t in tickers:
        in_title = [i for i, m in enumerate(title_m) if m.ticker.upper() == t]
        in_body = [i for i, m in enumerate(body_m) if m.ticker.upper() == t]
        if in_title:
            where = TITLE_FIRST if t == first_in_title else TITLE_LATER
            listed = min(title_runs.get(i, 1) for i in in_title)  # its most prominent title mention
        elif in_body:
            base = BODY_BASE_OTHER_SUBJECT if title_m else BODY_BASE
            where = min(BODY_MAX, base + BODY_PER_EXTRA * (len(in_body) - 1))
            listed = min(body_runs.get(i, 1) for i in in_body)
        else:
            where, listed = FEED_ONLY, 1
        list_factor = 1.0 / listed if listed >= LIST_MIN else 1.0
        out[t] = round(max(0.0, min(1.0, where * list_factor * crowd)), 4)
    return out
