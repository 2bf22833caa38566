"""The alert component on the in-process bus: stages, /alerts, start-up validation, CLI."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerts.alert_store import AlertStore, Changes
from alerts.clock import ManualClock
from alerts.evaluator import AlertEngine
from monitor.app.cli import main
from monitor.app.component import Context
from monitor.app.components.alerts import AlertsConfigError, build_alerts, engine_options, store_path
from monitor.core import signing
from monitor.core.bus.base import TopicPartition
from monitor.core.bus.codec import send_record
from monitor.core.bus.memory import MemoryBus
from monitor.core.records import Alert, decode
from tests.alerts.helpers import OIL, Receiver, point
from tests.bus_reading import read_all
from tests.waiting import settled, wait_until


def write_rules(tmp_path: Path, *specs: dict) -> Path:
    import yaml

    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": list(specs)}))
    return path


def test_malformed_rules_are_rejected_at_start_up(make_settings, tmp_path: Path):
    path = write_rules(tmp_path, {**OIL, "for": "5x"})
    settings = make_settings(alerts={"rules_file": str(path)})
    with pytest.raises(AlertsConfigError, match=r"rule 'oil-gloom': for: invalid duration '5x'"):
        build_alerts(Context(settings=settings, bus=MemoryBus()))


def test_check_config_reports_rule_problems(make_settings, tmp_path: Path, capsys):
    import yaml

    rules = write_rules(tmp_path, {**OIL, "window": None})
    cfg = tmp_path / "finsent.yaml"
    cfg.write_text(yaml.safe_dump({"alerts": {"rules_file": str(rules)}}))
    assert main(["check-config", str(cfg)]) == 2
    assert "rule 'oil-gloom': window: Input should be a valid string" in capsys.readouterr().err


def test_stages_deliver_a_signed_alert_and_serve_it(make_settings, tmp_path: Path):
    receiver = Receiver()
    bus = MemoryBus()
    try:
        path = write_rules(tmp_path, {**OIL, "for": 0, "receiver": "hook"})
        settings = make_settings(
            alerts={
                "rules_file": str(path),
                "receivers": {"hook": {"type": "webhook", "url": receiver.url, "secret": "k"}},
                "outbox": {"poll_interval": "50ms"},
            }
        )
        bus.ensure_topics(settings.topics.all())
        ctx = Context(settings=settings, bus=bus)
        component = build_alerts(ctx)
        assert [s.name for s in component.stages] == ["alerts-evaluate", "alerts-deliver"]
        stop = threading.Event()
        threads = [threading.Thread(target=s.run, args=(stop,), daemon=True) for s in component.stages]
        for t in threads:
            t.start()
        producer = bus.producer()
        send_record(producer, settings.topics.trends, point(emitted=12), key="topic:Energy | Oil")

        def delivered():  # the webhook's delivery and the alert record on the bus, once both are there
            accepted, records = list(receiver.accepted), read_all(bus, settings.topics.alerts)
            return (accepted, records) if accepted and records else None

        # exactly one of each: keep watching a settle period (40 outbox polls) after both arrived
        accepted, records = settled(delivered, 2, 10, "the webhook delivery and the alert record")
        (got,) = accepted
        signing.verify("k", got.headers[signing.SIGNATURE_HEADER], got.body)
        fp = got.json()["alerts"][0]["fingerprint"]
        assert [(decode(Alert, m.value).fingerprint, decode(Alert, m.value).status) for m in records] == [
            (fp, "firing")
        ]
        assert all(s.ready()[0] for s in component.stages)

        app = FastAPI()
        for router in component.routers:
            app.include_router(router)
        client = TestClient(app)
        listing = client.get("/alerts").json()
        assert [(a["fingerprint"], a["state"]) for a in listing["alerts"]] == [(fp, "firing")]
        assert listing["outbox_counts"]["delivered"] == 2  # the webhook and the bus publication
        assert client.get(f"/alerts/{fp}").json()["values"]["negative_share"] == 0.7
        assert client.get(f"/alerts/{fp[:6]}").json()["fingerprint"] == fp
        assert client.get("/alerts/ffffffffffffffff").status_code == 404
        assert client.post(f"/alerts/{fp}/ack", json={"by": "alice"}).json() == {"fingerprint": fp, "acked": True}
        assert client.get(f"/alerts/{fp}").json()["acked_by"] == "alice"
        # a dead-lettered story payload goes to the DLQ, the stage keeps going
        producer.send(settings.topics.trends, b"not json", key="x")
        wait_until(lambda: read_all(bus, settings.topics.dlq), 10, "the bad payload on the DLQ")
        stop.set()
        for t in threads:
            t.join(5)
        assert not any(t.is_alive() for t in threads)
        component.close()
    finally:
        receiver.close()
        bus.close()


def test_alerts_cli_lists_shows_and_acks(make_settings, tmp_path: Path, capsys, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FINSENT_HOME", str(home))
    settings = make_settings(home=str(home))
    settings.ensure_dirs()
    store = AlertStore(store_path(settings))
    AlertEngine(settings.alerts.load_rules(), store, engine_options(settings), ManualClock()).process(
        [point("all", emitted=12, mean_score=-0.6, count=40)]
    )
    fp = store.list_alerts()[0].fingerprint
    store.close()
    assert main(["alerts", "list"]) == 0
    out = capsys.readouterr().out
    assert "firing" in out and fp in out and "market-gloom" in out and "outbox: 2 undelivered" in out
    assert main(["alerts", "show", fp[:8]]) == 0
    assert json.loads(capsys.readouterr().out)["rule"] == "market-gloom"
    assert main(["alerts", "ack", fp, "--by", "bob"]) == 0
    assert main(["alerts", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert listing["alerts"][0]["acked_by"] == "bob"
    assert len(listing["undelivered"]) == 2
    assert main(["alerts", "show", "zzzz"]) == 1


def test_rules_check_and_test_cli(tmp_path: Path, capsys):
    good = write_rules(tmp_path, {**OIL, "for": "5m"})
    assert main(["rules", "check", str(good)]) == 0
    assert "1 rules OK" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: oil-gloom\n    type: threshold\n    for: 5x\n")
    assert main(["rules", "check", str(bad)]) == 2
    assert "rule 'oil-gloom': for: invalid duration '5x'" in capsys.readouterr().err

    replay = tmp_path / "trends.jsonl"
    # default aggregator config: 15m windows hop by 5m, so [10:00,10:15) leads from 10:10, [10:05,10:20) from 10:15
    lines = [
        point(emitted=10),
        point(emitted=13),
        point(start=5, emitted=16),
        point(start=5, emitted=19, negative_share=0.2),
        point(start=10, emitted=12, negative_share=0.9),
    ]
    replay.write_text("\n".join(p.model_dump_json() for p in lines) + "\n")
    assert main(["rules", "test", str(good), "--replay", str(replay)]) == 0
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    assert len(out) == 2
    assert out[0].startswith("2026-11-23T10:16:00+00:00 FIRING   oil-gloom [topic:Energy | Oil]")
    assert out[1].startswith("2026-11-23T10:19:00+00:00 RESOLVED oil-gloom [topic:Energy | Oil]")
    assert "5 records, 2 notifications, 1 alerts fired" in captured.err
    assert main(["rules", "test", str(good), "--replay", str(replay), "--json"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first["reason"] == "firing" and first["alerts"][0]["values"]["negative_share"] == 0.7
    replay.write_text('{"kind": "news_item"}\n')
    assert main(["rules", "test", str(good), "--replay", str(replay)]) == 2
    assert "kind 'news_item' is not one of" in capsys.readouterr().err


def test_a_new_in_process_bus_restarts_evaluation_at_offset_zero(make_settings, tmp_path: Path):
    """A second `finsent run` on the same home: the alert store's offsets belong to the previous
    run's (gone) in-process log; they are dropped and the new log is evaluated from its start."""
    path = write_rules(tmp_path, {**OIL, "for": 0})
    settings = make_settings(alerts={"rules_file": str(path), "outbox": {"poll_interval": "50ms"}})
    settings.ensure_dirs()
    old = AlertStore(store_path(settings))
    old.apply(Changes(), {TopicPartition(settings.topics.trends, p): 2925 for p in range(3)})
    old.close()

    bus = MemoryBus()
    try:
        bus.ensure_topics(settings.topics.all())
        component = build_alerts(Context(settings=settings, bus=bus))
        stop = threading.Event()
        threads = [threading.Thread(target=s.run, args=(stop,), daemon=True) for s in component.stages]
        for t in threads:
            t.start()
        send_record(bus.producer(), settings.topics.trends, point(emitted=12), key="topic:Energy | Oil")
        wait_until(
            lambda: (
                (settings.home / "alerts.jsonl").exists()
                and "oil-gloom" in (settings.home / "alerts.jsonl").read_text()
            ),
            10,
            "the alert in alerts.jsonl",
        )
        stop.set()
        for t in threads:
            t.join(5)
        component.close()
        store = AlertStore(store_path(settings))
        offsets = {p: store.input_offset(TopicPartition(settings.topics.trends, p)) for p in range(3)}
        store.close()
        assert max(o or 0 for o in offsets.values()) == 1  # the new log's offsets, not 2925
    finally:
        bus.close()
