"""``python -m monitor.app.cli ARGS --config FILE`` as a real OS process, for tests that ``kill -9`` it
and start it again, plus reading a stage's SQLite state from outside while it runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def finsent_env(**settings: str) -> dict[str, str]:
    """This process's environment without any ``FINSENT_*``, offline for the model hub, plus
    ``settings`` (``FINSENT_HOME=...``): what a finsent process started by a test sees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **settings)
    return env


class FinsentProcess:
    """One finsent command (``["run", "--stages", "classify,aggregate"]``, ``["aggregate"]`` …),
    started with a clean ``FINSENT_*`` environment and its output appended to ``log``."""

    def __init__(self, args: list[str], config: Path, log: Path) -> None:
        self.args, self.config, self.log = list(args), config, log
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        env = finsent_env(PYTHONPATH=str(ROOT))
        self.starts += 1
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor.app.cli", *self.args, "--config", str(self.config)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=out,
            )

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.tail()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM; it must exit 0 within a minute."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(60) == 0, self.tail()
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise


def db_value(path: Path, sql: str) -> int:
    """One number from a stage's SQLite state (0 while the file or table is not there yet)."""
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as c:
            return c.execute(sql).fetchone()[0] or 0
    except sqlite3.Error:
        return 0
