"""Rule files: validation messages name the rule and the field; durations; templates; config."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from alerts.ruleset import ChangeRule, RulesError, SpikeRule, StoryRule, ThresholdRule, load_rules, parse_rules
from alerts.settings import PACKAGED_RULES
from alerts.templating import Template, TemplateError
from monitor.app.config import ConfigError
from monitor.core.durations import format_duration, parse_duration
from tests.alerts.helpers import OIL


def problems_of(*specs: dict) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_rules({"rules": list(specs)})
    return info.value.problems


def test_invalid_duration_names_rule_and_field():
    assert problems_of({**OIL, "for": "5x"}) == [
        "rule 'oil-gloom': for: invalid duration '5x' (use e.g. 30s, 5m, 1h30m, 2d)"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"metric": "sentiment"}, "rule 'oil-gloom': metric: Input should be"),
        ({"op": "=="}, "rule 'oil-gloom': op: Input should be"),
        ({"value": "high"}, "rule 'oil-gloom': value: Input should be a valid number"),
        ({"min_count": -1}, "rule 'oil-gloom': min_count: Input should be greater than or equal to 0"),
        ({"repeat_interval": "soon"}, "rule 'oil-gloom': repeat_interval: invalid duration 'soon'"),
        ({"colour": "red"}, "rule 'oil-gloom': colour: unknown field"),
        ({"type": "bogus"}, "rule 'oil-gloom': type: unknown rule type 'bogus'"),
        ({"labels": {"alertname": "x"}}, "rule 'oil-gloom': labels: label 'alertname' is set by finsent"),
        (
            {"annotations": {"summary": "{{ nope }}"}},
            "rule 'oil-gloom': annotations.summary: unknown template variable 'nope'",
        ),
        ({"annotations": {"summary": "{{ value | shout }}"}}, "rule 'oil-gloom': annotations.summary: unknown filter"),
        ({"name": "bad name!"}, "rule 'bad name!': name: invalid rule name"),
    ],
)
def test_field_errors(change, expected):
    found = problems_of({**OIL, **change})
    assert len(found) == 1
    assert found[0].startswith(expected), found


def test_missing_fields_and_several_rules_reported_together():
    found = problems_of(
        {"name": "a", "type": "threshold", "key": "all"},
        {"name": "b", "type": "change", "key": "all", "window": "5m", "baseline_window": "5m", "value": -0.4},
        {"name": "c"},
    )
    assert "rule 'a': window: Field required" in found
    assert "rule 'a': metric: Field required" in found
    assert "rule 'a': value: Field required" in found
    assert any(p.startswith("rule 'b': ") and "baseline_window must differ from window" in p for p in found)
    assert "rule 'c': type: missing (threshold, change, spike or story)" in found


def test_story_rule_rejects_for_and_duplicate_names():
    found = problems_of({"name": "s", "type": "story", "for": "5m"}, {**OIL}, {**OIL})
    assert found == [
        "rule 's': for: a story rule fires on one story; 'for' must be 0",
        "rule 'oil-gloom': name: duplicate rule name",
    ]


def test_each_rule_type_parses_with_defaults():
    rs = parse_rules(
        {
            "rules": [
                OIL,
                {
                    "name": "drop",
                    "type": "change",
                    "key": "ticker:*",
                    "window": "5m",
                    "baseline_window": "1h",
                    "value": -0.4,
                },
                {"name": "spike", "type": "spike", "key": "ticker:*", "window": "15m"},
                {"name": "bad", "type": "story", "tickers": ["aapl"]},
            ]
        }
    )
    oil, drop, spike, bad = rs.rules
    assert isinstance(oil, ThresholdRule) and oil.for_ == timedelta(minutes=5) and not oil.is_pattern
    assert isinstance(drop, ChangeRule) and drop.metric == "ewma" and drop.op == "<" and drop.windows == ("5m", "1h")
    assert isinstance(spike, SpikeRule) and spike.value == 3.0 and spike.op == ">" and spike.is_pattern
    assert isinstance(bad, StoryRule) and bad.tickers == ("AAPL",) and bad.value == -0.8 and not bad.send_resolved
    assert oil.repeat_interval == timedelta(hours=4) and oil.group_by == ("alertname",)


def test_packaged_example_rules_are_valid():
    rs = load_rules(PACKAGED_RULES)
    assert {r.type for r in rs.rules} == {"threshold", "change", "spike", "story"}


def test_unreadable_and_non_yaml_files(tmp_path: Path):
    with pytest.raises(RulesError, match="cannot read file"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(bad)
    other = tmp_path / "other.yaml"
    other.write_text("alerts: []\n")
    with pytest.raises(RulesError, match="unknown section"):
        load_rules(other)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        (0, 0),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("2d", 172800),
        (90, 90),
        ("1.5h", 5400),
        ("250ms", 0.25),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["5x", "", "m5", "-5m", "5m3", True])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration_round_trips():
    for td in (timedelta(0), timedelta(minutes=90), timedelta(days=1, seconds=1), timedelta(seconds=0.5)):
        assert parse_duration(format_duration(td)) == td


def test_templates_are_restricted_and_format_values():
    t = Template.parse(
        "{{ key }}: {{ value | pct }} ({{ count }}), {{ labels.team | upper }} {{value}}",
        frozenset({"key", "value", "count"}),
    )
    assert (
        t.render({"key": "topic:Energy | Oil", "value": 0.7333, "count": 25}, {"team": "oil"})
        == "topic:Energy | Oil: 73.3% (25), OIL 0.733"
    )
    with pytest.raises(TemplateError, match="unknown template variable '__class__'"):
        Template.parse("{{ __class__ }}", frozenset({"key"}))
    with pytest.raises(TemplateError, match="only labels"):
        Template.parse("{{ value.real }}", frozenset({"value"}))
    with pytest.raises(TemplateError, match="malformed"):
        Template.parse("{{ value ", frozenset({"value"}))
    # Python format syntax is inert text, never evaluated
    assert Template.parse("{0.__class__} {key}").render({"key": "x"}) == "{0.__class__} {key}"


def test_settings_problems_name_the_rule_and_field(make_settings, tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - name: oil-gloom\n    type: threshold\n    key: all\n    window: 15m\n"
        "    metric: negative_share\n    value: 0.6\n    for: 5x\n    receiver: pager\n"
    )
    settings = make_settings(alerts={"rules_file": str(path)})
    found = settings.alerts.problems()
    assert found == [
        (f"alerts.rules_file ({path}): rule 'oil-gloom': for: invalid duration '5x' (use e.g. 30s, 5m, 1h30m, 2d)"),
        (f"alerts.rules_file ({path}): rule 'oil-gloom': receiver: unknown receiver 'pager' (configured: local)"),
    ]
    path.write_text(path.read_text().replace("5x", "5m"))
    assert settings.alerts.problems() == [
        f"alerts.rules_file ({path}): rule 'oil-gloom': receiver: unknown receiver 'pager' (configured: local)"
    ]
    assert make_settings().alerts.problems() == []


def test_receiver_settings_validation(make_settings):
    with pytest.raises(ConfigError, match="alerts.receivers.hook: Value error, a webhook receiver needs url"):
        make_settings(alerts={"receivers": {"hook": {"type": "webhook"}}})
    with pytest.raises(ConfigError, match="expected an http"):
        make_settings(alerts={"receivers": {"hook": {"type": "webhook", "url": "ftp://x"}}})
    s = make_settings(alerts={"receivers": {"hook": {"type": "webhook", "url": "http://x", "secret": "abc"}}})
    assert s.masked()["alerts"]["receivers"]["hook"]["secret"] == "**********"
    assert s.alerts.receivers["hook"].secret.get_secret_value() == "abc"
