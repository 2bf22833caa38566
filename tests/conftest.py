"""Shared fixtures: a real Kafka broker for the session, isolated topics and settings per test."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
FAIL_ON_SKIP = "FINSENT_FAIL_ON_SKIP"
"""Set to 1 by CI (.ci/run): a skipped test fails unless it is marked ``optional_tool``, so a core
promise (the broker, Prometheus, Alertmanager, the browser, a full disk) is never skipped unseen."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and os.environ.get(FAIL_ON_SKIP) == "1"
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("optional_tool") is None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped ({reason}), but {FAIL_ON_SKIP}=1 allows skips only of tests marked optional_tool"


KAFKA_LOCAL = ROOT / "deploy" / "kafka" / "kafka-local"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a real single-node KRaft broker started for this test session.

    ``FINSENT_TEST_KAFKA=host:port`` reuses a broker that is already running instead.
    """
    external = os.environ.get("FINSENT_TEST_KAFKA")
    if external:
        yield external
        return
    state = tmp_path_factory.mktemp("kafka")
    env = {**os.environ, "KAFKA_LOCAL_STATE": str(state)}
    proc = subprocess.run([str(KAFKA_LOCAL), "start"], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"kafka-local start failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("bootstrap="), proc.stdout
    try:
        yield last.split("=", 1)[1]
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def topic_suffix() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def topics(topic_suffix: str):
    """Topic names unique to one test, so tests sharing the session broker never see each other."""
    from monitor.app.config import TopicSettings

    return TopicSettings(
        **{name: f"{default}.{topic_suffix}" for name, default in TopicSettings().model_dump().items()}
    )


@pytest.fixture
def finsent_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def make_settings(finsent_home: Path, topics, monkeypatch: pytest.MonkeyPatch):
    """Build validated Settings for a test: isolated home and topics, no HTTP port clash."""
    from monitor.app.config import load_settings

    for var in [v for v in os.environ if v.startswith("FINSENT_") and v != "FINSENT_TEST_KAFKA"]:
        monkeypatch.delenv(var)

    def factory(**sections):
        base = {"home": str(finsent_home), "topics": topics.model_dump(), "http": {"port": 0}}
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        return load_settings(None, **base)

    return factory


@pytest.fixture
def kafka_settings(make_settings, kafka_bootstrap: str):
    """Settings pointing at the session broker (call with extra sections as keyword arguments)."""

    def factory(**sections):
        kafka = {"bootstrap": kafka_bootstrap, **sections.pop("kafka", {})}
        return make_settings(kafka=kafka, **sections)

    return factory


@pytest.fixture
def quick_model_home(tmp_path: Path) -> Path:
    """A FINSENT_HOME of its own whose registry serves a model trained with the ``quick`` profile.

    Trained once per code+data+library change (a few minutes on 2 cores) and cached outside the
    checkout (tests/models/fixtures.py: CACHE_ROOT).
    """
    from tests.models.fixtures import trained_home

    return trained_home(tmp_path / "quick", "quick")
