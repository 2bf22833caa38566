"""RSS/Atom polling against a local HTTP server, producing to the real Kafka broker."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone

import pytest

from connectors.identity import story_id
from monitor.app.components.ingest import make_poller
from tests.connectors.conftest import Resp, dead_letters_on, fixture_bytes, news_on, read_topic, sequence, static

pytestmark = pytest.mark.kafka
UTC = timezone.utc


def rss(name: str, url: str, **kw) -> dict:
    return {"type": "rss", "name": name, "url": url, "backoff_s": 0.01, "backoff_max_s": 0.05, **kw}


def settings_with(kafka_settings, *sources: dict, **connectors):
    return kafka_settings(connectors={"demo": False, "sources": list(sources), **connectors})


def poller_for(core, settings, name: str):
    source = next(s for s in settings.connectors.sources if s.name == name)
    return make_poller(core, source)


def sample(ctx, name: str, **labels) -> float:
    return ctx.registry.get_sample_value(name, labels) or 0.0


def test_rss2_and_atom_to_kafka(kafka_settings, kafka_bootstrap, feed_server, ingest_factory) -> None:
    feed_server.routes["/rss.xml"] = static(fixture_bytes("rss2.xml"))
    feed_server.routes["/atom.xml"] = static(fixture_bytes("atom.xml"), "application/atom+xml")
    feed_server.routes["/latin1.xml"] = static(fixture_bytes("latin1.xml"), "application/rss+xml")
    settings = settings_with(
        kafka_settings,
        rss("markets", feed_server.url("/rss.xml")),
        rss("atom", feed_server.url("/atom.xml")),
        rss("latin", feed_server.url("/latin1.xml")),
        aliases={"Initech": "INTC.X"},
    )
    core, ctx = ingest_factory(settings)
    r1 = poller_for(core, settings, "markets").poll_once()
    r2 = poller_for(core, settings, "atom").poll_once()
    r3 = poller_for(core, settings, "latin").poll_once()
    assert (r1.read, r1.produced, r1.duplicates, r1.rejected) == (5, 3, 1, 1)  # dup GUID; no title
    assert (r2.produced, r3.produced) == (2, 1)

    items = {i.id: i for i in news_on(kafka_bootstrap, settings.topics.raw)}
    acme_id = story_id(source="markets", title="", guid="acme-beats-2026")
    globex_id = story_id(source="markets", title="", guid="https://markets.example.com/news/globex-jobs")
    initech_id = story_id(source="markets", title="", url="https://markets.example.com/news/initech-agm")
    assert set(items) >= {acme_id, globex_id, initech_id}
    assert len(items) == 6

    acme = items[acme_id]
    assert acme.title == "Acme Corp $ACME beats estimates, raises full-year outlook"
    assert acme.body == "Acme beat on revenue & earnings. Shares rose 4%."  # HTML and script stripped
    assert acme.url == feed_server.url("/news/acme-beats?utm_source=rss&utm_medium=feed")  # resolved
    assert acme.published_at == datetime(2026, 11, 20, 12, 5, tzinfo=UTC)  # +0200 -> UTC
    assert acme.tickers == ("ACME",) and acme.language == "en" and acme.novelty == 1.0
    assert items[globex_id].tickers == ("GBX",)
    initech = items[initech_id]
    assert initech.title == "Initech shares unchanged after annual meeting"
    assert initech.meta["published_at"] == "missing" and initech.tickers == ("INTC.X",)

    by_title = {i.title: i for i in items.values()}
    umbrella = by_title["Umbrella Corp recalls vaccine batch"]
    assert umbrella.published_at == datetime(2026, 11, 20, 14, 15, tzinfo=UTC)
    assert umbrella.tickers == ("UMB",)
    stark = by_title["Stark Industries wins defence contract"]
    assert stark.url == feed_server.url("/2026/stark-contract") and stark.tickers == ("STRK",)
    assert stark.published_at == datetime(2026, 11, 20, 13, 0, tzinfo=UTC)  # published, not updated
    sg = next(i for i in items.values() if i.source == "latin")
    assert sg.title.startswith("Société Générale annonce un bénéfice en hausse de 12€")
    assert sg.language == "fr"
    assert sg.tickers == ("GLE",)  # the default alias table knows Société Générale (its key: the ticker)

    # Partition key: primary ticker, else source.
    keys = sorted(rec.key.decode() for rec in read_topic(kafka_bootstrap, settings.topics.raw))
    assert keys == sorted(["ACME", "GBX", "INTC.X", "UMB", "STRK", "GLE"])

    dead = dead_letters_on(kafka_bootstrap, settings.topics.dlq)
    assert [d.reason for d in dead] == ["markets: missing title"]
    assert b"untitled-1" in dead[0].payload

    assert sample(ctx, "finsent_ingest_fetched_total", source="markets") == 5
    assert sample(ctx, "finsent_ingest_new_total", source="markets") == 3
    assert sample(ctx, "finsent_ingest_duplicate_total", source="markets") == 1
    assert sample(ctx, "finsent_ingest_rejected_total", source="markets") == 1
    assert sample(ctx, "finsent_ingest_fetch_seconds_count", source="markets") == 1
    assert sample(ctx, "finsent_ingest_delay_seconds_count", source="markets") == 2  # the dated ones


def test_conditional_get_gzip_and_restart_without_reemitting(
    kafka_settings, kafka_bootstrap, feed_server, ingest_factory
) -> None:
    body = fixture_bytes("feed_a.xml")
    etag = '"v1"'

    def handler(req):
        if req.headers.get("if-none-match") == etag:
            return Resp(304, b"", {"ETag": etag})
        if "gzip" in req.headers.get("accept-encoding", ""):
            return Resp(
                200,
                gzip.compress(body),
                {"Content-Encoding": "gzip", "ETag": etag, "Content-Type": "application/rss+xml"},
            )
        return Resp(200, body, {"ETag": etag})

    feed_server.routes["/a.xml"] = handler
    feed_server.routes["/a-no-etag.xml"] = static(body)
    settings = settings_with(
        kafka_settings, rss("wire-a", feed_server.url("/a.xml")), rss("wire-a2", feed_server.url("/a-no-etag.xml"))
    )
    core, ctx = ingest_factory(settings)
    poller = poller_for(core, settings, "wire-a")
    assert poller.poll_once().produced == 2
    assert poller.poll_once().produced == 0
    assert feed_server.hits["/a.xml"][1].headers["if-none-match"] == etag
    assert sample(ctx, "finsent_ingest_not_modified_total", source="wire-a") == 1
    core.close()

    # A restart: new objects, same home. The validators survive (304 again) and a feed without
    # validators is fetched in full but its stories are recognised as already produced.
    core2, ctx2 = ingest_factory(settings)
    assert poller_for(core2, settings, "wire-a").poll_once().produced == 0
    assert feed_server.hits["/a.xml"][2].headers["if-none-match"] == etag
    again = poller_for(core2, settings, "wire-a2").poll_once()
    assert (again.read, again.produced, again.duplicates) == (2, 0, 2)
    assert len(news_on(kafka_bootstrap, settings.topics.raw)) == 2


def test_500_then_recovery_and_broken_feeds_are_counted(
    kafka_settings, kafka_bootstrap, feed_server, ingest_factory
) -> None:
    good = fixture_bytes("feed_b.xml")
    feed_server.routes["/flaky.xml"] = sequence(
        Resp(500, b"oops"), Resp(503, b"busy", {"Retry-After": "0"}), Resp(200, good)
    )
    feed_server.routes["/down.xml"] = sequence(Resp(500, b"down"))
    feed_server.routes["/slow.xml"] = lambda req: Resp(200, good, delay_s=1.0)
    feed_server.routes["/malformed.xml"] = static(fixture_bytes("malformed.xml"))
    feed_server.routes["/garbage.xml"] = static(b"\x00\x01 this is not xml at all <<<", "text/html")
    feed_server.routes["/huge.xml"] = lambda req: Resp(200, (b"<" * 65536 for _ in range(320)))  # 20 MiB chunked
    feed_server.routes["/huge-declared.xml"] = lambda req: Resp(200, b"x" * 2_000_000)
    feed_server.routes["/redirect"] = lambda req: Resp(302, b"", {"Location": "/redirect"})
    feed_server.routes["/gone.xml"] = lambda req: Resp(404, b"gone")
    feed_server.routes["/dates.xml"] = static(fixture_bytes("bad_dates.xml"))
    settings = settings_with(
        kafka_settings,
        rss("flaky", feed_server.url("/flaky.xml"), retries=3),
        rss("down", feed_server.url("/down.xml"), retries=2),
        rss("slow", feed_server.url("/slow.xml"), timeout_s=0.2, retries=0),
        rss("malformed", feed_server.url("/malformed.xml")),
        rss("garbage", feed_server.url("/garbage.xml")),
        rss("huge", feed_server.url("/huge.xml"), max_bytes=1_000_000),
        rss("huge-declared", feed_server.url("/huge-declared.xml"), max_bytes=1_000_000),
        rss("loop", feed_server.url("/redirect"), max_redirects=3),
        rss("gone", feed_server.url("/gone.xml")),
        rss("dates", feed_server.url("/dates.xml")),
    )
    core, ctx = ingest_factory(settings)
    results = {s.name: poller_for(core, settings, s.name).poll_once() for s in settings.connectors.sources}

    assert results["flaky"].produced == 3 and feed_server.count("/flaky.xml") == 3
    assert feed_server.count("/down.xml") == 3  # first try + 2 retries
    assert feed_server.count("/gone.xml") == 1  # 4xx is not retried
    assert results["malformed"].produced == 2  # bozo, but entries kept
    assert results["dates"].produced == 4
    for name in ("down", "slow", "garbage", "huge", "huge-declared", "loop", "gone"):
        assert results[name].produced == 0, name
    errors = {
        (name, kind): sample(ctx, "finsent_ingest_errors_total", source=name, kind=kind)
        for name, kind in [
            ("flaky", "http_5xx"),
            ("down", "http_5xx"),
            ("slow", "timeout"),
            ("malformed", "malformed"),
            ("garbage", "malformed"),
            ("huge", "too_large"),
            ("huge-declared", "too_large"),
            ("loop", "redirects"),
            ("gone", "http_4xx"),
        ]
    }
    assert errors == {
        ("flaky", "http_5xx"): 0,
        ("down", "http_5xx"): 1,
        ("slow", "timeout"): 1,
        ("malformed", "malformed"): 1,
        ("garbage", "malformed"): 1,
        ("huge", "too_large"): 1,
        ("huge-declared", "too_large"): 1,
        ("loop", "redirects"): 1,
        ("gone", "http_4xx"): 1,
    }

    items = news_on(kafka_bootstrap, settings.topics.raw)
    assert len(items) == 3 + 2 + 4
    dated = {i.title: i for i in items if i.source == "dates"}
    assert dated["Vandelay Industries expands latex imports"].meta["published_at"] == "missing"
    assert dated["Wonka Industries unveils new chocolate factory"].meta["published_at"] == "missing"
    assert dated["Cyberdyne Systems announces robotics partnership"].meta["published_at"] == "future-clamped"
    assert dated["Tyrell Corp guidance in line with expectations"].published_at == datetime(
        2026, 11, 20, 4, 30, tzinfo=UTC
    )


def test_duplicates_across_two_feeds(kafka_settings, kafka_bootstrap, feed_server, ingest_factory) -> None:
    feed_server.routes["/a.xml"] = static(fixture_bytes("feed_a.xml"))
    feed_server.routes["/b.xml"] = static(fixture_bytes("feed_b.xml"))
    settings = settings_with(
        kafka_settings, rss("wire-a", feed_server.url("/a.xml")), rss("wire-b", feed_server.url("/b.xml"))
    )
    core, ctx = ingest_factory(settings)
    a = poller_for(core, settings, "wire-a").poll_once()
    b = poller_for(core, settings, "wire-b").poll_once()
    assert (a.produced, a.duplicates) == (2, 0)
    # Oscorp: same canonical URL (tracking param, www and fragment differ) -> dropped.
    # Massive Dynamic: "UPDATE 1-... bln ... - Reuters" copy -> emitted as a near-duplicate.
    assert (b.produced, b.duplicates, b.new, b.near_duplicates) == (2, 1, 1, 1)
    items = news_on(kafka_bootstrap, settings.topics.raw)
    assert len(items) == 4
    first = next(i for i in items if i.source == "wire-a" and i.title.startswith("Massive"))
    copy = next(i for i in items if i.source == "wire-b" and "Massive" in i.title)
    assert copy.novelty == 0.5 and copy.meta["near_duplicate_of"] == first.id
    assert sample(ctx, "finsent_ingest_near_duplicate_total", source="wire-b") == 1
    assert sample(ctx, "finsent_ingest_duplicate_total", source="wire-b") == 1
