"""Per-ticker sentiment and relevance in the windows (issue #25): what feeds a ticker trend, the
floor, the relevance-weighted sums, evidence, and rows persisted before relevance existed."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.core.bus.base import Message
from monitor.stages import changelog
from monitor.stages.checkpoint import CheckpointStore
from monitor.stages.settings import AggregatorSettings
from monitor.stages.windows import PartitionWindows, WindowAgg, contribution, trend_keys, ts_of
from tests.stages.helpers import T0, entity, scored
from tests.stages.oracle import batch_aggregate, keys_of
from tests.stages.streaming_harness import summary

BASE = ts_of(T0)


def config(**kw) -> AggregatorSettings:
    defaults = dict(
        windows=[{"name": "1m", "size": "1m"}],
        grace="30s",
        baseline_windows=3,
        min_baseline_windows=2,
        ewma_alpha=0.5,
        top_items=3,
    )
    return AggregatorSettings(**{**defaults, **kw})


def feed(w: PartitionWindows, *stories) -> None:
    for s in stories:
        for key in trend_keys(s, w.config.ticker_relevance_floor):
            w.add(key, s)


def points(w: PartitionWindows) -> dict:
    return {p.key: p for p in w.take_dirty()}


def test_floor_setting_is_documented_and_bounded():
    assert AggregatorSettings().ticker_relevance_floor == 0.2
    assert "relevance" in AggregatorSettings.model_fields["ticker_relevance_floor"].description
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            AggregatorSettings(ticker_relevance_floor=bad)


def test_two_tickers_with_opposite_verdicts_move_their_trends_in_opposite_directions():
    w = PartitionWindows(config())
    calm = [scored(i, i, 0.0, tickers=("GLBX", "INTC")) for i in range(3)]  # schema-1: story sentiment
    feed(w, *calm)
    before = points(w)
    assert before["ticker:GLBX"].mean_score == before["ticker:INTC"].mean_score == 0.0
    # "Globex shares soar after rival Initech recalls flagship product": the story reads mildly positive
    s = scored(
        "x",
        10,
        0.3,
        tickers=("GLBX", "INTC"),
        title="Globex shares soar after rival Initech recalls",
        entities=(entity("GLBX", 0.9, 1.0, confidence=0.9), entity("INTC", -0.8, 0.9, confidence=0.8)),
    )
    feed(w, s)
    after = points(w)
    assert after["ticker:GLBX"].mean_score > 0 > after["ticker:INTC"].mean_score
    assert after["ticker:GLBX"].mean_score == pytest.approx(0.9 / 4)
    assert after["ticker:INTC"].mean_score == pytest.approx(-0.8 * 0.9 / 3.9)
    assert after["ticker:GLBX"].positive_share > 0 and after["ticker:GLBX"].negative_share == 0
    assert after["ticker:INTC"].negative_share > 0 and after["ticker:INTC"].positive_share == 0
    assert after["all"].mean_score == pytest.approx(0.3 / 4)  # other keys keep the story's sentiment
    ev = after["ticker:INTC"].top_items[0]
    assert (ev.id, ev.ticker, ev.relevance, ev.score) == ("sx", "INTC", 0.9, -0.8)
    assert after["all"].top_items[0].ticker is None and after["all"].top_items[0].score == 0.3


def test_a_mention_below_the_floor_neither_creates_nor_feeds_the_ticker_key():
    s = scored(
        1,
        0,
        0.5,
        tickers=("AAPL", "MSFT", "NVDA"),
        entities=(entity("AAPL", -1.0, 0.1), entity("MSFT", 0.5, 0.2), entity("NVDA", 0.5, 0.19999)),
    )
    assert trend_keys(s, 0.2) == ["all", "topic:earnings", "source:wire", "ticker:MSFT"]  # at the floor counts
    assert trend_keys(s, 0.05) == ["all", "topic:earnings", "source:wire", "ticker:AAPL", "ticker:MSFT", "ticker:NVDA"]
    assert trend_keys(s, 0.2) == keys_of(s, 0.2) and trend_keys(s, 0.05) == keys_of(s, 0.05)
    w = PartitionWindows(config())
    feed(w, scored(0, 0, 0.5, tickers=("AAPL",)), s)  # AAPL exists, but this story must not feed it
    got = points(w)
    assert "ticker:NVDA" not in got and "ticker:NVDA" not in w.keys
    assert got["ticker:AAPL"].count == 1 and got["ticker:AAPL"].mean_score == 0.5
    # a ticker without a verdict (schema-1 record, or a verdict missing) counts at relevance 1
    assert "ticker:TSLA" in trend_keys(scored(2, tickers=("TSLA",), entities=(entity("AAPL", 0.0, 0.0),)), 1.0)


def test_relevance_half_against_relevance_one_by_hand():
    w = PartitionWindows(config())
    a = scored(1, 0, 0.0, tickers=("AAPL",), entities=(entity("AAPL", 1.0, 0.5, confidence=0.8),))
    b = scored(2, 1, 0.0, tickers=("AAPL",), entities=(entity("AAPL", -1.0, 1.0, confidence=0.6),), novelty=0.5)
    assert contribution("ticker:AAPL", a) == (1.0, "positive", 0.8, 0.5)
    assert contribution("all", a) == (0.0, "neutral", 1.0, 1.0)
    w.add("ticker:AAPL", a)
    w.add("ticker:AAPL", b)
    (p,) = w.take_dirty()
    assert p.count == 2
    # mean = (0.5*1 + 1*(-1)) / (0.5 + 1) = -1/3; shares by relevance: 1/1.5 negative, 0.5/1.5 positive
    assert p.mean_score == pytest.approx(-1 / 3, abs=1e-12)
    assert p.negative_share == pytest.approx(2 / 3, abs=1e-12)
    assert p.positive_share == pytest.approx(1 / 3, abs=1e-12)
    # weights novelty*confidence*relevance: a 1*0.8*0.5 = 0.4, b 0.5*0.6*1 = 0.3 -> (0.4 - 0.3) / 0.7
    assert p.weighted_mean == pytest.approx(0.1 / 0.7, abs=1e-12)
    assert [(e.id, e.relevance) for e in p.top_items] == [("s1", 0.5), ("s2", 1.0)]  # |w*x|: 0.4 > 0.3


def test_all_weights_one_gives_exactly_the_unweighted_numbers():
    stories = [
        scored(
            i,
            i,
            x,
            confidence=c,
            novelty=n,
            tickers=("AAPL",),
            entities=(entity("AAPL", x, 1.0, confidence=c),) if i % 2 else (),
        )
        for i, (x, c, n) in enumerate([(0.3, 0.9, 1.0), (-0.7, 0.6, 0.5), (0.1, 0.7, 1.0), (1.0, 0.8, 0.9)])
    ]
    w = PartitionWindows(config())
    for s in stories:
        w.add("ticker:AAPL", s)
    (p,) = w.take_dirty()
    n = len(stories)
    score_u = sum(round(s.sentiment_score * 1e6) for s in stories)
    weight = [s.item.novelty * s.confidence for s in stories]
    assert p.mean_score == score_u / 1e6 / n  # exactly the pre-relevance formula
    assert p.negative_share == 1 / n and p.positive_share == 3 / n
    assert p.weighted_mean == (
        sum(round(wt * s.sentiment_score * 1e6) for wt, s in zip(weight, stories))
        / sum(round(wt * 1e6) for wt in weight)
    )


# A row as the code before relevance weighting wrote it (11 fields, 8-field evidence rows): three
# stories scored 1.0, -0.25 and -0.25 (sum 0.5: two negative, one positive), weights summing to 2.5.
OLD_ROW = [
    BASE,
    3,
    500000,
    2500000,
    1000000,
    2,
    1,
    [[-1000000, -(BASE + 20), "s2", "story 2", "wire", "https://example.test/2", BASE + 20, 1.0]],
    BASE + 20,
    "s2",
    "v1",
]


def old_numbers():
    return dict(
        count=3,
        mean_score=500000 / 1e6 / 3,
        negative_share=2 / 3,
        positive_share=1 / 3,
        weighted_mean=1000000 / 2500000,
    )


def assert_old_point(p) -> None:
    assert {k: getattr(p, k) for k in old_numbers()} == old_numbers()  # identical, not approximate
    assert [(e.id, e.score, e.ticker, e.relevance) for e in p.top_items] == [("s2", 1.0, None, None)]


def test_an_old_eleven_field_row_loads_with_identical_means(tmp_path):
    agg = WindowAgg.from_json(json.loads(json.dumps(OLD_ROW)))
    assert (agg.rel_u, agg.rscore_u, agg.rneg_u, agg.rpos_u) == (3_000_000, 500000, 2_000_000, 1_000_000)
    assert WindowAgg.from_json(agg.to_json()) == agg  # the new layout round-trips
    cfg = config()
    w = PartitionWindows.restore(cfg, BASE + 20, [("ticker:AAPL", "1m", OLD_ROW)], [], [("ticker:AAPL", BASE)], [])
    assert_old_point(w.point("ticker:AAPL", "1m", BASE))
    # ...and keeps counting on top of it: a new relevance-0.5 story at score 1
    w.add("ticker:AAPL", scored(9, 30, 0.0, entities=(entity("AAPL", 1.0, 0.5),)))
    assert w.point("ticker:AAPL", "1m", BASE).mean_score == pytest.approx((0.5 + 0.5) / 3.5)

    # from the SQLite checkpoint, as the old code stored it
    store = CheckpointStore(tmp_path / "old.db", group="g")
    store._db.execute("INSERT INTO partitions VALUES ('g','t',0,5,?,NULL)", (BASE + 20,))
    store._db.execute("INSERT INTO windows VALUES ('g','t',0,'ticker:AAPL','1m',?,?)", (BASE, json.dumps(OLD_ROW)))
    cp = store.load("t", 0)
    store.close()
    w = PartitionWindows.restore(cfg, cp.watermark, cp.windows, cp.anchors, cp.first_ts, cp.seen)
    assert_old_point(w.point("ticker:AAPL", "1m", BASE))

    # from the changelog topic
    msgs = [
        Message("c", 0, 0, json.dumps(["w", "ticker:AAPL", "1m", BASE]).encode(), json.dumps(OLD_ROW).encode()),
        Message("c", 0, 1, b'["p"]', json.dumps({"next_offset": 5, "watermark": BASE + 20, "sources": None}).encode()),
    ]
    cp = changelog.restore(msgs)
    w = PartitionWindows.restore(cfg, cp.watermark, cp.windows, cp.anchors, cp.first_ts, cp.seen)
    assert_old_point(w.point("ticker:AAPL", "1m", BASE))


# -- property: the stand-alone windows equal the independent oracle, in any arrival order --------

SYMS = ("AAPL", "MSFT", "GOOG")
unit = st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.5, 0.75, 0.9, 1.0])
signed = st.sampled_from([-1.0, -0.6, -0.25, 0.0, 0.3, 0.55, 1.0])
label = st.sampled_from([None, "negative", "neutral", "positive"])


@st.composite
def stories(draw):
    n = draw(st.integers(1, 25))
    out = []
    for i in range(n):
        tickers = tuple(draw(st.lists(st.sampled_from(SYMS), min_size=0, max_size=3, unique=True)))
        ents = tuple(
            entity(
                t, draw(signed), draw(unit), sentiment=draw(label), confidence=draw(st.sampled_from([0.4, 0.6, 0.95]))
            )
            for t in tickers
            if draw(st.booleans())
        )
        out.append(
            scored(
                i,
                draw(st.integers(0, 400)) / 2,
                draw(signed),
                sentiment=draw(label),
                confidence=draw(st.sampled_from([0.5, 0.7, 1.0])),
                tickers=tickers,
                source=draw(st.sampled_from(("wire", "rss"))),
                topic=draw(st.sampled_from(("mna", "macro"))),
                novelty=draw(st.sampled_from([0.5, 1.0])),
                entities=ents,
            )
        )
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stories(), st.randoms(use_true_random=False), st.sampled_from([0.0, 0.2, 0.5]))
def test_windows_equal_the_independent_batch_oracle_in_any_order(batch, rnd, floor):
    cfg = config(
        windows=[{"name": "1m", "size": "1m"}, {"name": "2m", "size": "2m", "hop": "30s"}],
        grace="1h",
        ticker_relevance_floor=floor,
    )
    order = list(batch) + rnd.sample(batch, k=min(3, len(batch)))  # a few redeliveries too
    rnd.shuffle(order)
    w = PartitionWindows(cfg)
    for s in order:
        assert trend_keys(s, floor) == keys_of(s, floor)
        for key in trend_keys(s, floor):
            w.add(key, s)
    got = {(p.key, p.window, p.window_start): p for p in w.all_points()}
    assert summary(got) == batch_aggregate(cfg, batch)
