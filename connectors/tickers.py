"""Ticker extraction: cashtags, exchange-prefixed symbols and a configured alias table."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

EXCHANGES = (
    "NASDAQ", "NASDAQGS", "NASDAQGM", "NASDAQCM", "NYSE", "NYSEARCA", "NYSEAMERICAN", "NYSE AMERICAN",
    "NYSE ARCA", "NYSEMKT", "AMEX", "ARCA", "BATS", "CBOE", "OTC", "OTCQX", "OTCQB", "OTCMKTS", "TSX", "TSXV",
    "LSE", "LON", "XETRA", "ETR", "FRA", "EPA", "EURONEXT", "SIX", "HKEX", "HKG", "ASX", "TSE", "TYO", "NSE", "BSE",
)
_SYMBOL = r"[A-Z][A-Z0-9]{0,5}(?:[.\-][A-Z0-9]{1,3})?"
_CASHTAG = re.compile(rf"(?<![\w$])\$({_SYMBOL})(?![\w])")
_EXCHANGE = re.compile(
    r"\b(?i:" + "|".join(re.escape(e).replace(r"\ ", r"\s+") for e in sorted(EXCHANGES, key=len, reverse=True))
    + rf")\s*:\s*({_SYMBOL})(?![\w])"
)
_VALID = re.compile(rf"^{_SYMBOL}$")


def clean_ticker(value: str) -> str | None:
    """``value`` as an upper-case symbol (``$`` and exchange prefix dropped), or None if not one."""
    v = value.strip().lstrip("$").upper()
    if ":" in v:
        v = v.rsplit(":", 1)[1].strip()
    return v if _VALID.match(v) else None


class TickerExtractor:
    """Finds tickers in text. Aliases (company name -> ticker) match whole words, case-sensitively."""

    def __init__(self, aliases: Mapping[str, str] | None = None, max_tickers: int = 8) -> None:
        self.max_tickers = max_tickers
        self._aliases = {name: ticker.upper() for name, ticker in (aliases or {}).items()}
        self._alias_re: re.Pattern[str] | None = None
        if self._aliases:
            names = sorted(self._aliases, key=len, reverse=True)
            self._alias_re = re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in names) + r")(?!\w)")

    def find(self, text: str) -> list[str]:
        """Tickers in ``text`` in order of first appearance."""
        if not text:
            return []
        hits: list[tuple[int, str]] = []
        if "$" in text:
            hits += [(m.start(), m.group(1).upper()) for m in _CASHTAG.finditer(text)]
        if ":" in text:
            hits += [(m.start(), m.group(1).upper()) for m in _EXCHANGE.finditer(text)]
        if self._alias_re is not None:
            hits += [(m.start(), self._aliases[m.group(1)]) for m in self._alias_re.finditer(text)]
        hits.sort()
        return [t for _, t in hits]

    def extract(self, explicit: Iterable[str], *texts: str) -> tuple[str, ...]:
        """Explicit tickers first (from the source), then those found in ``texts``; de-duplicated."""
        out: dict[str, None] = {}
        for raw in explicit:
            t = clean_ticker(raw) if isinstance(raw, str) else None
            if t:
                out.setdefault(t)
        for text in texts:
            for t in self.find(text):
                out.setdefault(t)
        return tuple(list(out)[: self.max_tickers])
