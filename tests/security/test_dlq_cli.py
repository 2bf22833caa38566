"""``finsent dlq list|show|replay`` against the real broker."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from monitor.app.cli import main
from monitor.core.bus.base import Message
from monitor.core.bus.codec import DeadLetterSink
from monitor.core.bus.factory import make_bus
from tests.connectors.conftest import read_topic

pytestmark = pytest.mark.kafka


def test_dlq_list_show_and_replay(tmp_path, kafka_settings, kafka_bootstrap, topics, capsys, monkeypatch) -> None:
    settings = kafka_settings()
    bus = make_bus(settings)
    bus.ensure_topics(topics.all())
    producer = bus.producer()
    classify = DeadLetterSink(producer, topics.dlq, stage="classify")
    ingest = DeadLetterSink(producer, topics.dlq, stage="ingest")
    raw_msg = Message(topic=topics.raw, partition=1, offset=7, key=b"ACME", value=b'{"fixed": "later"}')
    classify.reject_message(raw_msg, "news_item: title: field required").get(30)
    ingest.reject_payload(b'{"title": 12345}', "wire: line 3: 'title' must be a string").get(30)
    classify.reject_message(raw_msg, "model crashed: CUDA out of memory").get(30)
    producer.close()
    bus.close()
    capsys.readouterr()

    for var in [v for v in list(os.environ) if v.startswith("FINSENT_") and v != "FINSENT_TEST_KAFKA"]:
        monkeypatch.delenv(var)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path / "home"),
                "kafka": {"bootstrap": kafka_bootstrap},
                "topics": topics.model_dump(),
                "logging": {"level": "WARNING"},
            }
        )
    )
    c = ["--config", str(cfg)]

    assert main(["dlq", "list", *c, "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["stage"] for x in listed] == ["classify", "ingest", "classify"]
    assert listed[0]["source"] == f"{topics.raw}/1@7"

    assert main(["dlq", "list", *c, "--json", "--stage", "classify", "--reason", "cuda"]) == 0
    (only,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert only["reason"] == "model crashed: CUDA out of memory"
    assert main(["dlq", "list", *c, "--json", "--since", "2999-01-01T00:00:00Z"]) == 0
    assert capsys.readouterr().out == ""

    assert main(["dlq", "show", *c, listed[1]["ref"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["payload"] == '{"title": 12345}' and shown["stage"] == "ingest"

    assert main(["dlq", "replay", *c]) == 2  # nothing chosen: refuse rather than replay everything
    capsys.readouterr()
    assert main(["dlq", "replay", *c, "--reason", "cuda"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[-1]) == {"replayed": 1, "skipped": 0}
    replayed = read_topic(kafka_bootstrap, topics.raw)
    assert [(r.key, r.value) for r in replayed] == [(b"ACME", b'{"fixed": "later"}')]

    assert main(["dlq", "replay", *c, "--stage", "ingest"]) == 1  # no original topic: needs --to
    assert "give --to TOPIC" in capsys.readouterr().err
