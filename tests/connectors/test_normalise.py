"""Unit tests on plain functions: text clean-up, ids, tickers, time parsing, near-duplicates."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connectors.identity import canonical_url, resolve_url, story_id, title_key, title_tokens
from connectors.ingest_state import IngestState
from connectors.normalise import Draft, Normaliser, Rejected, parse_time, sane_published
from connectors.text import clean_text, guess_language, html_to_text
from connectors.tickers import TickerExtractor, clean_ticker

UTC = timezone.utc


def test_clean_text_nfkc_and_whitespace() -> None:
    assert clean_text("  Ｆｕｌｌ\u00a0width\u200b  and\n\ttabs ") == "Full width and tabs"
    assert clean_text("ﬁnance ½") == "finance 1⁄2"
    assert clean_text(None) == ""


def test_html_to_text_strips_tags_scripts_and_entities() -> None:
    assert html_to_text("<p>Acme <b>beat</b> &amp; rose</p><script>x()</script><p>4%</p>") == "Acme beat & rose 4%"
    assert html_to_text("P/E &lt; 5 &#8212; cheap") == "P/E < 5 — cheap"
    assert html_to_text("<style>p{}</style>plain") == "plain"


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Apple shares rise after the quarter beats estimates", "en"),
        ("Die Aktie der Deutschen Bank ist mit dem Gewinn nicht gestiegen", "de"),
        ("La banque annonce un bénéfice en hausse pour le trimestre dans la zone euro", "fr"),
        ("Las acciones de la empresa suben por el aumento de las ventas", "es"),
        ("トヨタ自動車の株価が上昇", "ja"),
        ("Акции Сбербанка выросли", "ru"),
        ("AAPL 3%", "en"),
    ],
)
def test_guess_language(text: str, lang: str) -> None:
    assert guess_language(text, default="en") == lang


def test_canonical_url() -> None:
    assert canonical_url("HTTPS://WWW.Example.COM:443/a/b?utm_source=x&b=2&a=1&fbclid=z#frag") == (
        "https://example.com/a/b?a=1&b=2"
    )
    assert canonical_url("http://example.com") == "http://example.com/"
    assert canonical_url("http://example.com:8080/x?ref=home") == "http://example.com:8080/x"
    assert (
        resolve_url("/news/a?x=1", "https://feeds.example.com/rss/markets.xml")
        == "https://feeds.example.com/news/a?x=1"
    )
    assert resolve_url("javascript:alert(1)", "https://x.example.com/") is None
    assert resolve_url("  ", "https://x.example.com/") is None


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example.com/a/1?utm_source=x&b=2&a=1&a=",  # fast path: plain pairs
        "https://news.example.com/a?z=1&y&a-b=2&a=1&fbclid=3",  # a bare name, keys that prefix each other
        "https://news.example.com/a?q=%7Efoo&b=c+d",  # escapes and '+': the general path re-encodes them
        "https://news.example.com/a?name=caf%C3%A9&x=1;y=2",
        "https://news.example.com/?#top",
        "https://news.example.com.:443/x?A=1&a=0",
    ],
)
def test_canonical_url_fast_path_matches_the_general_one(url: str) -> None:
    """Ids are derived from canonical URLs, so the fast path must never change one."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    from connectors.identity import _is_tracking

    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    netloc = host if parts.port in (None, 443, 80) else f"{host}:{parts.port}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k))
    assert canonical_url(url) == urlunsplit((parts.scheme, netloc, parts.path or "/", urlencode(query), ""))


def test_story_id_prefers_guid_then_url_then_hash() -> None:
    when = datetime(2026, 11, 20, 10, tzinfo=UTC)
    by_url_guid = story_id(source="a", title="T", guid="https://Example.com/x?utm_medium=rss")
    assert by_url_guid == story_id(source="b", title="other", url="https://example.com/x#top")
    assert by_url_guid.startswith("url:")
    # A non-URL GUID is only unique within its source.
    assert story_id(source="a", title="T", guid="123") != story_id(source="b", title="T", guid="123")
    assert story_id(source="a", title="T", guid="123").startswith("guid:")
    h = story_id(source="a", title="Acme rises", published_at=when)
    assert h.startswith("hash:")
    assert h == story_id(source="a", title="ACME   rises!", published_at=when)  # normalised title
    assert h != story_id(source="a", title="Acme rises", published_at=when + timedelta(minutes=1))


def test_title_key_removes_wire_noise() -> None:
    base = title_key("Acme to buy Globex for $2.5 billion")
    assert base == "acme to buy globex for $2.5 billion"
    for variant in (
        "UPDATE 1-Acme to buy Globex for $2.5 billion",
        "REFILE-UPDATE 2-Acme to buy Globex for $2.5 billion",
        "BREAKING: Acme to buy Globex for $2.5 billion!",
        "Acme to buy Globex for $2.5 billion - Reuters",
        "acme TO BUY globex, for $2.5 billion",
    ):
        assert title_key(variant) == base, variant
    assert title_tokens(title_key("Acme to buy Globex for $2.5 bln")) == title_tokens(base)


def test_tickers_cashtags_exchanges_and_aliases() -> None:
    finder = TickerExtractor({"Apple Inc.": "aapl", "Microsoft": "MSFT"})
    text = "Apple Inc. and $GOOGL rise; IBM (NYSE: IBM) and Nasdaq:NVDA gain, $5 coupon, BRK.B via $BRK.B"
    assert finder.find(text) == ["AAPL", "GOOGL", "IBM", "NVDA", "BRK.B"]
    assert finder.mentions(["nasdaq:tsla", "$ibm", "not a ticker!"], text, "Microsoft too")[0] == (
        "TSLA",
        "IBM",
        "AAPL",
        "GOOGL",
        "NVDA",
        "BRK.B",
        "MSFT",
    )
    assert finder.find("apple inc. pie, microsoftware") == []  # aliases are whole-word, case-sensitive
    assert clean_ticker("NYSE:ibm") == "IBM" and clean_ticker("toolongname") is None
    assert TickerExtractor(max_tickers=2).mentions([], "$A $B $C")[0] == ("A", "B")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20T10:00:00Z", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20T12:00:00+02:00", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20 10:00:00", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("Fri, 20 Nov 2026 05:00:00 -0500", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        (1795168800, datetime(2026, 11, 20, 10, tzinfo=UTC)),
        (1795168800000, datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("1795168800", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_time(value, expected) -> None:
    assert parse_time(value) == expected


def test_sane_published() -> None:
    now = datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert sane_published(None, now) == (now, "missing")
    assert sane_published(now + timedelta(days=3), now) == (now, "future-clamped")
    assert sane_published(now - timedelta(hours=1), now) == (now - timedelta(hours=1), None)


def test_normaliser_builds_clean_items_and_rejects_bad_ones() -> None:
    n = Normaliser(TickerExtractor({"Acme Corp": "ACME"}), source_tickers={"wire": ["IDX"]})
    fetched = datetime(2026, 11, 20, 12, tzinfo=UTC)
    item = n.build(
        Draft(
            source="wire",
            title=" <b>Acme Corp</b>  beats ",
            body="<p>Acme Corp beats</p>",
            html=True,
            url="https://x.example.com/a",
            published_at=None,
            language="en-GB",
        ),
        fetched,
    )
    assert item.title == "Acme Corp beats" and item.body == ""  # a body equal to the title is dropped
    assert item.tickers == ("IDX", "ACME")
    assert [(m.ticker, m.how, m.part, m.start, m.end, m.surface) for m in item.mentions] == [
        ("ACME", "alias", "title", 0, 9, "Acme Corp"),
        ("IDX", "feed", None, None, None, None),
    ]
    assert item.published_at == fetched and item.meta == {"published_at": "missing"}
    assert item.language == "en" and item.novelty == 1.0
    assert item.id == story_id(source="wire", title="Acme Corp beats", url="https://x.example.com/a")
    with pytest.raises(Rejected, match="missing title"):
        n.build(Draft(source="wire", title="  <p> </p> ", html=True))
    with pytest.raises(Rejected, match="missing title"):
        n.build(Draft(source="wire", title=None))


# -- near-duplicates and the state store ----------------------------------------------------------
class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_state_exact_and_near_duplicates_with_novelty(tmp_path) -> None:
    clock = Clock()
    st = IngestState(tmp_path / "s.db", ttl_s=3600, threshold=0.8, clock=clock)
    v1 = st.reserve("id1", "Massive Dynamic to acquire rival lab for $2 billion in cash")
    assert (v1.status, v1.novelty) == ("new", 1.0)
    # Same id again while in flight: a duplicate even before the ack.
    assert st.reserve("id1", "whatever").status == "duplicate"
    v2 = st.reserve("id2", "UPDATE 1-Massive Dynamic to acquire rival lab for $2 bln in cash - Reuters")
    assert (v2.status, v2.novelty, v2.duplicate_of) == ("near_duplicate", 0.5, "id1")
    v3 = st.reserve("id3", "Massive Dynamic agrees to acquire rival lab for $2 billion in cash")  # fuzzy
    assert (v3.status, round(v3.novelty, 3)) == ("near_duplicate", 0.333)
    v4 = st.reserve("id4", "Soylent reports record sales")
    assert v4.status == "new"
    st.commit([v1.reservation, v2.reservation, v3.reservation])
    st.rollback([v4.reservation])  # not acknowledged: forgotten, may be sent again
    st.close()

    reopened = IngestState(tmp_path / "s.db", ttl_s=3600, threshold=0.8, clock=clock)
    assert reopened.reserve("id1", "x").status == "duplicate"
    again = reopened.reserve("id5", "REFILE-Massive Dynamic to acquire rival lab for $2 billion in cash")
    assert (again.status, again.novelty) == ("near_duplicate", 0.25)
    assert reopened.reserve("id4", "Soylent reports record sales").status == "new"
    clock.t += 3601  # past the TTL: everything forgotten
    assert reopened.reserve("id1", "Massive Dynamic to acquire rival lab for $2 billion in cash").status == "new"


def test_state_min_novelty_drops_repeats_and_scopes_are_separate(tmp_path) -> None:
    st = IngestState(tmp_path / "s.db", min_novelty=0.5)
    a = st.reserve("a", "Acme shares jump on earnings beat today")
    b = st.reserve("b", "UPDATE 1-Acme shares jump on earnings beat today")
    c = st.reserve("c", "REFILE-Acme shares jump on earnings beat today")
    assert [a.status, b.status, c.status] == ["new", "near_duplicate", "duplicate"]
    assert st.seen("c")  # dropped copies are remembered at once (nothing to acknowledge)
    other = st.reserve("d", "Acme shares jump on earnings beat today", scope="loop:demo@1")
    assert other.status == "new"
    st.commit([a.reservation, b.reservation, other.reservation])
    st.forget_scope_prefix("loop:demo@")
    assert not st.seen("d") and st.seen("a")
    with pytest.raises(ValueError):
        st.forget_scope_prefix("")


def test_state_http_validators_persist(tmp_path) -> None:
    st = IngestState(tmp_path / "s.db")
    assert st.http_validators("s", "http://x/") == (None, None)
    st.save_http_validators("s", "http://x/", '"v1"', "Fri, 20 Nov 2026 10:00:00 GMT")
    st.close()
    assert IngestState(tmp_path / "s.db").http_validators("s", "http://x/") == ('"v1"', "Fri, 20 Nov 2026 10:00:00 GMT")


def test_state_memory_is_bounded_by_max_entries(tmp_path) -> None:
    """A sustained rate cannot grow the dedup memory past ``max_entries``: the oldest ids and title
    clusters are forgotten before their TTL (at the next purge), the recent ones are kept, and a
    restart loads no more than the bound."""
    clock = Clock()
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")

    def title(i: int) -> str:
        return f"Issuer {i} reports {words[i % 10]} results for quarter {i * 7} with {words[(i * 3) % 10]} outlook"

    st = IngestState(tmp_path / "s.db", ttl_s=3600, threshold=0.8, clock=clock, max_entries=50)
    for i in range(150):
        v = st.reserve(f"id{i}", title(i))
        assert v.status == "new", (i, v)
        st.commit([v.reservation])
        clock.t += 1
    clock.t += 61
    st.reserve("probe", "A headline about nothing that anybody has written before today")  # the purge runs
    assert len(st._ids) <= 50 and len(st._clusters) <= 51 and st.evicted >= 100
    assert st.reserve("id149", title(149)).status == "duplicate"  # recent: still remembered
    assert st.reserve("id0", title(0)).status == "new"  # the oldest: forgotten before its TTL
    st.close()
    reopened = IngestState(tmp_path / "s.db", ttl_s=3600, threshold=0.8, clock=clock, max_entries=50)
    assert len(reopened._ids) <= 50 and reopened.seen("id149") and not reopened.seen("id1")


def test_state_bound_holds_between_purges_at_any_rate(tmp_path) -> None:
    """Thousands of stories within one second (a burst, a catch-up): the bound is enforced as they
    are committed, not only at the minutely purge, so memory never overshoots it by more than 1 %."""
    clock = Clock()
    st = IngestState(tmp_path / "s.db", ttl_s=3600, threshold=0.8, clock=clock, max_entries=1000)
    peak = 0
    for i in range(5000):
        v = st.reserve(f"id{i}", f"Issuer{i} posts result number {i} with outlook code {i * 7}")
        assert v.status == "new", (i, v)
        st.commit([v.reservation])
        clock.t += 0.0001  # the whole run lasts half a second: no purge
        peak = max(peak, len(st._ids), len(st._clusters))
    assert peak <= 1010 and st.evicted >= 7900  # 4,000 ids and about as many clusters
    assert st.reserve("id4999", "Issuer4999 posts result number 4999 with outlook code 34993").status == "duplicate"
    assert st.reserve("id0", "Issuer0 posts result number 0 with outlook code 0").status == "new"
