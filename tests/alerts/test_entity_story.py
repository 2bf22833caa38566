"""Story rules on per-ticker (entity) sentiment and relevance (issue #25), and how their evidence
reaches webhooks, Slack text and Alertmanager annotations.

Oracles from the spec: a story rule about a ticker measures that ticker's own sentiment (the
story's when the record has none for it) and ignores a ticker whose relevance is below the rule's
``min_relevance`` (default 0.2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alerts.payload import WebhookAlert, WebhookMessage, postable, slack_text
from alerts.ruleset import RulesError, StoryRule, parse_rules
from monitor.core.records import EntitySentiment, NewsItem, ScoredItem
from tests.alerts.helpers import at, rules
from tests.alerts.test_lifecycle import Harness, body


def entity(ticker: str, score: float, relevance: float, confidence: float = 0.9) -> EntitySentiment:
    if score < 0:
        probs = {"negative": confidence, "neutral": 1 - confidence, "positive": 0.0}
    else:
        probs = {"negative": 0.0, "neutral": 1 - confidence, "positive": confidence}
    label = max(probs, key=probs.__getitem__)
    return EntitySentiment(
        ticker=ticker, sentiment=label, sentiment_probs=probs, sentiment_score=score, relevance=relevance
    )


def scored(
    id: str,
    tickers: tuple[str, ...],
    story_score: float,
    *entities: EntitySentiment,
    title: str = "Globex shares soar after rival Initech recalls flagship product",
) -> ScoredItem:
    item = NewsItem(
        id=id,
        source="wire",
        url=f"https://news.example/{id}",
        title=title,
        published_at=at(1),
        fetched_at=at(1),
        tickers=tickers,
    )
    neg = (1 - story_score) / 2
    return ScoredItem(
        item=item,
        sentiment="negative" if story_score < 0 else "positive",
        sentiment_probs={"negative": neg, "neutral": 0.0, "positive": 1 - neg},
        sentiment_score=story_score,
        topic="Company | Product News",
        topic_probs={"Company | Product News": 1.0},
        model_version="m-1",
        scored_at=at(1),
        entities=tuple(entities),
    )


def conflicting(id: str = "c1", story_score: float = -0.85) -> ScoredItem:
    """Good for Globex, bad for Initech; the story-level verdict is (wrongly for GLBX) very negative."""
    return scored(id, ("GLBX", "INTC"), story_score, entity("GLBX", 0.9, 0.9), entity("INTC", -0.95, 0.8))


def bad_news(name: str, tickers: list[str], **extra) -> dict:
    return {"name": name, "type": "story", "tickers": tickers, "value": -0.8, **extra}


def fired(h: Harness, record: ScoredItem) -> list[dict]:
    return [a for e in h.feed(record) for a in body(e)["alerts"]]


def test_on_a_conflicting_story_the_rule_on_the_loser_fires_and_the_winners_does_not(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules(bad_news("intc-bad", ["INTC"]), bad_news("glbx-bad", ["GLBX"])))
    alerts = fired(h, conflicting())
    assert [a["labels"]["alertname"] for a in alerts] == ["intc-bad"]
    (a,) = alerts
    assert a["labels"]["ticker"] == "INTC"
    assert a["values"]["score"] == pytest.approx(-0.95)  # the ticker's own score ...
    assert a["values"]["relevance"] == pytest.approx(0.8)
    assert a["values"]["story_score"] == pytest.approx(-0.85)  # ... next to the story's
    (ev,) = a["evidence"]
    assert ev["ticker"] == "INTC" and ev["relevance"] == pytest.approx(0.8) and ev["score"] == pytest.approx(-0.95)
    assert ev["id"] == "c1" and ev["url"] == "https://news.example/c1"


def test_a_wildcard_rule_names_only_the_tickers_that_hold(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules(bad_news("any-bad", ["*"])))
    (a,) = fired(h, conflicting())
    assert a["labels"]["ticker"] == "INTC"
    assert [e["ticker"] for e in a["evidence"]] == ["INTC"]


def test_a_positive_rule_fires_on_the_winner_not_on_the_loser(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules({"name": "good", "type": "story", "tickers": ["*"], "op": ">", "value": 0.8}))
    # the story-level score alone (-0.85) would never pass "> 0.8"
    (a,) = fired(h, conflicting())
    assert a["labels"]["ticker"] == "GLBX" and a["values"]["score"] == pytest.approx(0.9)


def test_several_tickers_holding_make_one_alert_with_each_tickers_own_numbers(tmp_path: Path):
    story = scored(
        "two",
        ("AAA", "BBB", "CCC"),
        -0.5,
        entity("AAA", -0.85, 0.6),
        entity("BBB", -0.97, 0.9),
        entity("CCC", 0.2, 0.9),
    )
    h = Harness(tmp_path / "a.db", rules(bad_news("bad", ["*"])))
    (a,) = fired(h, story)
    assert a["labels"]["ticker"] == "AAA,BBB"  # story order, only those that hold
    # the ticker furthest past the threshold speaks for the alert
    assert a["values"]["score"] == pytest.approx(-0.97) and a["values"]["relevance"] == pytest.approx(0.9)
    assert a["values"]["score_AAA"] == pytest.approx(-0.85) and a["values"]["relevance_AAA"] == pytest.approx(0.6)
    assert a["values"]["score_BBB"] == pytest.approx(-0.97) and a["values"]["relevance_BBB"] == pytest.approx(0.9)
    assert {(e["ticker"], round(e["score"], 2), round(e["relevance"], 2)) for e in a["evidence"]} == {
        ("AAA", -0.85, 0.6),
        ("BBB", -0.97, 0.9),
    }


def test_min_relevance_ignores_passing_mentions(tmp_path: Path):
    tickers = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AMD", "INTC", "ORCL")
    listing = scored(
        "list",
        tickers,
        -0.9,
        *(entity(t, -0.9, 0.05) for t in tickers),
        title="$AAPL $MSFT $NVDA $AMZN $GOOG $META $TSLA $AMD $INTC $ORCL stocks to watch",
    )
    h = Harness(
        tmp_path / "a.db",
        rules(
            bad_news("default-floor", ["*"]),
            bad_news("no-floor", ["*"], min_relevance=0.0),
            bad_news("high-floor", ["INTC"], min_relevance=0.9),
        ),
    )
    (a,) = fired(h, listing)  # default 0.2: a list story is no news
    assert a["labels"]["alertname"] == "no-floor" and a["labels"]["ticker"] == ",".join(tickers)
    # INTC at relevance 0.8 is below high-floor's 0.9; at exactly the floor a ticker counts
    h2 = Harness(
        tmp_path / "b.db",
        rules(bad_news("high-floor", ["INTC"], min_relevance=0.9), bad_news("at-floor", ["INTC"], min_relevance=0.8)),
    )
    assert [a["labels"]["alertname"] for a in fired(h2, conflicting())] == ["at-floor"]


def test_a_ticker_without_its_own_verdict_falls_back_to_the_story(tmp_path: Path):
    # MSFT has an entity verdict (neutral); AAPL has none: the story's score speaks for it, unfiltered
    story = scored("mixed", ("AAPL", "MSFT"), -0.9, entity("MSFT", 0.0, 0.9))
    h = Harness(tmp_path / "a.db", rules(bad_news("bad", ["*"], min_relevance=0.5)))
    (a,) = fired(h, story)
    assert a["labels"]["ticker"] == "AAPL" and a["values"]["score"] == pytest.approx(-0.9)
    assert "relevance" not in a["values"]
    (ev,) = a["evidence"]
    assert ev["ticker"] == "AAPL" and ev["relevance"] is None


def test_template_variables_relevance_and_story_score(tmp_path: Path):
    rule = bad_news(
        "bad",
        ["INTC"],
        annotations={
            "summary": "{{ ticker }} {{ score | signed }} (relevance {{ relevance | round }}, story {{ story_score | signed }})"
        },
    )
    h = Harness(tmp_path / "a.db", rules(rule))
    (a,) = fired(h, conflicting())
    assert a["annotations"]["summary"] == "INTC -0.95 (relevance 0.80, story -0.85)"


def test_min_relevance_is_validated_and_defaults_to_0_2():
    (rule,) = parse_rules({"rules": [bad_news("s", ["*"])]}).rules
    assert isinstance(rule, StoryRule) and rule.min_relevance == 0.2
    for bad in (-0.1, 1.5, "lots"):
        with pytest.raises(RulesError) as info:
            parse_rules({"rules": [bad_news("s", ["*"], min_relevance=bad)]})
        (problem,) = info.value.problems
        assert problem.startswith("rule 's': min_relevance: ")


def test_evidence_lines_show_each_tickers_score_and_relevance(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules(bad_news("bad", ["*"])))
    (entry,) = h.feed(
        scored(
            "two",
            ("AAA", "BBB"),
            -0.5,
            entity("AAA", -0.85, 0.6),
            entity("BBB", -0.97, 0.9),
            title="AAA and BBB both slump",
        )
    )
    message = WebhookMessage.model_validate_json(entry.body)  # still a valid v4 envelope
    assert json.loads(entry.body)["version"] == "4"
    text = slack_text(message)
    assert "(wire, AAA score -0.85, relevance 0.60; BBB score -0.97, relevance 0.90)" in text
    annotations = postable(message.alerts[0]).annotations
    assert (
        annotations["evidence"] == "AAA and BBB both slump (wire, AAA score -0.85, relevance 0.60; "
        "BBB score -0.97, relevance 0.90)"
    )
    assert annotations["value_score_AAA"] == "-0.85" and annotations["value_relevance_BBB"] == "0.9"
    assert annotations["value_story_score"] == "-0.5"


def test_evidence_without_a_ticker_reads_as_before():
    alert = WebhookAlert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "x"},
            "annotations": {},
            "startsAt": at(0),
            "generatorURL": "http://g",
            "fingerprint": "f",
            "evidence": [{"id": "s", "title": "T", "source": "wire", "published_at": at(0), "score": -0.9}],
        }
    )
    assert postable(alert).annotations["evidence"] == "T (wire, score -0.90)"
