"""Durations as people write them in config: ``0``, ``30s``, ``5m``, ``1h30m``, ``2d``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
MAX_SECONDS = 100 * 365 * 86400
"""Longer durations are certainly typos (and past ~2.7 million years timedelta overflows)."""
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """``timedelta`` from a number of seconds or a string like ``'1h30m'``; ValueError otherwise."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for m in _PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ValueError(f"invalid duration {value!r} (use e.g. 30s, 5m, 1h30m, 2d)")
    else:
        raise ValueError(f"invalid duration {value!r}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"invalid duration {value!r}: must be a finite number of seconds")
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    if seconds > MAX_SECONDS:
        raise ValueError(f"invalid duration {value!r}: longer than {MAX_SECONDS // 86400 // 365} years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling: ``timedelta(minutes=90)`` -> ``'1h30m'``, zero -> ``'0s'``."""
    total = value.total_seconds()
    if total == 0:
        return "0s"
    if total != int(total):
        return f"{total:g}s"
    rest, out = int(total), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A config duration: accepts seconds or ``'5m'``-style strings, dumps as ``'5m'`` in JSON."""

Seconds = Annotated[float, BeforeValidator(lambda v: parse_duration(v).total_seconds())]
"""A config duration as a number of seconds, written as above (``90s``, ``15m``, ``1h30m``) or bare."""
