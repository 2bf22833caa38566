"""Reading a whole replay file at once, for tests that inspect every row (the product streams)."""

from __future__ import annotations

from pathlib import Path

from connectors.replay import BadRow, Row, iter_file


def read_file(path: Path, fmt: str, default_source: str) -> tuple[list[Row], list[BadRow]]:
    """Every usable row of a (small) file sorted by event time, and the rows that cannot be used."""
    rows: list[Row] = []
    bad: list[BadRow] = []
    for row in iter_file(path, fmt, default_source):
        if isinstance(row, BadRow):
            bad.append(row)
        else:
            rows.append(row)
    rows.sort(key=lambda r: r.time)
    return rows, bad
