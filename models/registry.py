"""The model registry: immutable versions on disk plus an atomically switched ``current`` pointer.

Layout under ``settings.models_dir``::

    versions/<version>/            one immutable directory per trained model
        config.json, model.safetensors, tokenizer files   (standard Hugging Face layout)
        manifest.json              finsent's manifest, written LAST; lists every file's sha256
                                   and a checksum over that list: a version without a valid
                                   manifest is incomplete and is never loaded or promoted
    current.json                   {"current": <version>, "history": [older currents...], ...}
    .staging/                      versions being written (temp dirs, renamed into versions/)

A version is built in ``.staging/``, every file fsync'd, the manifest written last, then the
directory is renamed into ``versions/`` (atomic on one filesystem). The pointer is replaced with
``os.replace`` of a fsync'd temp file. ``history`` is a stack used by :meth:`Registry.rollback`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog

from monitor.core.checksum import sha256_file

log = structlog.get_logger(__name__)

MANIFEST = "manifest.json"
POINTER = "current.json"
MANIFEST_FORMAT = 1


class RegistryError(RuntimeError):
    """A registry operation cannot be done (unknown version, nothing to roll back to, ...)."""


class CorruptVersionError(RegistryError):
    """A version directory is incomplete or its files do not match its manifest."""


def _files_checksum(files: dict[str, str]) -> str:
    blob = "".join(f"{name}\0{sha}\n" for name, sha in sorted(files.items()))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def new_version_id(now: datetime | None = None) -> str:
    """Sortable, collision-resistant: ``v20261123-043912-1a2b3c``."""
    now = now or datetime.now(timezone.utc)
    return f"v{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class Registry:
    """Versions and the ``current`` pointer under ``root`` (``settings.models_dir``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.staging_dir = self.root / ".staging"
        self.pointer_path = self.root / POINTER

    @classmethod
    def from_settings(cls, settings: Any) -> Registry:
        return cls(settings.models_dir)

    # -- reading ----------------------------------------------------------------------------
    def path(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise RegistryError(f"invalid version name {version!r}")
        return self.versions_dir / version

    def versions(self) -> list[str]:
        """Every version directory, oldest first (complete or not; see :meth:`verify`)."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def read_manifest(self, version: str) -> dict[str, Any]:
        """The manifest, without checking file contents (cheap; for listings)."""
        path = self.path(version)
        if not path.is_dir():
            raise RegistryError(f"no such model version {version!r} in {self.versions_dir}")
        try:
            data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CorruptVersionError(f"model version {version!r} is incomplete: no {MANIFEST}") from None
        except (OSError, ValueError) as err:
            raise CorruptVersionError(f"model version {version!r}: unreadable {MANIFEST}: {err}") from None
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or "checksum" not in data:
            raise CorruptVersionError(f"model version {version!r}: {MANIFEST} lacks files/checksum")
        return data

    def verify(self, version: str, skip_prefix: str | None = None) -> dict[str, Any]:
        """Check every file against the manifest; return the manifest or raise CorruptVersionError.

        ``skip_prefix``: files under it are optional artefacts the caller checks itself with
        :meth:`verify_file` (the engine's ONNX files: a bad one means "serve torch", not "refuse").
        """
        manifest = self.read_manifest(version)
        files: dict[str, str] = manifest["files"]
        if _files_checksum(files) != manifest["checksum"]:
            raise CorruptVersionError(f"model version {version!r}: manifest checksum mismatch")
        root = self.path(version)
        for name, sha in files.items():
            if skip_prefix and name.startswith(skip_prefix):
                continue
            f = root / name
            if not f.is_file():
                raise CorruptVersionError(f"model version {version!r}: missing file {name}")
            if sha256_file(f) != sha:
                raise CorruptVersionError(f"model version {version!r}: {name} does not match its checksum")
        if manifest.get("version") != version:
            raise CorruptVersionError(f"model version {version!r}: manifest names {manifest.get('version')!r}")
        return manifest

    def verify_file(self, version: str, name: str) -> None:
        """Check one listed file of ``version`` against its manifest entry (CorruptVersionError if not)."""
        files = self.read_manifest(version)["files"]
        f = self.path(version) / name
        if name not in files:
            raise CorruptVersionError(f"model version {version!r}: {name} is not in its manifest")
        if not f.is_file():
            raise CorruptVersionError(f"model version {version!r}: missing file {name}")
        if sha256_file(f) != files[name]:
            raise CorruptVersionError(f"model version {version!r}: {name} does not match its checksum")

    def _pointer(self) -> dict[str, Any]:
        try:
            data = json.loads(self.pointer_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"current": None, "history": []}
        except (OSError, ValueError) as err:
            raise RegistryError(f"{self.pointer_path}: unreadable pointer: {err}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{self.pointer_path}: not a JSON object")
        return {**data, "current": data.get("current"), "history": list(data.get("history") or [])}

    def current(self) -> str | None:
        return self._pointer()["current"]

    def history(self) -> list[str]:
        """Earlier current versions, oldest first (what :meth:`rollback` returns to)."""
        return list(self._pointer()["history"])

    def resolve(self, version: str | None = None) -> str:
        """``version`` or the current one; raises RegistryError when there is none."""
        if version and version != "current":
            return version
        cur = self.current()
        if not cur:
            raise RegistryError(f"no current model in {self.root} (train one with `finsent train`)")
        return cur

    # -- writing ----------------------------------------------------------------------------
    def publish(self, build: Callable[[Path], dict[str, Any]], version: str | None = None) -> str:
        """Create a new immutable version.

        ``build(tmpdir)`` writes the model files into ``tmpdir`` and returns the manifest body;
        the registry adds ``version``, ``created_at``, the file list with sha256s and the
        checksum, writes ``manifest.json`` last, fsyncs, and renames the directory into place.
        """
        version = version or new_version_id()
        final = self.path(version)
        if final.exists():
            raise RegistryError(f"model version {version!r} already exists")
        if removed := self.clean_staging():
            log.info("removed leftovers of crashed publishes", staging=str(self.staging_dir), removed=removed)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.staging_dir / f"{version}.{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            body = dict(build(tmp))
            (tmp / MANIFEST).unlink(missing_ok=True)
            files: dict[str, str] = {}
            for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
                with f.open("rb") as fh:
                    os.fsync(fh.fileno())
                files[f.relative_to(tmp).as_posix()] = sha256_file(f)
            manifest = {
                "format": MANIFEST_FORMAT,
                "version": version,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **body,
                "files": files,
                "checksum": _files_checksum(files),
            }
            with (tmp / MANIFEST).open("w", encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=2)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            _fsync_dir(tmp)
            os.rename(tmp, final)
            _fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("model_version_published", version=version, path=str(final))
        return version

    def add_files(self, version: str, build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """Add derived files (e.g. an ONNX export) to an existing, verified version.

        ``build(tmpdir)`` writes the new files under ``tmpdir`` (relative paths as they will be in
        the version) and returns manifest sections to add. A file the version already lists is
        never replaced (RegistryError); the new files are fsync'd and moved in first, then the
        manifest (file list, checksum, sections) is replaced atomically, so a crash leaves at most
        unlisted files, which nothing reads. Returns the new manifest.
        """
        manifest = self.verify(version)
        root = self.path(version)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.staging_dir / f"{version}.add.{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            sections = dict(build(tmp))
            new = sorted(p for p in tmp.rglob("*") if p.is_file())
            names = [p.relative_to(tmp).as_posix() for p in new]
            clash = [n for n in names if n in manifest["files"] or n == MANIFEST]
            if clash:
                raise RegistryError(f"model version {version!r} already has {clash}: versions are never changed")
            files = dict(manifest["files"])
            for p, name in zip(new, names):
                with p.open("rb") as fh:
                    os.fsync(fh.fileno())
                files[name] = sha256_file(p)
                dest = root / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, dest)
                _fsync_dir(dest.parent)
            updated = {
                **{k: v for k, v in manifest.items() if k not in ("files", "checksum")},
                **sections,
                "files": files,
                "checksum": _files_checksum(files),
            }
            _write_json_atomic(root / MANIFEST, updated)
            _fsync_dir(root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("model_version_files_added", version=version, files=names)
        return updated

    def _set_pointer(self, current: str | None, history: list[str], action: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(
            self.pointer_path,
            {
                "current": current,
                "history": history,
                "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "last_action": action,
            },
        )

    def promote(self, version: str) -> dict[str, Any]:
        """Verify ``version`` and make it current; the old current goes onto the history stack."""
        manifest = self.verify(version)
        ptr = self._pointer()
        if ptr["current"] == version:
            return manifest
        history = ptr["history"] + ([ptr["current"]] if ptr["current"] else [])
        self._set_pointer(version, history, f"promote {version}")
        log.info("model_promoted", version=version, previous=ptr["current"])
        return manifest

    def rollback(self) -> str:
        """Make the previous current version current again; returns it."""
        ptr = self._pointer()
        history = list(ptr["history"])
        while history:
            candidate = history.pop()
            try:
                self.verify(candidate)
            except RegistryError as err:
                log.warning("rollback_skips_bad_version", version=candidate, error=str(err))
                continue
            self._set_pointer(candidate, history, f"rollback {ptr['current']} -> {candidate}")
            log.info("model_rolled_back", version=candidate, previous=ptr["current"])
            return candidate
        raise RegistryError("nothing to roll back to (no earlier valid version in the history)")

    def clean_staging(self, older_than_s: float = 3600) -> int:
        """Remove leftovers of crashed publishes (staging directories untouched for
        ``older_than_s``: an hour, so a publish in progress elsewhere is never one); returns how
        many were removed. Every :meth:`publish` calls it first."""
        if not self.staging_dir.is_dir():
            return 0
        removed = 0
        now = time.time()
        for p in self.staging_dir.iterdir():
            if now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed
