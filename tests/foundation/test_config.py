import json
from pathlib import Path

import pytest

from monitor.app.cli import main
from monitor.app.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for var in [v for v in os.environ if v.startswith("FINSENT_")]:
        monkeypatch.delenv(var)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "finsent.yaml"
    p.write_text(text)
    return p


def test_defaults_are_valid_and_embedded(tmp_path, monkeypatch):
    s = load_settings(None, home=str(tmp_path))
    assert s.kafka.enabled is False and s.topics.raw == "news.raw"
    assert s.models_dir == tmp_path / "models"


def test_yaml_then_env_precedence(tmp_path, monkeypatch):
    f = write(tmp_path, "kafka:\n  bootstrap: 10.0.0.1:9092\n  partitions: 6\ntopics:\n  raw: my.raw\n")
    monkeypatch.setenv("FINSENT_KAFKA__BOOTSTRAP", "127.0.0.1:19092")
    s = load_settings(f)
    assert s.kafka.bootstrap == "127.0.0.1:19092"  # env wins
    assert s.kafka.partitions == 6 and s.topics.raw == "my.raw"  # file beats defaults


def test_every_error_is_reported_with_its_path(tmp_path):
    f = write(tmp_path, "kafka:\n  bootstrap: nohostport\n  partitions: 0\nhttp:\n  port: 99999\nbogus: 1\n")
    with pytest.raises(ConfigError) as err:
        load_settings(f)
    text = str(err.value)
    for path in ("kafka.bootstrap", "kafka.partitions", "http.port", "bogus"):
        assert path in text, text
    assert len(err.value.errors) == 4


def test_unreadable_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "kafka: [unclosed"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"))


def test_check_config_prints_resolved_config_with_secrets_masked(tmp_path, capsys):
    f = write(
        tmp_path,
        f"home: {tmp_path}\nkafka:\n  bootstrap: 127.0.0.1:9092\n  sasl_mechanism: PLAIN\n  sasl_username: u\n  sasl_password: hunter2\n",
    )
    assert main(["check-config", str(f)]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    resolved = json.loads(out)
    assert resolved["kafka"]["sasl_password"] == "**********"
    assert resolved["kafka"]["bootstrap"] == "127.0.0.1:9092"


def test_check_config_lists_errors_and_exits_2(tmp_path, capsys):
    f = write(tmp_path, "kafka:\n  partitions: -1\n")
    assert main(["check-config", str(f)]) == 2
    assert "kafka.partitions" in capsys.readouterr().err


def test_version_and_help(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("finsent ")
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "check-config" in capsys.readouterr().out


def test_the_shipped_example_config_is_valid(capsys, monkeypatch):
    for name in ("NEWSAPI_TOKEN", "PARTNER_WEBHOOK_SECRET", "FINSENT_OPS_TOKEN", "FINSENT_SCRAPE_TOKEN"):
        monkeypatch.setenv(name, f"{name.lower()}-0123456789abcdef")
    example = Path(__file__).resolve().parents[2] / "deploy" / "finsent.example.yaml"
    assert main(["check-config", str(example)]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["kafka"]["bootstrap"] == "127.0.0.1:9092"
    assert resolved["alerts"]["receivers"]["ops"]["secret"] == "**********"
    assert [s["type"] for s in resolved["connectors"]["sources"]] == ["rss", "json_api", "webhook"]


def test_the_demo_gets_grace_for_its_compressed_time_unless_grace_is_set():
    from monitor.app.config import DEMO_GRACE_WALL_S, load_settings

    demo = load_settings(None)
    assert demo.connectors.demo and demo.aggregator.grace == DEMO_GRACE_WALL_S * demo.connectors.demo_speed
    assert load_settings(None, aggregator={"grace": "30s"}).aggregator.grace == 30.0
    assert load_settings(None, connectors={"demo": False}).aggregator.grace == 120.0
