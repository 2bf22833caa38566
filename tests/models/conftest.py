"""Fixtures of the models test package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.models.fixtures import _settings, trained_tiny_home

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # effective if torch is not imported yet
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session-wide FINSENT_HOME with the tiny model (read-only by convention: don't corrupt it)."""
    return trained_tiny_home(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def tiny_home_copy(tmp_path: Path) -> Path:
    """A private copy a test may modify (corrupt, promote, roll back)."""
    return trained_tiny_home(tmp_path)


@pytest.fixture
def settings_for():
    return _settings


@pytest.fixture(scope="session")
def tiny_engine(tiny_home: Path):
    from models.engine import InferenceEngine

    return InferenceEngine.from_settings(_settings(tiny_home), device="cpu")
