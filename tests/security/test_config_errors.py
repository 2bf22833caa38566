"""No config or rules error shows a secret or a raw control character (issue #26, items 8 and 24)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alerts.ruleset import RulesError, load_rules
from connectors.text import clean_text
from monitor.app.cli import main
from monitor.core.secrets import mask_message

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("hunter2pw", "sourcepw9", "12345678", "s3cr3t-paste", "987654321")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in [v for v in os.environ if v.startswith("FINSENT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "home"))


CONFIG = """\
kafka:
  sasl_password: 12345678
alerts:
  receivers:
    a: {type: webhook, url: "file://admin:hunter2pw@host/x"}
    b: {type: webhook, url: "https://hooks.example.com/x", secret: 987654321}
connectors:
  demo: false
  sources:
    - {type: rss, name: s, url: "ftp://user:sourcepw9@h/feed"}
    - {type: json_api, name: j, url: "https://api.example.com/", auth: {value: s3cr3t-paste}}
http:
  port: s3cr3t-paste
"""


def test_credentials_in_urls_and_a_numeric_sasl_password_never_show_in_config_errors(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    assert main(["check-config", str(config)]) == 2
    got = capsys.readouterr()
    shown = got.out + got.err
    for field in (
        "kafka.sasl_password",
        "alerts.receivers.a.url",
        "alerts.receivers.b.secret",
        "connectors.sources.0.rss.url",
        "http.port",
    ):
        assert field in got.err, got.err
    for secret in SECRETS:
        assert secret not in shown, (secret, shown)
    assert "file://admin:**********@host/x" in got.err  # the URL is still recognisable, its password masked
    assert got.err.count("file://admin") == 1 and "Traceback" not in shown

    with pytest.raises(SystemExit) as stop:  # the daemon's and every subcommand's load path
        main(["run", "--config", str(config)])
    assert stop.value.code == 2
    shown = "".join(capsys.readouterr())
    assert "kafka.sasl_password" in shown and not any(secret in shown for secret in SECRETS), shown


def test_no_secret_in_config_errors_of_the_real_cli(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    got = subprocess.run(
        [sys.executable, "-m", "monitor.app.cli", "check-config", str(config)],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT), "FINSENT_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert got.returncode == 2 and "alerts.receivers.a.url" in got.stderr, got.stderr
    assert not any(secret in got.stdout + got.stderr for secret in SECRETS)
    assert "Traceback" not in got.stderr


def test_bidi_and_control_characters_are_escaped_in_errors_and_stripped_from_titles(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text('kafka:\n  "evil\u202eexe.txt": 1\nhttp:\n  host: "a\\x1b[31mred"\n  port: "x\u2066y"\n')
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "evil\\u202eexe.txt" in err and "\u202e" not in err, err
    assert "\x1b" not in err and "\u2066" not in err and "Traceback" not in err

    rules = tmp_path / "rules.yaml"
    rules.write_text('rules:\n  - {name: r, type: story, "va\u202elue": 1}\n')
    with pytest.raises(RulesError) as refused:
        load_rules(rules)
    assert "\u202e" not in str(refused.value) and "va\\u202elue" in str(refused.value)

    assert clean_text("Acme \u202eseraht\u202c shares \u2067up\u2069") == "Acme seraht shares up"
    assert mask_message("x\u202ey ftp://u:pw12345@h/") == "x\\u202ey ftp://u:**********@h/"
