"""`finsent replay` streams its file (issue #26, item 2): memory stays flat whatever the file's size,
rows come out in event-time order within the sort window, and rows out of place by more than the
window are still sent (counted), never lost."""

from __future__ import annotations

import json
import threading
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

from connectors.publisher import PublishResult
from connectors.replay import BadRow, Replayer, in_event_time_order
from connectors.settings import FileSource
from tests.waiting import wait_until

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


class CountingPublisher:
    """Keeps only counts and the event times it was given, as a bus would take them away."""

    chunk_size = 500

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.rejected: list[str] = []
        self.values: dict[str, str] = {}
        self.state = self

    def get_value(self, key: str) -> str | None:
        return self.values.get(key)

    def set_value(self, key: str, value: str) -> None:
        self.values[key] = value

    def forget_scope_prefix(self, prefix: str) -> None:
        return None

    def reject(self, source: str, payload: bytes, reason: str) -> None:
        self.rejected.append(reason)

    def publish(self, source, drafts, *, scope: str = "", live: bool = True) -> PublishResult:
        self.times.extend(d.published_at for d in drafts)
        return PublishResult(read=len(drafts), produced=len(drafts))


def test_replay_streams_a_large_file_in_flat_memory(tmp_path: Path) -> None:
    n = 60_000
    path = tmp_path / "big.jsonl"
    body = "x" * 400
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            # mostly in order, with local disorder well inside the sort window
            t = T0 + timedelta(seconds=i + (7 if i % 3 == 0 else 0))
            fh.write(json.dumps({"title": f"story {i} about Acme", "body": body, "published_at": t.isoformat()}) + "\n")
        fh.write("{not json\n")
    assert path.stat().st_size > 25_000_000
    publisher = CountingPublisher()
    tracemalloc.start()
    try:
        stats = Replayer(FileSource(name="big", path=path, speed=0), publisher).run(threading.Event())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.produced == n and stats.rejected == 1 and publisher.rejected[0].startswith(f"line {n + 1}: not JSON")
    assert publisher.times == sorted(publisher.times) and stats.out_of_order == 0
    # Holding the file's 60,000 parsed rows takes ~180 MB; streaming holds the sort window (2,000
    # rows) and one publish call's drafts (20 chunks of 500): a constant ~20 MB, whatever the size.
    assert peak < 30_000_000, peak


def test_rows_out_of_place_beyond_the_window_are_sent_and_counted() -> None:
    from connectors.normalise import Draft
    from connectors.replay import Row

    def row(minutes: int) -> Row:
        t = T0 + timedelta(minutes=minutes)
        return Row(t, Draft(source="s", title=f"m{minutes}", published_at=t))

    late: list[Row] = []
    rows = [row(m) for m in (3, 1, 2, 9, 8, 0)] + [BadRow(7, b"x", "bad")]
    out = list(in_event_time_order(rows, window=2, late=late.append))
    titles = [r.draft.title if isinstance(r, Row) else "BAD" for r in out]
    # window 2: 1,2 sorted within it; 0 arrives after 2 and 3 went out: sent at once, counted late
    assert titles == ["m1", "m2", "m3", "m0", "BAD", "m8", "m9"]
    assert [r.draft.title for r in late] == ["m0"]
    assert sorted(titles) == sorted(["m3", "m1", "m2", "m9", "m8", "m0", "BAD"])  # nothing lost


def test_replay_without_a_broker_is_refused_and_remembers_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    """Item 6: without a broker the stories would go to an in-memory bus that dies with the command,
    and their ids would be remembered as seen, so the next real replay would drop them."""
    import os
    import stat

    from monitor.app.cli import main

    for var in [v for v in list(os.environ) if v.startswith("FINSENT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "home"))
    story = tmp_path / "s.jsonl"
    story.write_text(json.dumps({"title": "Acme wins", "published_at": T0.isoformat()}) + "\n")
    assert main(["replay", str(story)]) == 2
    err = capsys.readouterr().err
    assert "no broker configured" in err and "kafka.bootstrap" in err
    assert not list((tmp_path / "home").rglob("*.db"))  # no id remembered as seen
    # item 19: a directory is named as one; a FIFO is a file to read, not "no such file"
    assert main(["replay", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    fifo = tmp_path / "stories.fifo"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert main(["replay", str(fifo)]) == 2
    err = capsys.readouterr().err
    assert "no such file" not in err and "no broker configured" in err


def test_replay_file_removed_after_start_up_is_a_clear_not_ready_not_a_traceback(tmp_path: Path) -> None:
    """Item 17: the configured file is gone by the time the replay stage reads it."""
    from connectors.stages import ReplayStage

    path = tmp_path / "gone.jsonl"
    stage = ReplayStage(Replayer(FileSource(name="gone", path=path, speed=0), CountingPublisher()))
    stop = threading.Event()
    worker = threading.Thread(target=stage.run, args=(stop,))
    worker.start()
    try:
        wait_until(lambda: not stage.ready()[0], 10, "the stage to report not ready", every_s=0.02)
        ok, detail = stage.ready()
        assert not ok and f"cannot read {path}" in detail and "No such file" in detail
        assert worker.is_alive()  # the stage idles until stop; the daemon goes on
    finally:
        stop.set()
        worker.join(5)
    assert not worker.is_alive()
