"""Configuration that cannot be right is refused at once, with one clear line each and no traceback
(issue #26, items 15, 16, 20-23): what ``finsent check-config`` and ``finsent run`` tell a user."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from alerts.ruleset import RulesError, load_rules
from monitor.app.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in [v for v in os.environ if v.startswith("FINSENT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "home"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def check_config(path: Path, capsys) -> tuple[int, str]:
    """``finsent check-config FILE``: its exit code and stderr (a traceback would fail the test)."""
    code = main(["check-config", str(path)])
    return code, capsys.readouterr().err


def finsent(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    return subprocess.run(
        [sys.executable, "-m", "monitor.app.cli", *args],
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- 15: a FINSENT_* variable that is not JSON -------------------------------------------------
@pytest.mark.parametrize(
    "name, value",
    [
        ("FINSENT_HTTP", "notjson"),
        ("FINSENT_CONNECTORS__SOURCES", '[{"type": "rss", "name": "x"'),
        ("FINSENT_HTTP__AUTH__TOKENS", '[{"name": "ci", "value": "tok-9f8e7d6c5b4a39281706"'),
    ],
)
def test_a_bad_finsent_json_variable_is_one_line_naming_it(tmp_path, capsys, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    code, err = check_config(write(tmp_path / "c.yaml", "{}\n"), capsys)
    assert code == 2, err
    assert f"{name}: not valid JSON" in err and "Traceback" not in err and "SettingsError" not in err
    assert value not in err and "9f8e7d6c5b4a" not in err  # a token's value is never echoed
    with pytest.raises(SystemExit) as stop:  # every command that loads settings says the same
        main(["run", "--config", str(tmp_path / "c.yaml")])
    assert stop.value.code == 2 and f"{name}: not valid JSON" in capsys.readouterr().err


def test_a_bad_finsent_json_variable_through_the_real_cli_has_no_traceback(tmp_path):
    got = finsent(
        "check-config",
        str(write(tmp_path / "c.yaml", "{}\n")),
        env={"FINSENT_HTTP": "notjson", "FINSENT_HOME": str(tmp_path)},
        timeout=120,
    )
    assert got.returncode == 2, got.stderr
    assert "FINSENT_HTTP: not valid JSON" in got.stderr and "Traceback" not in got.stderr


# -- 16: the HTTP port is taken ----------------------------------------------------------------
def test_port_already_in_use_is_one_clear_line_and_no_traceback(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = finsent("run", env={"FINSENT_HOME": str(tmp_path / "home"), "FINSENT_HTTP__PORT": str(port)})
    assert got.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use; set http.port" in got.stderr, got.stderr[-3000:]
    assert "Traceback" not in got.stderr and "RuntimeError" not in got.stderr


# -- 20: a key written twice -------------------------------------------------------------------
def test_duplicate_yaml_keys_are_refused_naming_both_lines(tmp_path, capsys):
    config = write(tmp_path / "c.yaml", "kafka:\n  partitions: 3\n  client_id: x\n  partitions: 6\n")
    code, err = check_config(config, capsys)
    assert code == 2 and "duplicate key 'partitions' on line 4 (first on line 2)" in err, err

    rules = write(tmp_path / "rules.yaml", "rules:\n  - name: a\n    type: story\n    value: -0.5\n    value: -0.9\n")
    with pytest.raises(RulesError, match=r"duplicate key 'value' on line 5 \(first on line 4\)"):
        load_rules(rules)
    code, err = check_config(write(tmp_path / "c2.yaml", f"alerts:\n  rules_file: {rules}\n"), capsys)
    assert code == 2 and "duplicate key 'value' on line 5 (first on line 4)" in err, err
    assert "Traceback" not in err


def test_merge_keys_and_flow_mappings_still_load(tmp_path):
    from monitor.core.yamlfile import YamlFileError, load_yaml

    assert load_yaml(write(tmp_path / "m.yaml", "base: &b {a: 1}\nx:\n  <<: *b\n  a: 2\n")) == {
        "base": {"a": 1},
        "x": {"a": 2},
    }
    with pytest.raises(YamlFileError, match="duplicate key 'a' on line 1"):
        load_yaml(write(tmp_path / "f.yaml", "x: {a: 1, a: 2}\n"))


# -- 21: an empty bootstrap over a file's broker -----------------------------------------------
def test_an_empty_bootstrap_variable_over_a_file_broker_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FINSENT_KAFKA__BOOTSTRAP", "")
    config = write(tmp_path / "c.yaml", "kafka:\n  bootstrap: 10.0.0.1:9092\n")
    code, err = check_config(config, capsys)
    assert code == 2, err
    assert "FINSENT_KAFKA__BOOTSTRAP is set but empty" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as stop:
        main(["run", "--config", str(config)])
    assert stop.value.code == 2 and "FINSENT_KAFKA__BOOTSTRAP is set but empty" in capsys.readouterr().err
    # where nothing names a broker, empty keeps meaning "the in-process bus"
    code, err = check_config(write(tmp_path / "e.yaml", "{}\n"), capsys)
    assert code == 0, err


# -- 22: URLs that are not http(s) with a host -------------------------------------------------
@pytest.mark.parametrize(
    "field, yaml_text, reason",
    [
        ("alerts.receivers.hook.url", 'alerts: {receivers: {hook: {type: webhook, url: "https://"}}}', "no host"),
        (
            "alerts.receivers.hook.url",
            'alerts: {receivers: {hook: {type: webhook, url: "https://h.example/a b"}}}',
            "must not contain spaces",
        ),
        (
            "alerts.receivers.hook.url",
            'alerts: {receivers: {hook: {type: webhook, url: "https://h.example/a\\nb"}}}',
            "line breaks",
        ),
        (
            "alerts.receivers.hook.url",
            'alerts: {receivers: {hook: {type: slack, url: "http://[::1/hook"}}}',
            "not a valid URL",
        ),
        ("http.public_url", 'http: {public_url: "javascript:alert(1)"}', "expected an http:// or https:// URL"),
        ("connectors.sources.0.rss.url", 'connectors: {sources: [{type: rss, name: s, url: "https://"}]}', "no host"),
    ],
)
def test_receiver_and_public_urls_without_an_http_host_are_refused(tmp_path, capsys, field, yaml_text, reason):
    code, err = check_config(write(tmp_path / "c.yaml", yaml_text + "\n"), capsys)
    assert code == 2, err
    line = next((ln for ln in err.splitlines() if field in ln), "")
    assert reason in line, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2  # the heading and one line


# -- 23: rules that can never fire -------------------------------------------------------------
RULE_CASES = [
    (
        "low",
        "{name: low, type: threshold, key: all, window: 15m, metric: mean_score, op: '<', value: -7}",
        "rule 'low': value: mean_score < -7 can never hold",
    ),
    (
        "share",
        "{name: share, type: threshold, key: all, window: 15m, metric: negative_share, value: 1.5}",
        "rule 'share': value: negative_share > 1.5 can never hold",
    ),
    ("story", "{name: story, type: story, value: -3}", "rule 'story': value: a story's score < -3 can never hold"),
    (
        "gone",
        "{name: gone, type: threshold, key: all, window: 2h, metric: mean_score, op: '<', value: -0.3}",
        "rule 'gone': window: no aggregator window is named '2h'",
    ),
    (
        "base",
        "{name: base, type: change, key: all, window: 5m, baseline_window: 6h, value: -0.4}",
        "rule 'base': baseline_window: no aggregator window is named '6h'",
    ),
    (
        "drop",
        "{name: drop, type: change, key: all, window: 5m, baseline_window: 1h, value: -2.5}",
        "rule 'drop': value: the change of ewma < -2.5 can never hold",
    ),
]


@pytest.mark.parametrize("name, rule, message", RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_rules_that_can_never_fire_are_refused_naming_the_rule(tmp_path, capsys, name, rule, message):
    rules = write(tmp_path / "rules.yaml", f"rules:\n  - {rule}\n")
    config = write(tmp_path / "c.yaml", f"alerts:\n  rules_file: {rules}\n")
    code, err = check_config(config, capsys)
    assert code == 2 and message in err, err
    with_run = main(["run", "--config", str(config)])  # the daemon refuses to start on it too
    assert with_run == 2 and message in capsys.readouterr().err


def test_rules_on_configured_windows_and_in_range_values_still_load(tmp_path, capsys):
    rules = write(
        tmp_path / "rules.yaml",
        "rules:\n"
        "  - {name: hourly, type: threshold, key: all, window: 2h, metric: mean_score, op: '<', value: -1}\n"
        "  - {name: edge, type: threshold, key: all, window: 2h, metric: negative_share, op: '>=',"
        " value: 1}\n"
        "  - {name: story, type: story, value: -0.9}\n",
    )
    config = write(
        tmp_path / "c.yaml", f"alerts:\n  rules_file: {rules}\naggregator:\n  windows: [{{name: 2h, size: 2h}}]\n"
    )
    code, err = check_config(config, capsys)
    assert code == 2 and "rule 'hourly': value: mean_score < -1 can never hold" in err, err
    assert "'edge'" not in err and "'story'" not in err
    write(rules, "rules:\n  - {name: hourly, type: threshold, key: all, window: 2h, metric: mean_score, value: -1}\n")
    code, err = check_config(config, capsys)
    assert code == 0, err
