"""Relevance of a story to each of its tickers (models/relevance.py), by the rules in docs/MODELS.md."""

from __future__ import annotations

from datetime import datetime, timezone

from models.relevance import relevance
from monitor.core.records import NewsItem, TickerMention


def story(
    title: str,
    mentions: list[tuple[str, str, str | None, int | None, int | None]],
    body: str = "",
    tickers: list[str] | None = None,
) -> NewsItem:
    ms = tuple(
        TickerMention(
            ticker=t,
            how=how,
            part=part,
            start=a,
            end=b,  # type: ignore[arg-type]
            surface=(title if part == "title" else body)[a:b] if a is not None else None,
        )
        for t, how, part, a, b in mentions
    )
    return NewsItem(
        id="x",
        source="s",
        title=title,
        body=body,
        published_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        tickers=tuple(tickers or dict.fromkeys(m[0] for m in mentions)),
        mentions=ms,
    )


def test_first_named_in_the_title_is_the_subject_the_rival_counts_a_little_less() -> None:
    title = "Globex shares soar after rival Initech recalls flagship product"
    rel = relevance(story(title, [("GLBX", "alias", "title", 0, 6), ("INTC", "alias", "title", 31, 38)]))
    assert rel == {"GLBX": 1.0, "INTC": 0.85}


def test_a_ten_cashtag_list_is_barely_about_any_of_them() -> None:
    tags = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "JPM", "XOM", "KO"]
    title = " ".join(f"${t}" for t in tags) + " stocks to watch"
    mentions, pos = [], 0
    for t in tags:
        mentions.append((t, "cashtag", "title", pos, pos + len(t) + 1))
        pos += len(t) + 2
    rel = relevance(story(title, mentions))
    # first: 1.0 * (1/10 list) * (3/10 crowd) = 0.03; the others 0.85 * 0.1 * 0.3 = 0.0255
    assert rel["AAPL"] == 0.03 and all(rel[t] == 0.0255 for t in tags[1:])


def test_a_comma_and_list_of_three_is_a_list_two_names_are_not() -> None:
    title = "AAPL, MSFT and NVDA lead the rally"
    three = relevance(
        story(
            title,
            [
                ("AAPL", "cashtag", "title", 0, 4),
                ("MSFT", "cashtag", "title", 6, 10),
                ("NVDA", "cashtag", "title", 15, 19),
            ],
        )
    )
    assert three == {"AAPL": round(1 / 3, 4), "MSFT": round(0.85 / 3, 4), "NVDA": round(0.85 / 3, 4)}
    two = relevance(
        story("AAPL and MSFT lead the rally", [("AAPL", "cashtag", "title", 0, 4), ("MSFT", "cashtag", "title", 9, 13)])
    )
    assert two == {"AAPL": 1.0, "MSFT": 0.85}


def test_body_only_feed_only_and_no_mentions() -> None:
    body = "Analysts said Initech may follow. Initech declined to comment."
    rel = relevance(
        story(
            "Markets rally on rate hopes",
            [("INTC", "alias", "body", 14, 21), ("INTC", "alias", "body", 34, 41), ("ACME", "feed", None, None, None)],
            body=body,
        )
    )
    assert rel == {"INTC": 0.4, "ACME": 0.5}  # body: 0.3 + 0.1 for the second mention
    side = relevance(
        story(
            "Globex beats estimates", [("GLBX", "alias", "title", 0, 6), ("INTC", "alias", "body", 14, 21)], body=body
        )
    )
    assert side == {"GLBX": 1.0, "INTC": 0.15}  # the title is about another ticker: a side note
    old = story("Old record", [], tickers=["AAPL", "MSFT"])  # schema 1: no mentions, full weight
    assert relevance(old) == {"AAPL": 1.0, "MSFT": 1.0}
    assert relevance(story("Nothing", [], tickers=[])) == {}


def test_many_tickers_each_count_less() -> None:
    title = "A beats B, C trails D"
    ms = [
        ("AA", "alias", "title", 0, 1),
        ("BB", "alias", "title", 8, 9),
        ("CC", "alias", "title", 11, 12),
        ("DD", "alias", "title", 20, 21),
    ]
    rel = relevance(story(title, ms))
    assert rel["AA"] == 0.75 and rel["BB"] == round(0.85 * 0.75, 4)  # crowd 3/4, no list (words between)
