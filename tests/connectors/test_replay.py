"""File replay: ordering, speed factor, loops; the ``finsent replay`` CLI against real Kafka."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from connectors.replay import LOOP_GAP, Replayer
from connectors.settings import DEMO_FEED, FileSource
from monitor.app.cli import main
from monitor.core.records import NewsItem, decode
from tests.bus_reading import read_all
from tests.connectors.conftest import dead_letters_on, news_on, read_topic
from tests.connectors.replay_files import read_file

UTC = timezone.utc
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


class FakeTime:
    """A monotonic clock advanced by waiting on :class:`FakeStop`."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeStop(threading.Event):
    def __init__(self, clock: FakeTime) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout=None) -> bool:
        if self.is_set():
            return True
        if timeout is None:
            return False
        self.clock.t += timeout
        return False


def test_read_file_sorts_by_event_time_and_reports_bad_rows(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "f.jsonl",
        [
            {"title": "later", "published_at": iso(T0 + timedelta(minutes=5)), "tickers": "AAPL; MSFT"},
            {"text": "earlier", "published_at": iso(T0), "source": "wire-x"},
            "{broken json",
            {"title": "no time"},
            ["not", "an", "object"],
            {"title": "bad time", "published_at": "next tuesday"},
        ],
    )
    rows, bad = read_file(path, "auto", "default-src")
    assert [r.draft.title for r in rows] == ["earlier", "later"]
    assert rows[0].draft.source == "wire-x" and rows[1].draft.source == "default-src"
    assert list(rows[1].draft.tickers) == ["AAPL", "MSFT"]
    assert [b.line for b in bad] == [3, 4, 5, 6]
    assert "published_at" in bad[1].reason and bad[0].payload == b"{broken json"

    csv_path = tmp_path / "f.csv"
    csv_path.write_text(
        "Title,published_at,url,tickers\n"
        "Acme rises,2026-11-20T10:01:00Z,https://x.example.com/1,ACME\n"
        "Globex falls,2026-11-20T10:00:00Z,,GBX IDX\n",
        encoding="utf-8",
    )
    rows, bad = read_file(csv_path, "auto", "csv-src")
    assert [(r.draft.title, list(r.draft.tickers), r.draft.url) for r in rows] == [
        ("Globex falls", ["GBX", "IDX"], None),
        ("Acme rises", ["ACME"], "https://x.example.com/1"),
    ]
    assert bad == []


def test_speed_factor_paces_by_event_time(make_settings, ingest_factory, tmp_path) -> None:
    offsets_s = [0, 60, 120, 3600]
    path = write_jsonl(
        tmp_path / "f.jsonl",
        [{"title": f"story {i}", "published_at": iso(T0 + timedelta(seconds=s))} for i, s in enumerate(offsets_s)],
    )
    core, ctx = ingest_factory(make_settings(connectors={"demo": False}))
    clock = FakeTime()
    sent_at: list[tuple[float, list[str]]] = []
    real_publish = core.publisher.publish

    def publish(source, drafts, **kw):
        drafts = list(drafts)
        sent_at.append((clock.t, [d.title for d in drafts]))
        return real_publish(source, drafts, **kw)

    core.publisher.publish = publish  # type: ignore[method-assign]
    replayer = Replayer(FileSource(name="paced", path=path, speed=60), core.publisher, monotonic=clock)
    stats = replayer.run(FakeStop(clock))
    assert sent_at == [(0.0, ["story 0"]), (1.0, ["story 1"]), (2.0, ["story 2"]), (60.0, ["story 3"])]
    assert stats.summary() == {"read": 4, "produced": 4, "duplicates": 0, "rejected": 0, "seconds": 60.0}


def test_loop_with_shifted_clock_gives_each_pass_fresh_ids(make_settings, ingest_factory, tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "f.jsonl",
        [
            {"title": "Acme wins big order from carmaker", "published_at": iso(T0), "url": "https://x.example.com/a"},
            {"title": "Globex cuts guidance for the year", "published_at": iso(T0 + timedelta(minutes=10))},
        ],
    )
    settings = make_settings(connectors={"demo": False})
    core, ctx = ingest_factory(settings)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    stop = threading.Event()
    real_publish = core.publisher.publish
    produced: list[str] = []

    def publish(source, drafts, **kw):
        result = real_publish(source, drafts, **kw)
        produced.extend(result.ids)
        if len(produced) >= 6:
            stop.set()
        return result

    core.publisher.publish = publish  # type: ignore[method-assign]
    src = FileSource(name="demo-like", path=path, loop=True, clock="shifted", speed=0)
    stats = Replayer(src, core.publisher, now=lambda: now).run(stop)
    assert stats.passes == 3 and stats.produced == 6 and stats.duplicates == 0
    items = [decode(NewsItem, m.value) for m in read_all(ctx.bus, settings.topics.raw)]
    items.sort(key=lambda i: i.published_at)
    assert [i.published_at for i in items] == [
        now,
        now + timedelta(minutes=10),
        now + timedelta(minutes=10) + LOOP_GAP,
        now + timedelta(minutes=20) + LOOP_GAP,
        now + timedelta(minutes=20) + 2 * LOOP_GAP,
        now + timedelta(minutes=30) + 2 * LOOP_GAP,
    ]
    assert len({i.id for i in items}) == 6 and all(i.novelty == 1.0 for i in items)
    assert items[0].id.startswith("url:") and items[0].id.endswith(f"~{int(now.timestamp())}")
    # Earlier passes' state is forgotten, so a long-running demo does not accumulate it.
    assert not core.state.seen(items[0].id) and core.state.seen(items[-1].id)

    # A restart continues the event-time clock where the last pass ended (watermarks downstream).
    stop.clear()
    produced.clear()
    Replayer(src, core.publisher, now=lambda: now).run(stop)
    first_ids = {i.id for i in items}
    later = [
        i for i in (decode(NewsItem, m.value) for m in read_all(ctx.bus, settings.topics.raw)) if i.id not in first_ids
    ]
    assert len(later) == 6
    assert min(i.published_at for i in later) == now + timedelta(minutes=30) + 3 * LOOP_GAP


def test_demo_feed_is_valid_and_has_the_planted_burst() -> None:
    rows, bad = read_file(DEMO_FEED, "auto", "demo-wire")
    assert bad == [] and len(rows) >= 250
    span = rows[-1].time - rows[0].time
    assert timedelta(hours=1, minutes=45) <= span <= timedelta(hours=2, minutes=5)
    burst = [r for r in rows if "HLVB" in r.draft.tickers]
    assert len(burst) >= 15
    assert max(r.time for r in burst) - min(r.time for r in burst) <= timedelta(minutes=25)


def _config(tmp_path: Path, bootstrap: str, topics) -> Path:
    cfg = tmp_path / "finsent.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path / "home"),
                "kafka": {"bootstrap": bootstrap},
                "topics": topics.model_dump(),
                "connectors": {"demo": False},
                "logging": {"level": "WARNING"},
            }
        ),
        encoding="utf-8",
    )
    return cfg


def _run_cli(capsys, *argv: str) -> dict:
    code = main(["replay", *argv])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out
    return json.loads(out[-1])


@pytest.mark.kafka
def test_replay_cli_to_kafka_and_restart(tmp_path, kafka_bootstrap, topics, capsys, monkeypatch) -> None:
    for var in [v for v in list(os.environ) if v.startswith("FINSENT_") and v != "FINSENT_TEST_KAFKA"]:
        monkeypatch.delenv(var)
    rows = [
        {
            "title": f"Acme story {i} about widgets and gadgets",
            "published_at": iso(T0 + timedelta(minutes=9 - i)),
            "tickers": ["ACME"],
            "url": f"https://x.example.com/acme/{i}",
        }
        for i in range(10)
    ]
    rows += [
        {
            "title": "Acme story 3 about widgets and gadgets",
            "published_at": iso(T0),
            "url": "https://x.example.com/acme/3?utm_source=t",
        },
        {
            "title": "UPDATE 1-Acme story 4 about widgets and gadgets - Reuters",
            "published_at": iso(T0 + timedelta(hours=1)),
            "tickers": ["ACME"],
            "url": "https://y.example.com/copy",
        },
        {"title": "", "published_at": iso(T0)},
        "not json",
    ]
    path = write_jsonl(tmp_path / "stories.jsonl", rows)
    cfg = _config(tmp_path, kafka_bootstrap, topics)

    first = _run_cli(capsys, str(path), "--config", str(cfg), "--source", "bulk", "--speed", "0")
    assert {k: first[k] for k in ("read", "produced", "duplicates", "rejected")} == {
        "read": 14,
        "produced": 11,
        "duplicates": 1,
        "rejected": 2,
    }
    assert first["seconds"] >= 0

    records = read_topic(kafka_bootstrap, topics.raw)
    items = [decode(NewsItem, r.value) for r in records]
    assert len(items) == 11 and {i.source for i in items} == {"bulk"}
    acme = [i for i, r in zip(items, records) if r.key == b"ACME"]
    assert len({r.partition for r in records if r.key == b"ACME"}) == 1
    assert [i.published_at for i in acme] == sorted(i.published_at for i in acme)  # event-time order per key
    copy = next(i for i in items if i.url == "https://y.example.com/copy")
    assert copy.novelty == 0.5

    dead = dead_letters_on(kafka_bootstrap, topics.dlq)
    assert sorted(d.reason for d in dead) == [
        "bulk: line 13: missing 'title' (or 'text')",
        "bulk: line 14: not JSON: Expecting value: line 1 column 1 (char 0)",
    ]
    assert {d.stage for d in dead} == {"ingest"}

    # A second run (a restart: new process objects, same home) re-emits nothing.
    second = _run_cli(capsys, str(path), "--kafka", kafka_bootstrap, "--config", str(cfg), "--source", "bulk")
    assert {k: second[k] for k in ("read", "produced", "duplicates", "rejected")} == {
        "read": 14,
        "produced": 0,
        "duplicates": 12,
        "rejected": 2,
    }
    assert len(news_on(kafka_bootstrap, topics.raw)) == 11
