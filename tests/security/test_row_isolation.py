"""Bad rows are named by line and never swallow their neighbours (issue #26, items 5, 7, 19)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from monitor.app.cli import main
from monitor.core.csvfile import iter_csv
from monitor.learning.labels import LabelBatchError, read_label_file, validate_rows

UNTERMINATED = (
    "task,label,text\n"
    "sentiment,positive,Acme beats estimates\n"
    'sentiment,negative,"Globex misses, shares fall\n'
    "sentiment,neutral,Initech holds its meeting\n"
    "sentiment,positive,Umbrella raises its dividend\n"
)


def test_an_unterminated_csv_quote_is_one_bad_row_and_the_rows_after_it_are_read(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text(UNTERMINATED, encoding="utf-8")
    rows = list(iter_csv(path))
    assert [line for line, _ in rows] == [2, 3, 4, 5]
    assert rows[1][1] == "line 3: unterminated quoted field"
    assert [r["text"] for _, r in rows if isinstance(r, dict)] == [
        "Acme beats estimates",
        "Initech holds its meeting",
        "Umbrella raises its dividend",
    ]


def test_a_quoted_field_over_several_lines_is_still_one_field(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('task,label,text\nsentiment,neutral,"two\nlines"\nsentiment,positive,after\n', encoding="utf-8")
    assert [(n, r["text"]) for n, r in iter_csv(path)] == [(2, "two\nlines"), (4, "after")]


def test_labels_import_of_an_unterminated_quote_refuses_the_batch_naming_the_line(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Before: the four rows were stored as one garbage label and the command exited 0."""
    for var in [v for v in list(os.environ) if v.startswith("FINSENT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "home"))
    path = tmp_path / "labels.csv"
    path.write_text(UNTERMINATED, encoding="utf-8")
    assert main(["labels", "import", str(path), "--labeller", "ann"]) == 2
    err = capsys.readouterr().err
    assert "row 3: unterminated quoted field" in err and "nothing stored" in err


def test_labels_jsonl_names_every_bad_line_and_json_true_false_floats_are_not_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"task": "sentiment", "label": "positive", "text": "fine", "labeller": "a"}),
                "not json at all",
                json.dumps({"task": "sentiment", "label": True, "text": "bool label", "labeller": "a"}),
                json.dumps({"task": "sentiment", "label": 1.0, "text": "float label", "labeller": "a"}),
                json.dumps({"task": "sentiment", "label": False, "text": "bool label 2", "labeller": "a"}),
                json.dumps({"task": "sentiment", "label": 1, "text": "dataset id", "labeller": "a"}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(LabelBatchError) as err:
        validate_rows(read_label_file(path), "file")
    assert [e.row for e in err.value.errors] == [2, 3, 4, 5]
    assert "not JSON" in str(err.value.errors[0])


def test_a_non_utf8_labels_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("task,label,text\nsentiment,positive,caf\xe9 opens\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv: not UTF-8"):
        read_label_file(path)


def test_dlq_list_to_a_dead_broker_is_one_line_no_traceback(tmp_path: Path) -> None:
    """Item 18: before, a traceback and about 20 ERROR lines of the Kafka client's retries."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")} | {"FINSENT_HOME": str(tmp_path)}
    for argv in (["dlq", "list"], ["replay", str(tmp_path / "x.jsonl")]):
        (tmp_path / "x.jsonl").write_text('{"title": "t", "published_at": "2026-11-20T10:00:00Z"}\n')
        done = subprocess.run(
            [sys.executable, "-m", "monitor.app.cli", *argv, "--kafka", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 1, done
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and f"cannot reach Kafka at 127.0.0.1:{port}" in lines[0], done.stderr
        assert "Traceback" not in done.stderr and "[error" not in done.stderr
