"""Ticker extraction: cashtags, exchange-prefixed symbols and an alias table (company name -> ticker).

:meth:`TickerExtractor.mentions` returns the story's tickers and where each was found
(:class:`~monitor.core.records.TickerMention`: part, span, surface, how). The alias table shipped with
the package (``connectors/data/aliases.csv``, see ``connectors/data/ALIASES.md``) is read by
:func:`load_alias_table`; ``connectors.alias_table`` and ``connectors.aliases`` choose and extend it.
"""

from __future__ import annotations

import csv
import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from monitor.core.records import MentionKind, TickerMention

EXCHANGES = (
    "NASDAQ",
    "NASDAQGS",
    "NASDAQGM",
    "NASDAQCM",
    "NYSE",
    "NYSEARCA",
    "NYSEAMERICAN",
    "NYSE AMERICAN",
    "NYSE ARCA",
    "NYSEMKT",
    "AMEX",
    "ARCA",
    "BATS",
    "CBOE",
    "OTC",
    "OTCQX",
    "OTCQB",
    "OTCMKTS",
    "TSX",
    "TSXV",
    "LSE",
    "LON",
    "XETRA",
    "ETR",
    "FRA",
    "EPA",
    "EURONEXT",
    "SIX",
    "HKEX",
    "HKG",
    "ASX",
    "TSE",
    "TYO",
    "NSE",
    "BSE",
)
_SYMBOL = r"[A-Z][A-Z0-9]{0,5}(?:[.\-][A-Z0-9]{1,3})?"
_CASHTAG = re.compile(rf"(?<![\w$])\$({_SYMBOL})(?![\w])")
_EXCHANGE_NAME = (
    r"(?i:" + "|".join(re.escape(e).replace(r"\ ", r"\s+") for e in sorted(EXCHANGES, key=len, reverse=True)) + ")"
)
_EXCHANGE = re.compile(rf"\b{_EXCHANGE_NAME}\s*:\s*({_SYMBOL})(?![\w])")
"""``NASDAQ:AAPL``, ``(NYSE: IBM)``. :func:`_exchange_hits` finds the same matches
faster: it looks for ``:SYMBOL`` (a literal ``:`` the engine skips to) and then for an exchange name
just before the colon, instead of trying every exchange name at every word start."""
_COLON_SYMBOL = re.compile(rf":\s*({_SYMBOL})(?![\w])")
_EXCHANGE_BEFORE = re.compile(rf"(?<!\w){_EXCHANGE_NAME}\s*\Z")
_EXCHANGE_REACH = 64  # an exchange name (and spaces) ends at most this far before its colon
_VALID = re.compile(rf"^{_SYMBOL}$")

DEFAULT_ALIAS_TABLE = Path(__file__).resolve().parent / "data" / "aliases.csv"
"""The alias table shipped with the package (source and licence: ``data/ALIASES.md``)."""
MAX_ALIAS_CHARS = 100
_MAX_SURFACE = 256  # TickerMention.surface's limit


def clean_ticker(value: str) -> str | None:
    """``value`` as an upper-case symbol (``$`` and exchange prefix dropped), or None if not one."""
    v = value.strip().lstrip("$").upper()
    if ":" in v:
        v = v.rsplit(":", 1)[1].strip()
    return v if _VALID.match(v) else None


def clean_alias(name: str) -> str:
    """An alias as it is matched: NFKC (as :func:`connectors.text.clean_text` does to the text),
    whitespace runs collapsed to one space, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", name).split())


class AliasTableError(ValueError):
    """An alias table file that cannot be used; the message names the file and the line."""


def load_alias_table(path: str | Path) -> dict[str, str]:
    """Read an alias table CSV: a header whose first two columns are ``alias,ticker`` (further
    columns are ignored), then one alias a row. Blank lines and lines starting with ``#`` are
    skipped. Raises :class:`AliasTableError` naming the file and line of the first problem."""
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AliasTableError(f"alias table {p}: no such file") from None
    except UnicodeDecodeError as err:
        raise AliasTableError(f"alias table {p}: not UTF-8 ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise AliasTableError(f"alias table {p}: cannot read it ({err.strerror or err})") from None
    out: dict[str, str] = {}
    seen_at: dict[str, int] = {}
    header = False
    lines = raw.splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"alias table {p}, line {lineno}"
        try:
            row = next(csv.reader([line]))
        except csv.Error as err:
            raise AliasTableError(f"{where}: {err}") from None
        cells = [c.strip() for c in row]
        if not header:
            if [c.lower() for c in cells[:2]] != ["alias", "ticker"]:
                raise AliasTableError(f"{where}: the header must start with 'alias,ticker', got {line.strip()!r}")
            header = True
            continue
        if len(cells) < 2:
            raise AliasTableError(f"{where}: expected 'alias,ticker', got {line.strip()!r}")
        name, ticker_raw = clean_alias(cells[0]), cells[1]
        if not name:
            raise AliasTableError(f"{where}: empty alias")
        if len(name) > MAX_ALIAS_CHARS:
            raise AliasTableError(f"{where}: alias longer than {MAX_ALIAS_CHARS} characters")
        if not any(c.isalnum() for c in name):
            raise AliasTableError(f"{where}: alias {name!r} has no letter or digit")
        ticker = clean_ticker(ticker_raw) if ticker_raw else None
        if ticker is None or ":" in ticker_raw or ticker_raw.startswith("$"):
            raise AliasTableError(f"{where}: {ticker_raw!r} is not a ticker symbol (like AAPL, BRK.B, NOVO-B)")
        if name in out and out[name] != ticker:
            raise AliasTableError(
                f"{where}: alias {name!r} maps to {ticker}, but line {seen_at[name]} maps it to {out[name]}"
            )
        out[name] = ticker
        seen_at.setdefault(name, lineno)
    if not header:
        raise AliasTableError(f"alias table {p}: empty (expected a header 'alias,ticker' and rows)")
    return out


@functools.lru_cache(maxsize=1)
def _default_table() -> tuple[tuple[str, str], ...]:
    return tuple(load_alias_table(DEFAULT_ALIAS_TABLE).items())


def default_aliases() -> dict[str, str]:
    """The shipped alias table (a fresh dict each call)."""
    return dict(_default_table())


def _exchange_hits(text: str) -> list[tuple[int, int, str, MentionKind]]:
    """The matches of ``_EXCHANGE`` in ``text`` (same spans, for exchange names and spaces up to
    ``_EXCHANGE_REACH`` characters before the colon), found colon first."""
    out: list[tuple[int, int, str, MentionKind]] = []
    done = 0
    for m in _COLON_SYMBOL.finditer(text):
        colon = m.start()
        ex = _EXCHANGE_BEFORE.search(text, max(done, colon - _EXCHANGE_REACH), colon)
        if ex is not None:
            out.append((ex.start(), m.end(), m.group(1), "exchange"))
            done = m.end()
    return out


def _trie_pattern(names: Iterable[str]) -> str:
    """One regex alternation for ``names``, factored as a trie: the engine picks the branch by the
    next character instead of trying every name at every word start. Longer names win (greedy)."""
    trie: dict = {}
    for name in names:
        node = trie
        for ch in name:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict) -> str:
        end = "" in node
        branches = []
        for ch in sorted(k for k in node if k):
            child, chars = node[ch], [ch]
            while len(child) == 1 and "" not in child:  # a chain with no choices: one literal
                ((nxt, child),) = child.items()
                chars.append(nxt)
            branches.append(re.escape("".join(chars)) + emit(child))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if end:
            return ("(?:" + body + ")?") if len(branches) == 1 else body + "?"
        return body

    return emit(trie)


class TickerExtractor:
    """Finds tickers in text. Aliases (company name -> ticker) match whole words, case-sensitively.

    ``aliases`` is used as given (no default table: :meth:`ConnectorsSettings.alias_map` merges
    the shipped table with the user's entries).
    """

    def __init__(self, aliases: Mapping[str, str] | None = None, max_tickers: int = 8) -> None:
        self.max_tickers = max_tickers
        self._aliases: dict[str, str] = {}
        for name, ticker in (aliases or {}).items():
            n = clean_alias(name)
            if n and ticker:
                self._aliases[n] = ticker.strip().upper()
        self._alias_re: re.Pattern[str] | None = None
        if self._aliases:
            firsts = "".join(sorted({n[0] for n in self._aliases}))
            # the look-ahead on the first characters only saves time; (?<!\w)...(?!\w): whole words
            self._alias_re = re.compile(
                "(?=[" + re.escape(firsts) + r"])(?<!\w)(" + _trie_pattern(self._aliases) + r")(?!\w)"
            )

    @property
    def aliases(self) -> dict[str, str]:
        """The alias table in use (a copy)."""
        return dict(self._aliases)

    def _hits(self, text: str) -> list[tuple[int, int, str, MentionKind]]:
        """(start, end, ticker, how) of every mention in ``text``, in order, without overlaps: of
        overlapping matches the one starting first, then the longest, is kept (``$AAPL`` over an
        alias ``AAPL`` inside it; ``NYSE: IBM`` over an alias ``IBM``)."""
        if not text:
            return []
        hits: list[tuple[int, int, str, MentionKind]] = []
        if "$" in text:
            hits += [(m.start(), m.end(), m.group(1), "cashtag") for m in _CASHTAG.finditer(text)]
        if ":" in text:
            hits += _exchange_hits(text)
        if self._alias_re is not None:
            aliases = self._aliases
            hits += [(m.start(), m.end(), aliases[m.group(1)], "alias") for m in self._alias_re.finditer(text)]
        if len(hits) > 1:
            hits.sort(key=lambda h: (h[0], h[0] - h[1]))
            kept = [hits[0]]
            for h in hits[1:]:
                if h[0] >= kept[-1][1]:
                    kept.append(h)
            hits = kept
        return [h for h in hits if h[1] - h[0] <= _MAX_SURFACE]

    def find(self, text: str) -> list[str]:
        """Tickers in ``text`` in order of appearance (repeats included)."""
        return [h[2] for h in self._hits(text)]

    def mentions(
        self, explicit: Iterable[str], title: str, body: str = ""
    ) -> tuple[tuple[str, ...], tuple[TickerMention, ...]]:
        """The story's tickers and where each was found.

        Tickers: the explicit ones first (from the feed or source config; cleaned, invalid ones
        dropped), then those found in ``title``, then in ``body``; de-duplicated; at most
        ``max_tickers``. Mentions, for the kept tickers only: every text mention (title in order,
        then body in order; offsets are ``str`` indices into ``title``/``body`` as given, ``[start,
        end)``, ``surface == text[start:end]``), then one ``how="feed"`` mention (no part, no span)
        for each explicit ticker not found in the text.
        """
        out: dict[str, None] = {}
        for raw in explicit:
            t = clean_ticker(raw) if isinstance(raw, str) else None
            if t:
                out.setdefault(t)
        explicit_set = set(out)
        found: list[tuple[Literal["title", "body"], str, tuple[int, int, str, MentionKind]]] = []
        parts: tuple[tuple[Literal["title", "body"], str], ...] = (("title", title), ("body", body))
        for part, text in parts:
            for h in self._hits(text):
                out.setdefault(h[2])
                found.append((part, text, h))
        kept = list(out)[: self.max_tickers]
        keep = set(kept)
        mentions: list[TickerMention] = []
        in_text: set[str] = set()
        for part, text, (start, end, ticker, how) in found:
            if ticker in keep:
                in_text.add(ticker)
                mentions.append(
                    TickerMention(ticker=ticker, how=how, part=part, start=start, end=end, surface=text[start:end])
                )
        for t in kept:
            if t in explicit_set and t not in in_text:
                mentions.append(TickerMention(ticker=t, how="feed"))
        return tuple(kept), tuple(mentions)
