"""The lock file that a fresh clone installs from (deploy/requirements.lock) covers what
pyproject.toml declares: every runtime and test dependency is pinned to one version that the
declared range allows, and every pin carries hashes (pip's --require-hashes mode needs them all)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "deploy" / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(text: str) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of each pinned requirement in a uv/pip-compile lock."""
    found: dict[str, tuple[str, int]] = {}
    current: str | None = None
    for line in text.splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            found[current] = (match.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
        elif not line.startswith(" "):
            current = None
    return found


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_every_declared_dependency_is_pinned_within_its_range_with_hashes():
    locked = pins(LOCK.read_text())
    problems = []
    for req in declared():
        name = canonicalize_name(req.name)
        if name not in locked:
            problems.append(f"{req.name} is declared in pyproject.toml but not in the lock (run `make lock`)")
            continue
        version, hashes = locked[name]
        if not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} in the lock is outside pyproject.toml's {req.specifier}")
        if hashes == 0:
            problems.append(f"{req.name}=={version} has no hash")
    unhashed = [n for n, (_, h) in locked.items() if h == 0]
    assert not problems and not unhashed, problems + [f"{n}: no hash" for n in unhashed]


def test_the_checker_finds_a_missing_pin_an_out_of_range_pin_and_a_pin_without_hash():
    text = "torch==2.4.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via finsent\nhttpx==0.20.0\n"
    locked = pins(text)
    assert locked == {"torch": ("2.4.0", 1), "httpx": ("0.20.0", 0)}
    assert not Requirement("httpx>=0.27").specifier.contains(locked["httpx"][0])
    assert "pydantic" not in locked


def test_bootstrap_installs_from_the_lock_with_hashes_required():
    script = (ROOT / "deploy" / "bootstrap.sh").read_text()
    assert '--require-hashes -r "$lock"' in script
    assert 'lock="$ROOT/deploy/requirements.lock"' in script
    # the project itself goes in without resolving anything again
    assert '--no-deps -e "$ROOT"' in script
