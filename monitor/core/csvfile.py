"""Reading a CSV file row by row, strictly, with every bad row isolated and named by its line.

Python's csv module in its default mode lets one unterminated quote swallow every row after it
into one field, and names the wrong line when it notices. Here the file is read in ``strict``
mode through a line counter, so:

* a row the dialect cannot parse (a stray quote, a field past the size limit) is reported with
  the line it starts on, and reading goes on with the next row;
* a row that runs over several lines and then breaks (an open quote that swallowed the rows
  after it) is reported on the line where it starts, and reading starts again on the following
  line: the rows the quote had swallowed are read as rows;
* fields spanning several lines inside proper quotes stay one field, as CSV allows.

Rows stream (nothing holds the file), named as an editor shows them: the header is line 1.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

CsvRow = dict[str | None, str | list[str] | None]


class _CountedLines:
    """Iterates a text file's lines, counting them."""

    def __init__(self, path: Path, encoding: str, errors: str, skip: int = 0) -> None:
        self.fh = path.open(encoding=encoding, errors=errors, newline="")
        self.n = 0
        for _ in range(skip):
            if not self.fh.readline():
                break
            self.n += 1

    def __iter__(self) -> _CountedLines:
        return self

    def __next__(self) -> str:
        line = self.fh.readline()
        if not line:
            raise StopIteration
        self.n += 1
        return line

    def close(self) -> None:
        self.fh.close()


def iter_csv(
    path: Path, dialect: type[csv.Dialect] = csv.excel, encoding: str = "utf-8-sig", errors: str = "strict"
) -> Iterator[tuple[int, CsvRow | str]]:
    """``(line, row)`` for each data row (a dict by header name, like ``csv.DictReader``: missing
    fields None, extra ones under the key None), or ``(line, reason)`` for a row that cannot be read.

    ``errors``: what undecodable bytes do (``strict``: raise ``UnicodeDecodeError``, which callers
    turn into an error naming the file; ``replace``: U+FFFD)."""
    lines = _CountedLines(path, encoding, errors)
    fieldnames: list[str] | None = None
    try:
        reader = csv.reader(lines, dialect=dialect, strict=True)
        start = 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                unterminated = "unexpected end of data" in str(err)
                reason = "unterminated quoted field" if unterminated else f"unreadable CSV row: {err}"
                yield start, f"line {start}: {reason}"
                if lines.n > start:
                    # the row ran over several lines before it broke (an open quote): only its first
                    # line is bad; read again from the next one, so the rows it swallowed are rows
                    lines.close()
                    lines = _CountedLines(path, encoding, errors, skip=start)
                    reader = csv.reader(lines, dialect=dialect, strict=True)
                    start += 1
                    continue
                if unterminated:
                    return
                start = lines.n + 1
                continue
            line, start = start, lines.n + 1
            if fieldnames is None:
                fieldnames = [str(f).strip() for f in values]
                continue
            if not values:
                continue  # a blank line
            row: CsvRow = dict(zip(fieldnames, values))
            for name in fieldnames[len(values) :]:
                row[name] = None
            if len(values) > len(fieldnames):
                row[None] = values[len(fieldnames) :]
            yield line, row
    finally:
        lines.close()
