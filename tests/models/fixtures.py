"""Reusable test fixture: a FINSENT_HOME whose registry holds a model trained with the tiny profile.

API (for ``tests/conftest.py``)::

    from tests.models.fixtures import trained_tiny_home

    @pytest.fixture(scope="session")
    def tiny_model_home(tmp_path_factory) -> Path:
        return trained_tiny_home(tmp_path_factory.mktemp("tiny-model"))

``trained_tiny_home(tmp_root)`` (= ``trained_home(tmp_root, "tiny")``; ``"quick"`` works too) trains
the profile once per code+data+profile+library-versions hash, caches the registry directory as
``<cache>/<profile>-<hash>/``, then copies it to
``tmp_root/home/models`` and returns ``tmp_root/home`` (use it as ``FINSENT_HOME`` /
``Settings.home``; the registry's ``current`` points at the trained version). Copies, not links,
so a test may corrupt its copy freely. Safe when several processes race to fill the cache.

``<cache>`` is ``$FINSENT_TEST_MODEL_CACHE``, else ``$XDG_CACHE_HOME/finsent/test-model`` (default
``~/.cache/finsent/test-model``): outside the checkout, like pip's cache, so a fresh clone on the
same machine reuses a model trained from the same code, data and libraries. The newest
:data:`KEEP_PER_PROFILE` entries of each profile are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE_ROOT = Path(
    os.environ.get("FINSENT_TEST_MODEL_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "finsent" / "test-model"
)
KEEP_PER_PROFILE = 2
PROFILE = "tiny"
# modules that cannot change what training produces
_NOT_IN_KEY = {
    "cli.py",
    "__main__.py",
    "bench.py",
    "engine.py",
    "settings.py",
    "__init__.py",
    "challenger.py",
    "gate.py",
    "runs.py",
    "hf.py",
    "relevance.py",
    "prediction.py",
}


def cache_key(profile: str = PROFILE) -> str:
    """Hash of the models package source, the vendored data, the profile's settings and the
    versions of the libraries that train and export the model."""
    from models.data import data_hashes
    from models.training_config import PROFILES

    h = hashlib.sha256()
    for path in sorted((ROOT / "models").glob("*.py")):
        if path.name in _NOT_IN_KEY:
            continue
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(json.dumps(data_hashes(), sort_keys=True).encode())
    h.update(json.dumps(PROFILES[profile].to_dict(), sort_keys=True).encode())
    h.update(json.dumps(_library_versions(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def _library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a trained version (another torch: another model)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "tokenizers", "onnxruntime", "onnx", "scikit-learn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def _settings(home: Path):
    from monitor.app.config import load_settings

    # model_copy: FINSENT_HOME in the environment must not redirect the test's registry
    return load_settings(None).model_copy(update={"home": home})


def _build_cache(target: Path, profile: str = PROFILE) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from models.training import train

    staging = target.parent / f".building-{uuid.uuid4().hex[:8]}"
    home = staging / "home"
    try:
        train(_settings(home), profile=profile, device="cpu", progress=False)
        try:
            os.rename(home / "models", target)  # atomic; loses gracefully to a concurrent builder
        except OSError:
            if not (target / "current.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _prune(profile, keep=target)


def _prune(profile: str, keep: Path) -> None:
    """Drop all but the newest KEEP_PER_PROFILE cached models of ``profile`` (older code or libraries)."""
    entries = sorted(
        (p for p in CACHE_ROOT.glob(f"{profile}-*") if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in entries[KEEP_PER_PROFILE - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def trained_tiny_home(tmp_root: Path) -> Path:
    """A fresh FINSENT_HOME under ``tmp_root`` with the cached tiny model as current; returns it."""
    return trained_home(tmp_root, PROFILE)


def trained_home(tmp_root: Path, profile: str) -> Path:
    """A fresh FINSENT_HOME under ``tmp_root`` with a cached model of ``profile`` as current.

    ``quick`` (a few minutes on 2 cores, once per code+data change) tells obvious good news from
    bad, which the end-to-end tests need; ``tiny`` does not.
    """
    cached = CACHE_ROOT / f"{profile}-{cache_key(profile)}"
    if not (cached / "current.json").exists():
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        _build_cache(cached, profile)
    home = Path(tmp_root) / "home"
    dest = home / "models"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(cached, dest, ignore=shutil.ignore_patterns(".staging"))
    return home
