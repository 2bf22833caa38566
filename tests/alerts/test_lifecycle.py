"""The alert state machine: for, resolved, revised, repeat, grouping, restart, each rule type."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from alerts.alert_store import SCHEMA, AlertStore
from alerts.clock import ManualClock
from alerts.dispatch import BUS_RECEIVER
from alerts.evaluator import AlertEngine
from alerts.instances import OutboxEntry
from alerts.routing import fingerprint_of
from alerts.settings import EngineOptions, ReceiverSettings
from alerts.views import AlertView
from tests.alerts.helpers import OIL, at, point, rules, story


class Harness:
    """An engine over a SQLite file; ``feed`` evaluates records as one batch and returns what it sent."""

    def __init__(self, path: Path, ruleset, **options) -> None:
        self.path = path
        self.ruleset = ruleset
        self.options = EngineOptions(
            receivers={
                "local": ReceiverSettings(type="file"),
                "hook": ReceiverSettings(type="webhook", url="http://127.0.0.1:9/hook"),
            },
            publish_topic="news.alerts",
            external_url="http://finsent.test",
            **options,
        )
        self.start()

    def start(self) -> None:
        self.store = AlertStore(self.path)
        self.engine = AlertEngine(self.ruleset, self.store, self.options, ManualClock())

    def restart(self) -> None:
        self.store.close()
        self.start()

    def feed(self, *records) -> list[OutboxEntry]:
        changes = self.engine.process(records)
        return [e for e in changes.outbox if e.receiver != BUS_RECEIVER]

    def bus(self, *records) -> list[dict]:
        changes = self.engine.process(records)
        return [a for e in changes.outbox if e.receiver == BUS_RECEIVER for a in json.loads(e.body)]

    def state(self, fp: str | None = None):
        alerts = self.engine.alerts()
        if fp is None:
            assert len(alerts) <= 1, alerts
            return alerts[0] if alerts else None
        return self.engine.get(fp)


def body(entry: OutboxEntry) -> dict:
    return json.loads(entry.body)


@pytest.fixture
def oil(tmp_path: Path) -> Harness:
    return Harness(tmp_path / "alerts.db", rules(OIL))


def test_threshold_waits_for_then_fires_once_then_resolves(oil: Harness):
    assert oil.feed(point(emitted=1)) == []  # condition holds: pending
    assert oil.state().state == "pending"
    assert oil.feed(point(emitted=4, negative_share=0.8)) == []  # 3m < for=5m
    sent = oil.feed(point(emitted=6, negative_share=0.75))  # 5m held: fires
    assert [(e.reason, e.status, e.receiver) for e in sent] == [("firing", "firing", "local")]
    msg = body(sent[0])
    assert [a["status"] for a in msg["alerts"]] == ["firing"]
    alert = msg["alerts"][0]
    assert alert["startsAt"] == "2026-11-23T10:01:00Z"  # when the condition started holding
    assert alert["values"] == {"negative_share": 0.75, "count": 30.0, "threshold": 0.6}
    assert alert["annotations"] == {"summary": "75.0% negative on topic:Energy | Oil"}
    assert alert["labels"] == {
        "alertname": "oil-gloom",
        "severity": "warning",
        "key": "topic:Energy | Oil",
        "window": "15m",
        "topic": "Energy | Oil",
    }
    assert alert["fingerprint"] == fingerprint_of(alert["labels"])
    assert oil.feed(point(emitted=7, negative_share=0.9)) == []  # still firing: silent
    assert oil.state().values["negative_share"] == 0.9
    sent = oil.feed(point(emitted=8, negative_share=0.5))  # clears
    assert [(e.reason, e.status) for e in sent] == [("resolved", "resolved")]
    resolved = body(sent[0])["alerts"][0]
    assert resolved["status"] == "resolved" and resolved["endsAt"] == "2026-11-23T10:08:00Z"
    assert oil.state().state == "resolved"


def test_pending_that_clears_never_fires(oil: Harness):
    oil.feed(point(emitted=1))
    assert oil.feed(point(emitted=3, negative_share=0.2)) == []
    assert oil.state() is None
    assert oil.store.list_alerts() == []


def test_for_zero_fires_on_the_first_point(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules({**OIL, "for": 0}))
    assert [e.reason for e in h.feed(point(emitted=1))] == ["firing"]


def test_min_count_open_window_is_undecided_closed_window_is_false(oil: Harness):
    oil.feed(point(emitted=1), point(emitted=6))
    assert oil.state().state == "firing"
    assert oil.feed(point(emitted=7, count=5)) == []  # open window short of stories: no decision
    assert oil.state().state == "firing"
    sent = oil.feed(point(emitted=15, count=5))  # the window closed short of min_count
    assert [e.reason for e in sent] == ["resolved"]


def test_revised_late_story_sends_one_revised_notification_not_a_new_alert(oil: Harness):
    oil.feed(point(emitted=1), point(emitted=6))
    fp = oil.state().fingerprint
    oil.feed(point(start=15, emitted=16, negative_share=0.8))  # next window is now the latest
    # a late story revises the window that fired (closed, older than the latest)
    sent = oil.feed(point(start=0, emitted=17, negative_share=0.72, count=31, revised=True))
    assert [(e.reason, e.status) for e in sent] == [("revised", "firing")]
    alert = body(sent[0])["alerts"][0]
    assert alert["fingerprint"] == fp and alert["revision"] == 1 and alert["status"] == "firing"
    assert alert["values"]["negative_share"] == 0.72
    assert oil.state().state == "firing" and oil.state().revision == 1
    # the same revision again changes nothing: no notification
    assert oil.feed(point(start=0, emitted=17.5, negative_share=0.72, count=31, revised=True)) == []
    # a revision of a window before the alert fired is ignored
    assert oil.feed(point(start=-15, emitted=18, negative_share=0.9, revised=True)) == []
    assert len(oil.store.list_alerts()) == 1


def test_repeat_interval_resends_while_firing_and_ack_silences(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules({**OIL, "for": 0, "repeat_interval": "30m"}))
    h.feed(point(emitted=1))
    assert h.feed(point(start=15, emitted=20)) == []
    sent = h.feed(point(start=30, emitted=31))  # 30m since the last notification
    assert [(e.reason, e.status) for e in sent] == [("repeat", "firing")]
    assert h.feed(point(start=30, emitted=40)) == []
    fp = h.state().fingerprint
    assert h.store.ack(fp, "ops", at(41))
    assert h.feed(point(start=60, emitted=75)) == []  # acked: no repeat
    assert h.store.find_alert(fp).acked_by == "ops"  # the engine's writes keep the ack
    sent = h.feed(point(start=60, emitted=76, negative_share=0.1))
    assert [e.reason for e in sent] == ["resolved"]


def test_restart_neither_refires_nor_forgets(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules(OIL))
    h.feed(point(emitted=1))  # pending since 10:01
    h.restart()
    assert h.state().state == "pending"
    assert [e.reason for e in h.feed(point(emitted=6))] == ["firing"]  # `for` counted from before the restart
    h.restart()
    assert h.state().state == "firing"
    assert h.feed(point(emitted=7)) == []  # no re-fire after a restart
    h.restart()
    assert [e.reason for e in h.feed(point(emitted=8, negative_share=0.1))] == ["resolved"]
    h.restart()
    assert h.state().state == "resolved"
    assert h.engine.watermark == at(8)


def test_change_rule_compares_two_windows_of_the_same_key(tmp_path: Path):
    h = Harness(
        tmp_path / "a.db",
        rules(
            {
                "name": "drop",
                "type": "change",
                "key": "ticker:*",
                "window": "5m",
                "baseline_window": "1h",
                "metric": "ewma",
                "value": -0.4,
                "annotations": {"summary": "{{ subject }} {{ value | signed }}"},
            }
        ),
    )
    assert h.feed(point("ticker:AAPL", "5m", size=5, emitted=1, ewma=-0.5)) == []  # no baseline yet
    assert h.state() is None
    sent = h.feed(point("ticker:AAPL", "1h", size=60, emitted=2, ewma=0.1))  # baseline arrives: -0.6
    assert [e.reason for e in sent] == ["firing"]
    alert = body(sent[0])["alerts"][0]
    assert alert["values"] == {
        "change": pytest.approx(-0.6),
        "ewma_5m": -0.5,
        "ewma_1h": 0.1,
        "count": 30.0,
        "threshold": -0.4,
    }
    assert alert["labels"]["ticker"] == "AAPL" and alert["labels"]["window"] == "5m"
    assert alert["annotations"]["summary"] == "AAPL -0.60"
    # other tickers are separate alerts; a key whose change is small stays quiet
    h.feed(
        point("ticker:MSFT", "1h", size=60, emitted=3, ewma=0.1),
        point("ticker:MSFT", "5m", size=5, emitted=3, ewma=0.0),
    )
    assert len(h.engine.alerts()) == 1
    sent = h.feed(point("ticker:AAPL", "5m", size=5, emitted=4, ewma=0.0))
    assert [e.reason for e in sent] == ["resolved"]


def test_spike_rule_with_key_pattern_and_missing_z(tmp_path: Path):
    h = Harness(
        tmp_path / "a.db", rules({"name": "spike", "type": "spike", "key": "ticker:*", "window": "15m", "min_count": 5})
    )
    assert h.feed(point("ticker:TSLA", volume_z=None, emitted=1)) == []  # no baseline: undecided
    assert h.feed(point("topic:Energy | Oil", volume_z=9, emitted=1)) == []  # not a ticker key
    sent = h.feed(point("ticker:TSLA", volume_z=4.2, emitted=2))
    assert [body(e)["alerts"][0]["labels"]["ticker"] for e in sent] == ["TSLA"]
    assert body(sent[0])["alerts"][0]["values"]["volume_z"] == 4.2


def test_story_rule_first_seen_watched_ticker_fires_once_and_resolves_silently(tmp_path: Path):
    h = Harness(
        tmp_path / "a.db",
        rules(
            {
                "name": "bad",
                "type": "story",
                "tickers": ["AAPL", "MSFT"],
                "annotations": {"summary": "{{ ticker }}: {{ title }}"},
            }
        ),
    )
    assert h.feed(story("s0", tickers=("XOM",))) == []  # not watched
    assert h.feed(story("s1", score=-0.5)) == []  # not negative enough
    assert h.feed(story("s2", novelty=0.4)) == []  # a repeat, not first seen
    sent = h.feed(story("s3", tickers=("AAPL", "TSLA", "MSFT")))
    assert len(sent) == 1
    alert = body(sent[0])["alerts"][0]
    assert alert["labels"]["ticker"] == "AAPL,MSFT" and alert["labels"]["story"] == "s3"
    assert alert["annotations"]["summary"] == "AAPL,MSFT: Bad news s3"
    assert alert["evidence"][0]["url"] == "https://news.example/s3" and alert["evidence"][0]["score"] == -0.9
    assert h.feed(story("s3", tickers=("AAPL", "TSLA", "MSFT"))) == []  # redelivered: no new alert
    assert h.feed(point(start=60, emitted=62)) == []  # 1h later: resolves, unsent
    assert h.engine.alerts()[0].state == "resolved"


def test_grouping_lists_the_groups_alerts_in_one_notification(tmp_path: Path):
    h = Harness(
        tmp_path / "a.db",
        rules(
            {
                "name": "spike",
                "type": "spike",
                "key": "ticker:*",
                "window": "15m",
                "receiver": "hook",
                "group_by": ["alertname"],
            }
        ),
    )
    sent = h.feed(point("ticker:AAPL", volume_z=5, emitted=1), point("ticker:TSLA", volume_z=6, emitted=1))
    assert len(sent) == 1  # one batch, one group
    msg = body(sent[0])
    assert msg["groupLabels"] == {"alertname": "spike"}
    assert sorted(a["labels"]["ticker"] for a in msg["alerts"]) == ["AAPL", "TSLA"]
    assert msg["commonLabels"] == {"alertname": "spike", "severity": "warning", "window": "15m"}
    sent = h.feed(point("ticker:AAPL", volume_z=0.5, emitted=2))  # one resolves
    msg = body(sent[0])
    assert msg["status"] == "firing" and msg["reason"] == "resolved"
    assert sorted((a["labels"]["ticker"], a["status"]) for a in msg["alerts"]) == [
        ("AAPL", "resolved"),
        ("TSLA", "firing"),
    ]


def test_group_by_ticker_splits_notifications(tmp_path: Path):
    h = Harness(
        tmp_path / "a.db",
        rules(
            {"name": "spike", "type": "spike", "key": "ticker:*", "window": "15m", "group_by": ["alertname", "ticker"]}
        ),
    )
    sent = h.feed(point("ticker:AAPL", volume_z=5, emitted=1), point("ticker:TSLA", volume_z=6, emitted=1))
    assert sorted(body(e)["groupLabels"]["ticker"] for e in sent) == ["AAPL", "TSLA"]
    assert len({e.idempotency_key for e in sent}) == 2


def test_alert_records_are_published_for_each_transition(oil: Harness):
    oil.bus(point(emitted=1))
    fired = oil.bus(point(emitted=6))
    assert [(a["kind"], a["rule"], a["status"], a["revision"]) for a in fired] == [("alert", "oil-gloom", "firing", 0)]
    resolved = oil.bus(point(emitted=8, negative_share=0.1))
    assert [a["status"] for a in resolved] == ["resolved"]


def test_sliding_windows_only_the_leading_window_is_evaluated(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules({**OIL, "for": 0}), window_hops={"15m": timedelta(minutes=5)})
    # at 10:12, windows [10:00,10:15) (leading), [10:05,10:20) and [10:10,10:25) are open
    assert h.feed(point(start=5, emitted=12, negative_share=0.9)) == []  # younger window: skipped
    assert h.feed(point(start=10, emitted=12, negative_share=0.9)) == []
    assert [e.reason for e in h.feed(point(start=0, emitted=12, negative_share=0.9))] == ["firing"]


def test_stale_key_resolves_after_stale_after(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules({**OIL, "for": 0}), stale_after=timedelta(minutes=30))
    h.feed(point(emitted=1))
    assert h.feed(point("all", start=15, emitted=20)) == []  # any point moves event time
    sent = h.feed(point("topic:Other", start=30, emitted=31))  # the oil key has been quiet for 30m
    assert [(body(e)["alerts"][0]["labels"]["alertname"], e.reason) for e in sent] == [("oil-gloom", "resolved")]
    assert body(sent[0])["alerts"][0]["endsAt"] == "2026-11-23T10:31:00Z"


def test_event_time_is_the_aggregators_watermark_not_the_wall_clock(tmp_path: Path):
    """A replay at 120x (the demo) runs ahead of the wall clock: its points are judged by the
    watermark they carry, so the leading window is evaluated and `for` counts in event time."""
    h = Harness(tmp_path / "a.db", rules(OIL))
    wall = at(-600)  # emitted long "before" the windows it describes
    ahead = lambda minutes, **kw: point(emitted=0, **kw).model_copy(  # noqa: E731
        update={"emitted_at": wall, "watermark": at(minutes)}
    )
    assert h.feed(ahead(1)) == []
    assert h.state().state == "pending"
    sent = h.feed(ahead(6, negative_share=0.8))
    assert [e.reason for e in sent] == ["firing"]
    assert body(sent[0])["alerts"][0]["startsAt"] == "2026-11-23T10:01:00Z"
    assert h.engine.watermark == at(6)


def _late(p, hours: float = 24):
    """The same point as a backfill emits it: a day later, carrying the watermark it was made at."""
    return p.model_copy(update={"watermark": p.emitted_at, "emitted_at": at(hours * 60)})


def test_catch_up_fires_and_resolves_like_live_and_says_so(tmp_path: Path):
    sequence = [point(emitted=m, negative_share=ns) for m, ns in [(1, 0.7), (4, 0.8), (6, 0.75), (7, 0.9), (8, 0.5)]]
    live = Harness(tmp_path / "live.db", rules(OIL))
    live.engine.clock = ManualClock(start=at(8).timestamp())
    late = Harness(tmp_path / "late.db", rules(OIL))
    late.engine.clock = ManualClock(start=at(24 * 60).timestamp())

    def alerts(h, points):
        return [a for p in points for e in h.feed(p) for a in body(e)["alerts"]]

    got_live, got_late = alerts(live, sequence), alerts(late, [_late(p) for p in sequence])
    strip = [{k: v for k, v in a.items() if k != "annotations"} for a in got_late]
    assert strip == [{k: v for k, v in a.items() if k != "annotations"} for a in got_live]
    assert [a["status"] for a in got_late] == ["firing", "resolved"]  # same rule, window, evidence, times
    assert all("catch_up" not in a["annotations"] for a in got_live)
    lag = [int(a["annotations"]["catch_up"].rstrip("s")) for a in got_late]
    assert lag == [(24 * 60 - 6) * 60, (24 * 60 - 8) * 60]  # how far behind real time each was evaluated


def test_catch_up_sliding_windows_still_evaluate_only_the_leading_window(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules({**OIL, "for": 0}), window_hops={"15m": timedelta(minutes=5)})
    # emitted a day late, but at watermark 10:12: [10:00,10:15) leads, the younger ones are skipped
    assert h.feed(_late(point(start=5, emitted=12, negative_share=0.9))) == []
    assert h.feed(_late(point(start=10, emitted=12, negative_share=0.9))) == []
    assert [e.reason for e in h.feed(_late(point(start=0, emitted=12, negative_share=0.9)))] == ["firing"]


def test_catch_up_that_fires_and_resolves_in_one_batch_sends_both(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules({**OIL, "for": 0}))
    h.engine.clock = ManualClock(start=at(24 * 60).timestamp())
    sent = h.feed(_late(point(emitted=6, negative_share=0.8)), _late(point(start=15, emitted=20, negative_share=0.2)))
    assert [(e.reason, [a["status"] for a in body(e)["alerts"]]) for e in sent] == [
        ("firing", ["firing"]),
        ("resolved", ["resolved"]),
    ]
    assert len({e.idempotency_key for e in sent}) == 2


def test_keep_firing_for_makes_a_flapping_condition_one_episode(tmp_path: Path):
    """The condition dips below its threshold and comes back within keep_firing_for: one firing
    notification, no resolved in between; it resolves once it stays false for keep_firing_for,
    with endsAt when that period ran out."""
    h = Harness(tmp_path / "a.db", rules({**OIL, "for": 0, "keep_firing_for": "10m"}))
    assert [e.reason for e in h.feed(point(emitted=1))] == ["firing"]
    assert h.feed(point(emitted=2, negative_share=0.5)) == []  # dips: stays firing
    assert h.state().state == "firing" and h.state().keep_firing_since == at(2)
    assert AlertView.of(h.state()).keep_firing_since == at(2)  # GET /alerts shows it
    assert h.feed(point(emitted=4, negative_share=0.8)) == []  # holds again: same episode, silent
    assert h.state().keep_firing_since is None
    assert h.feed(point(emitted=5, negative_share=0.5)) == []  # dips again, from 10:05
    assert h.feed(point(emitted=14, negative_share=0.4)) == []  # 9m false: still firing
    sent = h.feed(point(emitted=15.5, negative_share=0.4))  # 10m passed at 10:15
    assert [e.reason for e in sent] == ["resolved"]
    assert body(sent[0])["alerts"][0]["endsAt"] == "2026-11-23T10:15:00Z"
    assert h.state().state == "resolved" and h.state().keep_firing_since is None


def test_keep_firing_for_runs_out_on_the_watermark_and_survives_a_restart(tmp_path: Path):
    h = Harness(tmp_path / "a.db", rules({**OIL, "for": 0, "keep_firing_for": "10m"}))
    h.feed(point(emitted=1))
    h.feed(point(emitted=2, negative_share=0.5))  # false from 10:02
    h.restart()
    assert h.state().state == "firing" and h.state().keep_firing_since == at(2)
    assert h.feed(point("all", emitted=11)) == []  # other keys move event time
    sent = h.feed(point("all", start=15, emitted=16))  # the watermark passed 10:12
    assert [(e.reason, body(e)["alerts"][0]["endsAt"]) for e in sent] == [("resolved", "2026-11-23T10:12:00Z")]


def test_without_keep_firing_for_a_flap_is_two_episodes(oil: Harness):
    """The default (0) keeps the Prometheus behaviour: it resolves the moment the condition fails."""
    h = Harness(oil.path.with_name("b.db"), rules({**OIL, "for": 0}))
    assert [e.reason for e in h.feed(point(emitted=1))] == ["firing"]
    assert [e.reason for e in h.feed(point(emitted=2, negative_share=0.5))] == ["resolved"]
    assert [e.reason for e in h.feed(point(emitted=3))] == ["firing"]


def test_a_store_from_before_keep_firing_for_gains_the_column(tmp_path: Path):
    import sqlite3

    old_schema = SCHEMA.replace(", keep_firing_since TEXT", "")
    assert old_schema != SCHEMA
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.executescript(old_schema)
    h = Harness(tmp_path / "old.db", rules({**OIL, "for": 0, "keep_firing_for": "10m"}))
    h.feed(point(emitted=1), point(emitted=2, negative_share=0.5))
    h.restart()
    assert h.state().keep_firing_since == at(2)
