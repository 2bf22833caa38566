"""Hostile rows next to good ones (issue #26, item 4): a 400-digit epoch ``published_at`` and a
title with a lone surrogate are rejected by line number; the good rows around them go through
and the replay ends with its summary, no traceback."""

from __future__ import annotations

import threading
from pathlib import Path

from connectors.replay import Replayer
from connectors.settings import FileSource
from monitor.core.records import NewsItem, decode
from tests.bus_reading import read_all


def test_replay_rejects_400_digit_epoch_and_lone_surrogate_but_keeps_good_rows(
    make_settings, ingest_factory, tmp_path: Path
) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"title": "Acme wins a big order", "published_at": "2026-11-20T10:00:00Z"}',
                '{"title": "epoch from the far future", "published_at": ' + "9" * 400 + "}",
                '{"title": "lone \\ud800 surrogate", "published_at": "2026-11-20T10:01:00Z"}',
                '{"title": "Globex cuts guidance", "published_at": "2026-11-20T10:02:00Z"}',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    settings = make_settings(connectors={"demo": False})
    core, ctx = ingest_factory(settings)
    stats = Replayer(FileSource(name="hostile", path=path, speed=0), core.publisher).run(threading.Event())
    assert (stats.read, stats.produced, stats.rejected) == (4, 2, 2)
    titles = sorted(decode(NewsItem, m.value).title for m in read_all(ctx.bus, settings.topics.raw))
    assert titles == ["Acme wins a big order", "Globex cuts guidance"]
    reasons = sorted(m.value.decode("utf-8", "replace") for m in read_all(ctx.bus, settings.topics.dlq))
    assert any("line 2" in r for r in reasons) and any("line 3" in r for r in reasons), reasons
