"""Property-based tests (hypothesis): every parser of outside input either succeeds or fails with
its own clear error type; none raises anything else (which would be a 500, a traceback or an
aborted run). Bounded example counts keep the file within a few seconds.

The strategies lean on what found the probed defects: dates at the edges of the calendar with
odd offsets, deep nesting, non-string values where strings belong, binary junk.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from alerts.ruleset import RulesError, load_rules, parse_rules
from alerts.templating import Template, TemplateError
from connectors.json_api import item_to_draft
from connectors.normalise import Normaliser, Rejected, parse_time
from connectors.replay import row_to_draft
from connectors.rss import entries_to_drafts
from connectors.settings import JsonApiSource, RssSource, WebhookSource
from connectors.tickers import TickerExtractor
from connectors.webhook import parse_stories, story_to_draft
from monitor.app.config import ConfigError, load_settings
from monitor.core.records import NewsItem, RecordDecodeError, ScoredItem, TrendPoint, decode
from tests.connectors.replay_files import read_file

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)

# -- strategies ----------------------------------------------------------------------------------
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
edge_datetimes = st.one_of(
    st.datetimes(timezones=offsets),
    st.sampled_from([datetime(9999, 12, 31, 23, 59, 59), datetime(1, 1, 1)]).flatmap(
        lambda d: offsets.map(lambda tz: d.replace(tzinfo=tz))
    ),
)
time_strings = st.one_of(
    edge_datetimes.map(datetime.isoformat),
    st.sampled_from(
        [
            "9999-12-31T23:59:59-05:00",
            "0001-01-01T00:00:00+01:00",
            "1e300",
            "-1e20",
            "nan",
            "Fri, 31 Dec 9999 23:59:59 -0500",
            "",
            "2026-13-45",
            "now",
        ]
    ),
    st.text(max_size=40),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=60))
json_values = st.recursive(
    st.one_of(scalars, time_strings),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
STORY_KEYS = ["id", "title", "text", "body", "summary", "url", "published_at", "tickers", "language", "meta", "source"]
story_like = st.dictionaries(st.sampled_from(STORY_KEYS), st.one_of(json_values, time_strings), max_size=8)


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


NORMALISER = Normaliser(TickerExtractor({"Acme Corp": "ACME"}))


def normalise_or_reject(draft) -> None:
    try:
        NORMALISER.build(draft)
    except Rejected:
        pass


# -- feeds ---------------------------------------------------------------------------------------
RSS_ITEM = (
    "<item><title>{title}</title><link>{link}</link><pubDate>{date}</pubDate><guid>{guid}</guid>"
    "<description>{body}</description><category>{cat}</category></item>"
)
xml_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)


@FUZZ
@given(
    items=st.lists(
        st.fixed_dictionaries(
            {
                "title": xml_text,
                "link": xml_text,
                "date": st.one_of(time_strings, xml_text),
                "guid": xml_text,
                "body": xml_text,
                "cat": xml_text,
            }
        ),
        max_size=4,
    ),
    junk=st.binary(max_size=200),
    atom=st.booleans(),
)
def test_rss_and_atom_feeds_become_drafts_or_rejections(items, junk: bytes, atom: bool) -> None:
    if atom:
        entries = "".join(
            f"<entry><title>{i['title']}</title><link href='{i['link']}'/><updated>{i['date']}"
            f"</updated><id>{i['guid']}</id><summary>{i['body']}</summary></entry>"
            for i in items
        )
        doc = f"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'>{entries}</feed>".encode()
    else:
        doc = (
            "<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>"
            + "".join(RSS_ITEM.format(**i) for i in items)
            + "</channel></rss>"
        ).encode()
    source = RssSource(name="fuzz", url="https://feeds.example.com/rss")
    for body in (doc, doc + junk, junk):
        parsed = feedparser.parse(
            body, response_headers={"content-type": "application/xml", "content-location": source.url}
        )
        for draft in entries_to_drafts(parsed, source, source.url, NORMALISER.tickers):
            normalise_or_reject(draft)


@FUZZ
@given(
    item=json_values,
    fields=st.fixed_dictionaries(
        {
            "title": st.sampled_from(["title", "a.b", "items.*.t", "0", ""]),
            "published_at": st.sampled_from(["published_at", "t", "a.*", "x.0.y"]),
        }
    ),
)
def test_json_api_items_become_drafts_or_rejections(item, fields) -> None:
    source = JsonApiSource(name="fuzz", url="https://api.example.com/v1", fields=fields)
    normalise_or_reject(item_to_draft(item, source, source.url))
    normalise_or_reject(item_to_draft({"title": "Acme Corp beats", "published_at": item}, source, source.url))


@FUZZ
@given(data=st.one_of(story_like, st.lists(story_like, max_size=3), json_values))
def test_pushed_bodies_become_stories_or_a_validation_error(data) -> None:
    hook = WebhookSource(name="fuzz", secret={"value": "s"})
    try:
        stories = parse_stories(data)
    except (ValidationError, ValueError):
        return
    for story in stories:
        normalise_or_reject(story_to_draft(story, hook))


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"])
def test_pushed_dates_outside_utc_are_validation_errors(when: str) -> None:
    with pytest.raises(ValidationError, match="outside the range of UTC dates"):
        parse_stories({"title": "x", "published_at": when})


@FUZZ
@given(value=st.one_of(time_strings, edge_datetimes, scalars))
def test_parse_time_returns_utc_or_none(value) -> None:
    got = parse_time(value)
    assert got is None or got.utcoffset() == timedelta(0)


# -- replay files --------------------------------------------------------------------------------
@FUZZ
@given(rec=story_like)
def test_replay_rows_become_drafts_or_value_errors(rec) -> None:
    try:
        _, draft = row_to_draft(rec, "fuzz")
    except ValueError:
        return
    assert isinstance(draft.title, str)
    normalise_or_reject(draft)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.one_of(story_like.map(json.dumps), st.text(max_size=80), st.just(deep(5000))), max_size=6),
    csv_junk=st.text(max_size=200),
)
def test_replay_files_never_abort(tmp_path: Path, lines, csv_junk: str) -> None:
    jsonl = tmp_path / "f.jsonl"
    jsonl.write_bytes(("\n".join(line.replace("\n", " ") for line in lines) + "\n").encode("utf-8", "replace"))
    rows, bad = read_file(jsonl, "auto", "fuzz")
    assert all(b.reason.startswith(f"line {b.line}") for b in bad)
    csv = tmp_path / "f.csv"
    csv.write_bytes(("title,published_at\n" + csv_junk + "\n").encode("utf-8", "replace"))
    read_file(csv, "auto", "fuzz")


# -- records on the bus --------------------------------------------------------------------------
@FUZZ
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.just(deep(5000).encode()),
        story_like.map(lambda d: json.dumps({**d, "kind": "news", "schema_version": 1}).encode()),
    )
)
def test_record_decoding_raises_only_record_decode_error(payload: bytes) -> None:
    for model in (NewsItem, ScoredItem, TrendPoint):
        try:
            decode(model, payload)
        except RecordDecodeError:
            pass


# -- config and rules ----------------------------------------------------------------------------
config_values = st.recursive(
    st.one_of(scalars, st.sampled_from([".inf", "99999999999d", "-1s", "1h30m", "nan", "0.0.0.0:99999"])),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=10), c, max_size=3)),
    max_leaves=15,
)
SECTIONS = ["kafka", "http", "connectors", "alerts", "aggregator", "classifier", "retrain", "logging", "topics"]
config_docs = st.dictionaries(
    st.sampled_from(SECTIONS),
    st.one_of(
        config_values,
        st.dictionaries(
            st.sampled_from(
                [
                    "bootstrap",
                    "port",
                    "host",
                    "sources",
                    "receivers",
                    "windows",
                    "grace",
                    "interval_s",
                    "outbox",
                    "retry",
                    "auth",
                    "tokens",
                    "level",
                    "cron",
                    "tolerance",
                ]
            ),
            config_values,
            max_size=3,
        ),
    ),
    max_size=4,
)


@FUZZ
@given(doc=config_docs, raw=st.binary(max_size=120))
def test_config_loader_raises_only_config_error(tmp_path: Path, monkeypatch, doc, raw: bytes) -> None:
    for var in [v for v in os.environ if v.startswith("FINSENT_")]:
        monkeypatch.delenv(var)
    path = tmp_path / "c.yaml"
    for content in (json.dumps(doc, default=str).encode(), raw):
        path.write_bytes(content)
        try:
            settings_ = load_settings(path)
        except ConfigError:
            continue
        settings_.masked()


RULE_KEYS = [
    "name",
    "type",
    "key",
    "window",
    "metric",
    "value",
    "op",
    "for",
    "annotations",
    "receiver",
    "labels",
    "baseline_window",
    "tickers",
    "severity",
    "group_by",
    "repeat_interval",
    "min_count",
]
rule_docs = st.lists(
    st.one_of(
        st.dictionaries(
            st.sampled_from(RULE_KEYS),
            st.one_of(
                config_values,
                st.sampled_from(
                    ["threshold", "change", "spike", "story", "15m", "all", "negative_share", "{{ value | pct }}"]
                ),
                st.dictionaries(st.sampled_from(["summary", "x"]), st.text(max_size=30), max_size=2),
            ),
            max_size=9,
        ),
        config_values,
    ),
    max_size=4,
)


@FUZZ
@given(rules=st.one_of(rule_docs, config_values), raw=st.binary(max_size=120))
def test_rules_loader_raises_only_rules_error(tmp_path: Path, rules, raw: bytes) -> None:
    try:
        parse_rules(rules, receivers={"local"}, default_receiver="local")
    except RulesError:
        pass
    path = tmp_path / "rules.yaml"
    path.write_bytes(raw)
    try:
        load_rules(path)
    except RulesError:
        pass


@FUZZ
@given(
    text=st.text(max_size=80).flatmap(lambda t: st.sampled_from([t, "{{" + t + "}}", t + "{{ value | pct }}"])),
    variables=st.dictionaries(st.sampled_from(["value", "key", "threshold", "count"]), scalars, max_size=4),
)
def test_templates_parse_or_raise_template_error_and_render_never_raises(text: str, variables) -> None:
    try:
        template = Template.parse(text, frozenset({"value", "key", "threshold", "count"}))
    except TemplateError:
        return
    assert isinstance(template.render(variables, {"desk": "x"}), str)
