"""The one SQLite opener (monitor.core.sqlite), from its specification: WAL for files, the schema
applied, each migration run once and counted in ``user_version``, nothing left open on failure."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor.core.sqlite import add_column, open_sqlite

SCHEMA = "CREATE TABLE IF NOT EXISTS t (a TEXT);"


def test_a_file_is_created_with_wal_and_the_schema(tmp_path: Path) -> None:
    db = open_sqlite(tmp_path / "deep" / "state.db", SCHEMA)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    db.execute("INSERT INTO t VALUES ('x')")  # autocommit: visible to a second connection at once
    assert sqlite3.connect(tmp_path / "deep" / "state.db").execute("SELECT a FROM t").fetchall() == [("x",)]
    db.close()
    assert (
        open_sqlite(tmp_path / "deep" / "state.db", SCHEMA, synchronous="FULL")
        .execute("PRAGMA synchronous")
        .fetchone()[0]
        == 2
    )


def test_migrations_run_once_each_in_order_and_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    calls: list[str] = []
    first = [add_column("t", "b", "TEXT"), lambda db: calls.append("second")]
    open_sqlite(path, SCHEMA, first).close()
    assert calls == ["second"]
    db = open_sqlite(path, SCHEMA, [*first, add_column("t", "c", "INTEGER")])
    assert calls == ["second"]  # not again
    assert [r[1] for r in db.execute("PRAGMA table_info(t)")] == ["a", "b", "c"]
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3


def test_add_column_accepts_a_table_that_already_has_it(tmp_path: Path) -> None:
    db = open_sqlite(
        tmp_path / "s.db", "CREATE TABLE IF NOT EXISTS t (a TEXT, b TEXT);", [add_column("t", "b", "TEXT")]
    )
    assert [r[1] for r in db.execute("PRAGMA table_info(t)")] == ["a", "b"]


def test_a_failing_schema_leaves_no_connection_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[sqlite3.Connection] = []
    real = sqlite3.connect

    def tracking(*args: object, **kwargs: object) -> sqlite3.Connection:
        opened.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return opened[-1]

    monkeypatch.setattr(sqlite3, "connect", tracking)
    with pytest.raises(sqlite3.OperationalError):
        open_sqlite(tmp_path / "s.db", "CREATE TABLE broken (;")
    with pytest.raises(sqlite3.ProgrammingError):  # closed
        opened[0].execute("SELECT 1")


def test_in_memory_needs_no_path() -> None:
    for path in (None, ":memory:"):
        db = open_sqlite(path, SCHEMA)
        db.execute("INSERT INTO t VALUES ('x')")
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 1
