"""Ticker mentions: spans, surfaces, how each ticker was found, the shipped alias table and its config.

Expected offsets are written by hand from the text (``[start, end)`` str indices into the field).
"""

from __future__ import annotations

import csv
import random
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.normalise import TICKER_SCAN_CHARS, Draft, Normaliser
from connectors.settings import ConnectorsSettings
from connectors.tickers import (
    _EXCHANGE,
    DEFAULT_ALIAS_TABLE,
    AliasTableError,
    TickerExtractor,
    _exchange_hits,
    load_alias_table,
)
from monitor.core.records import TickerMention


def spans(mentions: tuple[TickerMention, ...]) -> list[tuple]:
    return [(m.ticker, m.how, m.part, m.start, m.end, m.surface) for m in mentions]


def check_surfaces(title: str, body: str, mentions: tuple[TickerMention, ...]) -> None:
    for m in mentions:
        if m.part is None:
            assert m.how == "feed" and m.start is None and m.end is None and m.surface is None
        else:
            text = title if m.part == "title" else body
            assert text[m.start : m.end] == m.surface, m


def test_cashtag_span_includes_the_dollar() -> None:
    title = "Shares of $AAPL jump"
    tickers, mentions = TickerExtractor().mentions([], title)
    assert tickers == ("AAPL",)
    assert spans(mentions) == [("AAPL", "cashtag", "title", 10, 15, "$AAPL")]


def test_exchange_prefix_span_covers_exchange_and_symbol() -> None:
    title = "IBM (NYSE: IBM) rises; Nasdaq:NVDA too"
    tickers, mentions = TickerExtractor().mentions([], title)
    assert tickers == ("IBM", "NVDA")
    assert spans(mentions) == [
        ("IBM", "exchange", "title", 5, 14, "NYSE: IBM"),
        ("NVDA", "exchange", "title", 23, 34, "Nasdaq:NVDA"),
    ]


def test_alias_in_title_and_body_and_feed_tickers() -> None:
    finder = TickerExtractor({"Acme Corp": "ACME", "Globex": "gbx"})
    title = "Globex sues Acme Corp"
    body = "Acme Corp denies it. Globex said nothing."
    tickers, mentions = finder.mentions(["ZZZ", "nasdaq:acme", "not a ticker!"], title, body)
    # explicit first (cleaned), then found in the title, then in the body
    assert tickers == ("ZZZ", "ACME", "GBX")
    assert spans(mentions) == [
        ("GBX", "alias", "title", 0, 6, "Globex"),
        ("ACME", "alias", "title", 12, 21, "Acme Corp"),
        ("ACME", "alias", "body", 0, 9, "Acme Corp"),
        ("GBX", "alias", "body", 21, 27, "Globex"),
        ("ZZZ", "feed", None, None, None, None),  # explicit, not in the text: one feed mention
    ]  # ACME is explicit too but found in the text: only its text mentions
    check_surfaces(title, body, mentions)


def test_aliases_are_whole_words_and_case_sensitive() -> None:
    finder = TickerExtractor({"Apple": "AAPL", "Ford": "F"})
    assert finder.mentions([], "apple pie at Applebee's; Fordham and FORD") == ((), ())
    assert spans(finder.mentions([], "Ford's Apple-like plan")[1]) == [
        ("F", "alias", "title", 0, 4, "Ford"),
        ("AAPL", "alias", "title", 7, 12, "Apple"),
    ]


def test_overlapping_matches_keep_the_first_and_longest() -> None:
    finder = TickerExtractor(
        {"AAPL": "AAPL", "Apple": "AAPL", "Apple Inc.": "AAPL", "IBM": "IBM", "Coca-Cola": "KO", "Coca-Cola HBC": "CCH"}
    )
    assert spans(finder.mentions([], "$AAPL up")[1]) == [("AAPL", "cashtag", "title", 0, 5, "$AAPL")]
    assert spans(finder.mentions([], "Apple Inc. beats")[1]) == [("AAPL", "alias", "title", 0, 10, "Apple Inc.")]
    assert spans(finder.mentions([], "NYSE: IBM")[1]) == [("IBM", "exchange", "title", 0, 9, "NYSE: IBM")]
    tickers, mentions = finder.mentions([], "Coca-Cola HBC and Coca-Cola")
    assert tickers == ("CCH", "KO")
    assert spans(mentions) == [
        ("CCH", "alias", "title", 0, 13, "Coca-Cola HBC"),
        ("KO", "alias", "title", 18, 27, "Coca-Cola"),
    ]


def test_max_tickers_keeps_mentions_of_kept_tickers_only() -> None:
    tickers, mentions = TickerExtractor(max_tickers=2).mentions(["FEED"], "$A and $B", "$A again, $C")
    assert tickers == ("FEED", "A")
    assert spans(mentions) == [
        ("A", "cashtag", "title", 0, 2, "$A"),
        ("A", "cashtag", "body", 0, 2, "$A"),
        ("FEED", "feed", None, None, None, None),
    ]


def test_find_lists_tickers_in_order() -> None:
    finder = TickerExtractor({"Globex": "GBX"})
    assert finder.find("$ACME beats Globex; LSE:VOD and $ACME") == ["ACME", "GBX", "VOD", "ACME"]
    assert finder.find("") == []


def test_exchange_fast_path_matches_the_plain_pattern() -> None:
    rng = random.Random(7)
    parts = [
        "NYSE",
        "nyse",
        "Nasdaq",
        "NYSE AMERICAN",
        "NYSE Arca",
        "LSE",
        "XLSE",
        ":",
        ": ",
        " :",
        " ",
        "IBM",
        "AAPL",
        "BRK.B",
        "vod",
        "AMERICAN",
        "ARCA",
        "10",
        "NASDAQ:",
        "ETR:SAP",
        "x:",
        "$",
        "é",
        "_",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(1, 10)))
        plain = [(m.start(), m.end(), m.group(1), "exchange") for m in _EXCHANGE.finditer(text)]
        assert _exchange_hits(text) == plain, text


# -- the shipped table ---------------------------------------------------------------------------


def default_finder(**settings) -> TickerExtractor:
    cs = ConnectorsSettings(**settings)
    return TickerExtractor(cs.alias_map(), cs.max_tickers)


def test_default_table_finds_large_us_and_european_companies() -> None:
    finder = default_finder()
    title = "Microsoft and Volkswagen shares rise"
    tickers, mentions = finder.mentions([], title)
    assert tickers == ("MSFT", "VOW3")
    assert spans(mentions) == [
        ("MSFT", "alias", "title", 0, 9, "Microsoft"),
        ("VOW3", "alias", "title", 14, 24, "Volkswagen"),
    ]
    for text, expected in [
        ("Apple, Alphabet and Google", ("AAPL", "GOOGL")),
        ("Meta, formerly Facebook, and Nvidia", ("META", "NVDA")),
        ("JPMorgan and Goldman Sachs; Goldman again", ("JPM", "GS")),
        ("Exxon, ExxonMobil and Berkshire", ("XOM", "BRK.B")),
        ("Tesla, VW and BMW", ("TSLA", "VOW3", "BMW")),
        ("SAP, ASML, Nestlé, Shell and AstraZeneca", ("SAP", "ASML", "NESN", "SHEL", "AZN")),
        ("HSBC, LVMH, TotalEnergies, Siemens and Novo Nordisk", ("HSBA", "MC", "TTE", "SIE", "NOVO-B")),
        ("Sanofi and Santander", ("SAN.PA", "SAN.MC")),
        ("Merck KGaA is not Merck", ("MRK.DE", "MRK")),
    ]:
        assert finder.mentions([], text)[0] == expected, text
    # ambiguous common words are left out of the table (see connectors/data/ALIASES.md)
    assert finder.mentions([], "Target to Block the Gap as Next Orange Carrier Delta")[0] == ()
    assert finder.mentions([], "Target Corp and Block Inc. and Gap Inc")[0] == ("TGT", "XYZ", "GAP")


def test_every_alias_of_the_shipped_table_matches_itself() -> None:
    with DEFAULT_ALIAS_TABLE.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    assert len(rows) >= 500 and len({r["ticker"] for r in rows}) >= 400
    finder = default_finder()
    for r in rows:
        title = f"News: {r['alias']} today"
        assert spans(finder.mentions([], title)[1]) == [
            (r["ticker"], "alias", "title", 6, 6 + len(r["alias"]), r["alias"])
        ], r
    assert (DEFAULT_ALIAS_TABLE.parent / "ALIASES.md").is_file()


# -- configuration --------------------------------------------------------------------------------


def test_user_aliases_extend_and_override_the_table() -> None:
    cs = ConnectorsSettings(aliases={"Acme Corp": "acme", "Apple": "AAPL.O", "Ford": None})
    table = cs.alias_map()
    assert table["Acme Corp"] == "ACME" and table["Apple"] == "AAPL.O" and "Ford" not in table
    assert table["Microsoft"] == "MSFT"  # the rest of the default table stays
    finder = TickerExtractor(table)
    assert finder.mentions([], "Acme Corp, Apple and Ford")[0] == ("ACME", "AAPL.O")


def test_alias_table_none_turns_the_table_off() -> None:
    cs = ConnectorsSettings(alias_table="none", aliases={"Acme Corp": "acme"})
    assert cs.alias_map() == {"Acme Corp": "ACME"}
    assert TickerExtractor(cs.alias_map()).mentions([], "Microsoft buys Acme Corp")[0] == ("ACME",)


def test_bad_user_alias_is_refused() -> None:
    with pytest.raises(ValidationError, match="'not a ticker' is not a ticker symbol"):
        ConnectorsSettings(aliases={"Acme Corp": "not a ticker"})
    with pytest.raises(ValidationError, match="non-empty"):
        ConnectorsSettings(aliases={"  ": "ACME"})


def test_user_alias_table_file(tmp_path: Path) -> None:
    path = tmp_path / "aliases.csv"
    path.write_text('# my names\nalias,ticker,comment\nAcme Corp,acme,ours\n\n"Globex, Inc.",GBX\n', encoding="utf-8")
    cs = ConnectorsSettings(alias_table=str(path), aliases={"Initech": "INTK"})
    assert cs.alias_map() == {"Acme Corp": "ACME", "Globex, Inc.": "GBX", "Initech": "INTK"}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("alias,ticker\nAcme Corp,ACME\nGlobex,not a ticker\n", "line 3: 'not a ticker' is not a ticker symbol"),
        ("# comment\nname,symbol\nAcme Corp,ACME\n", "line 2: the header must start with 'alias,ticker'"),
        ("alias,ticker\nAcme Corp,ACME\n\nAcme Corp,ACMX\n", "line 4: alias 'Acme Corp' maps to ACMX, but line 2"),
        ("alias,ticker\n,ACME\n", "line 2: empty alias"),
        ("alias,ticker\nAcme Corp,ACME\n&,AMP\n", "line 3: alias '&' has no letter or digit"),
        ("alias,ticker\nAcme Corp\n", "line 2: expected 'alias,ticker'"),
        ("", "empty"),
    ],
)
def test_bad_alias_table_file_names_file_and_line(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AliasTableError) as err:
        load_alias_table(path)
    assert str(err.value).startswith(f"alias table {path}") and problem in str(err.value)
    with pytest.raises(ValidationError) as verr:
        ConnectorsSettings(alias_table=str(path))
    assert str(path) in str(verr.value) and problem in str(verr.value)


def test_missing_alias_table_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file"):
        ConnectorsSettings(alias_table=str(tmp_path / "nope.csv"))


# -- end to end through the normaliser -----------------------------------------------------------


def test_normaliser_mentions_index_the_stored_title_and_body() -> None:
    n = Normaliser(default_finder(), source_tickers={"wire": ["IDX"]})
    fetched = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
    item = n.build(
        Draft(
            source="wire",
            title=" <b>Apple</b> &amp;  Microsoft   rise ",
            body="<p>Ｍicrosoft said (NASDAQ: MSFT) that $AAPL ...</p>",
            html=True,
            tickers=["$aapl"],
        ),
        fetched,
    )
    assert item.title == "Apple & Microsoft rise"
    assert item.body == "Microsoft said (NASDAQ: MSFT) that $AAPL ..."  # NFKC: full-width Ｍ is M
    assert item.tickers == ("AAPL", "IDX", "MSFT")  # explicit (draft, then source) first
    assert spans(item.mentions) == [
        ("AAPL", "alias", "title", 0, 5, "Apple"),
        ("MSFT", "alias", "title", 8, 17, "Microsoft"),
        ("MSFT", "alias", "body", 0, 9, "Microsoft"),
        ("MSFT", "exchange", "body", 16, 28, "NASDAQ: MSFT"),
        ("AAPL", "cashtag", "body", 35, 40, "$AAPL"),
        ("IDX", "feed", None, None, None, None),
    ]
    check_surfaces(item.title, item.body, item.mentions)


def test_normaliser_reads_only_the_start_of_the_body_for_tickers() -> None:
    n = Normaliser(TickerExtractor({"Apple": "AAPL", "Acme Corp": "ACME", "Globex": "GBX"}))
    lead = "z " * 990  # 1980 characters
    body = lead + "Globex rose a ,Applebee's menu and Acme Corp"
    assert TICKER_SCAN_CHARS == 2000 and body[1995:2000] == "Apple"  # the scan ends inside "Applebee's"
    item = n.build(Draft(source="wire", title="Menus", body=body))
    assert item.body == body
    assert item.tickers == ("GBX",)  # not AAPL (a cut word), not ACME (past the scanned part)
    assert spans(item.mentions) == [("GBX", "alias", "body", 1980, 1986, "Globex")]
    check_surfaces(item.title, item.body, item.mentions)
