from datetime import datetime, timedelta, timezone

import pytest

from monitor.core.records import (
    SCHEMA_VERSION,
    Alert,
    DeadLetter,
    Evidence,
    NewsItem,
    RecordDecodeError,
    ScoredItem,
    TrendPoint,
    decode,
)


def item(**kw) -> NewsItem:
    base = dict(id="reuters:1", source="reuters", title="Oil falls", published_at=datetime(2024, 5, 1, 12, 0))
    return NewsItem(**{**base, **kw})


def test_news_item_round_trip_carries_kind_and_schema_version():
    n = item(tickers=("XOM",), body="Crude slid 3%.")
    raw = n.encode()
    assert b'"kind":"news_item"' in raw and f'"schema_version":{SCHEMA_VERSION}'.encode() in raw
    assert decode(NewsItem, raw) == n


def test_naive_times_are_taken_as_utc_and_aware_ones_converted():
    n = item(published_at=datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert n.published_at == datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert item().published_at.tzinfo == timezone.utc


def test_text_and_partition_key():
    assert item().text == "Oil falls"
    assert item(body="More detail").text == "Oil falls\nMore detail"
    assert item().primary_key == "reuters"
    assert item(tickers=("XOM", "CVX")).primary_key == "XOM"


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"\xff\xfe not json", "news_item"),
        (b"{not json", "Invalid JSON"),
        (b'{"id": "x"}', "title: Field required"),
        (b'{"id": "x", "source": "s", "title": "t", "published_at": "yesterday"}', "published_at"),
        (b'{"kind": "alert", "id": "x", "source": "s", "title": "t", "published_at": "2024-01-01T00:00:00Z"}', "kind"),
        (
            b'{"schema_version": 99, "id": "x", "source": "s", "title": "t", "published_at": "2024-01-01T00:00:00Z"}',
            "newer",
        ),
        (b"[1, 2]", "news_item"),
        (None, "tombstone"),
    ],
)
def test_decode_rejects_malformed_payloads_with_a_clear_reason(payload, fragment):
    with pytest.raises(RecordDecodeError) as err:
        decode(NewsItem, payload)
    assert fragment in str(err.value)


def test_scored_item_bounds_and_nesting():
    s = ScoredItem(
        item=item(),
        sentiment="negative",
        sentiment_probs={"negative": 0.8, "neutral": 0.15, "positive": 0.05},
        sentiment_score=-0.75,
        topic="Energy | Oil",
        topic_probs={"Energy | Oil": 0.9},
        model_version="v1",
    )
    assert decode(ScoredItem, s.encode()) == s
    assert s.id == "reuters:1" and s.confidence == 0.8
    with pytest.raises(RecordDecodeError, match="sentiment_score"):
        decode(ScoredItem, s.encode().replace(b'"sentiment_score":-0.75', b'"sentiment_score":-1.5'))
    with pytest.raises(RecordDecodeError, match="sentiment"):
        decode(ScoredItem, s.encode().replace(b'"sentiment":"negative"', b'"sentiment":"gloomy"'))


def test_trend_point_and_alert_round_trip():
    ev = Evidence(id="a", title="Oil falls", source="reuters", published_at=datetime(2024, 5, 1), score=-0.9)
    t = TrendPoint(
        key="topic:Energy | Oil",
        window="15m",
        window_start=datetime(2024, 5, 1, 12),
        window_end=datetime(2024, 5, 1, 12, 15),
        count=3,
        mean_score=-0.5,
        negative_share=0.66,
        positive_share=0.0,
        ewma=-0.4,
        weighted_mean=-0.55,
        top_items=(ev,),
    )
    assert decode(TrendPoint, t.encode()) == t
    a = Alert(
        fingerprint="f", rule="oil", status="firing", starts_at=datetime(2024, 5, 1), evidence=(ev,), values={"x": 1.0}
    )
    assert decode(Alert, a.encode()) == a


def test_dead_letter_keeps_the_original_bytes():
    d = DeadLetter.wrap(
        stage="classify", reason="bad", payload=b"\x00\xffraw", source_topic="news.raw", source_offset=7
    )
    back = decode(DeadLetter, d.encode())
    assert back.payload == b"\x00\xffraw" and back.reason == "bad" and back.source_offset == 7
