"""Backtest: a candidate that reads 'beats' as bad news would have fired market-gloom; nothing is written."""

from __future__ import annotations

import json

from monitor.app.backtest import backtest, read_stories_file
from tests.stages.helpers import news
from tests.stages.keyword_engine import KeywordEngine


class Gloomy(KeywordEngine):
    def predict(self, texts, targets=None):
        return [
            p.model_copy(update={"sentiment": "negative", "sentiment_score": -0.9}) if "beats" in t else p
            for t, p in zip(texts, super().predict(texts))
        ]


def test_backtest_reports_trend_and_alert_differences_per_rule(make_settings, tmp_path):
    settings = make_settings()
    stories = [news(i, t=20.0 * i, title=f"ACME beats estimates {i}", tickers=("ACME",)) for i in range(40)]
    stories += [news("late", t=99_999.0, title="ACME beats estimates later")]  # outside the period
    dump = tmp_path / "raw.jsonl"
    dump.write_text("".join(s.model_dump_json() + "\n" for s in stories + stories[:5]))  # redelivered copies
    loaded = read_stories_file(dump)
    start, end = stories[0].published_at, stories[39].published_at.replace(microsecond=1)
    report = backtest(
        settings,
        Gloomy(version="cand"),
        KeywordEngine(version="champ"),
        loaded,
        start,
        end,
        settings.alerts.load_rules(),
    )
    assert report["stories"] == 40
    assert report["models"]["champion"]["version"] == "champ" and report["models"]["candidate"]["version"] == "cand"
    assert report["agreement"] == 0.0
    assert report["models"]["candidate"]["sentiment_mix"] == {"negative": 40}
    assert report["trends"]["windows_compared"] > 0 and report["trends"]["max_abs_diff"] > 0.5
    gloom = report["alerts"]["market-gloom"]
    assert gloom["champion"] == 0 and gloom["candidate"] == 1 and gloom["gained"] == ["all"] and gloom["lost"] == []
    json.dumps(report)  # the CLI prints it as JSON
