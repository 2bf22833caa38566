"""The one way finsent opens its SQLite state files (dedup state, window checkpoints, alert
state, label votes).

Every connection: shared across the owner's threads (each owner serialises with its own lock),
autocommit (``isolation_level=None``: owners write ``BEGIN IMMEDIATE ... COMMIT`` themselves),
a busy timeout, WAL for files (readers beside one writer, e.g. ``finsent labels export`` while
the daemon runs) and ``synchronous=NORMAL`` unless the owner asks for ``FULL``. The schema is a
``CREATE ... IF NOT EXISTS`` script; later changes are migrations, run in order once each and
counted in ``PRAGMA user_version``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

Migration = Callable[[sqlite3.Connection], None]


def open_sqlite(
    path: str | Path | None,
    schema: str,
    migrations: Sequence[Migration] = (),
    *,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    timeout_s: float = 30.0,
) -> sqlite3.Connection:
    """The database at ``path`` (``None`` or ``":memory:"``: in memory), its parent directory
    created, schema and migrations applied. Closed again if any of that fails (a full disk: the
    caller may retry, so no handle is left open)."""
    memory = path is None or str(path) == ":memory:"
    if not memory:
        Path(str(path)).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(
        ":memory:" if memory else str(path), check_same_thread=False, isolation_level=None, timeout=timeout_s
    )
    try:
        if not memory:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(schema)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, migrate in enumerate(migrations[version:], start=version + 1):
            migrate(db)
            db.execute(f"PRAGMA user_version = {number}")
    except BaseException:
        db.close()
        raise
    return db


def add_column(table: str, column: str, declaration: str) -> Migration:
    """A migration adding a column, unless the table already has it (a file whose schema script
    was written after the column existed)."""

    def migrate(db: sqlite3.Connection) -> None:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    return migrate
