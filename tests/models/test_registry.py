from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from models.registry import CorruptVersionError, Registry, RegistryError


def _publish(reg: Registry, payload: str = "weights") -> str:
    def build(tmp: Path) -> dict:
        (tmp / "model.safetensors").write_text(payload)
        (tmp / "config.json").write_text("{}")
        return {"kind": "test", "metrics": {}}

    return reg.publish(build)


def test_publish_writes_a_complete_verified_version(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    v = _publish(reg)
    assert reg.versions() == [v]
    manifest = reg.verify(v)
    assert manifest["version"] == v and set(manifest["files"]) == {"model.safetensors", "config.json"}
    assert len(manifest["checksum"]) == 64
    assert list((tmp_path / "models" / ".staging").iterdir()) == []


def test_publish_removes_what_a_crashed_publish_left_in_staging_once_it_is_an_hour_old(tmp_path: Path) -> None:
    """MODELS.md: a crash mid-publish leaves only a staging directory, removed at a later publish."""
    reg = Registry(tmp_path / "models")
    reg.staging_dir.mkdir(parents=True)
    crashed = reg.staging_dir / "v20260101-000000-abcdef.1234abcd"
    crashed.mkdir()
    (crashed / "model.safetensors").write_text("half written")
    two_hours_ago = time.time() - 7200
    os.utime(crashed, (two_hours_ago, two_hours_ago))
    in_progress = reg.staging_dir / "v20260101-000001-abcdef.5678abcd"  # another publish, just started
    in_progress.mkdir()
    _publish(reg)
    assert sorted(p.name for p in reg.staging_dir.iterdir()) == [in_progress.name]


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")

    def build(tmp: Path) -> dict:
        (tmp / "model.safetensors").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        reg.publish(build)
    assert reg.versions() == []
    assert list(reg.staging_dir.iterdir()) == []


def test_promote_and_rollback_keep_a_history(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    a, b, c = (_publish(reg, p) for p in ("a", "b", "c"))
    assert reg.current() is None
    reg.promote(a)
    reg.promote(b)
    reg.promote(c)
    assert reg.current() == c and reg.history() == [a, b]
    assert reg.rollback() == b
    assert reg.rollback() == a
    assert reg.current() == a
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    assert not [p for p in reg.root.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_version_is_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    good, bad = _publish(reg, "good"), _publish(reg, "bad")
    reg.promote(good)
    (reg.path(bad) / "model.safetensors").write_text("flipped bits")
    with pytest.raises(CorruptVersionError, match="does not match its checksum"):
        reg.promote(bad)
    assert reg.current() == good


def test_half_written_version_without_manifest_is_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    half = reg.versions_dir / "v-half"
    half.mkdir(parents=True)
    (half / "model.safetensors").write_text("partial")
    with pytest.raises(CorruptVersionError, match="incomplete"):
        reg.promote("v-half")
    assert reg.current() is None


def test_tampered_manifest_is_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    v = _publish(reg)
    path = reg.path(v) / "manifest.json"
    data = json.loads(path.read_text())
    data["files"]["config.json"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptVersionError, match="checksum mismatch"):
        reg.verify(v)


def test_rollback_skips_versions_that_went_bad(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    a, b, c = (_publish(reg, p) for p in ("a", "b", "c"))
    for v in (a, b, c):
        reg.promote(v)
    (reg.path(b) / "config.json").unlink()
    assert reg.rollback() == a


def test_unknown_version_and_empty_registry(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    with pytest.raises(RegistryError, match="no current model"):
        reg.resolve(None)
    with pytest.raises(RegistryError, match="no such model version"):
        reg.promote("v-nope")
    with pytest.raises(RegistryError, match="invalid version"):
        reg.path("../etc")
