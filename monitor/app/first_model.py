"""The first model, trained while the daemon already runs (``classify.first_model``).

On a new home there is no model to serve. Rather than keep the user at a progress bar, the daemon
starts at once: the page and the API answer, ingest publishes, and the stories queue on the bus
while a child process (``python -m monitor.app.commands.first_model``, lower priority, torch
threads following the machine) trains the configured profile and promotes it. Meanwhile
``/readyz`` says "not ready" with the phase, step and an estimate, the page says the same, and the
daemon logs progress now and then; when the model is published the classify stage loads it and
works the queue off. A child that fails is reported the same way (with its log's path), and a
model published by other means (``finsent models ensure``) is picked up too.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from subprocess import Popen
from typing import Literal

import structlog
from pydantic import ValidationError

from models import Registry
from models.registry import RegistryError
from models.training_progress import PHASE_TEXT, TrainingProgress
from monitor.learning.retrain import start_child, stop_child

log = structlog.get_logger(__name__)

CHILD_MODULE = "monitor.app.commands.first_model"
LOG_EVERY_S = 30.0

State = Literal["waiting", "training", "ready", "failed"]


def has_model(settings) -> bool:
    """The registry names a current version (what ``finsent models ensure`` keeps; a current
    version that fails to load is the engine's clear error, not a reason to train over it)."""
    try:
        return Registry.from_settings(settings).current() is not None
    except RegistryError:
        return False


class FirstModel:
    """One child that trains ``profile``; its state, progress and a line for people."""

    def __init__(self, settings, profile: str) -> None:
        self.settings = settings
        self.profile = profile
        self.dir: Path = settings.state_dir / "first-model"
        self.progress_path = self.dir / "progress.json"
        self.log_path = self.dir / "train.log"
        self._proc: Popen[bytes] | None = None
        self._started_at = 0.0
        self._logged_at = 0.0
        self._logged_phase = ""

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.progress_path.unlink(missing_ok=True)
        s = self.settings
        spec = {
            "home": str(s.home),
            "classifier": s.classifier.model_dump(mode="json"),
            "training": s.training.model_dump(mode="json"),
            "profile": self.profile,
            "progress": str(self.progress_path),
            "log_level": s.logging.level,
            "log_format": "json",
        }
        spec_path = self.dir / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        self._started_at = time.time()
        with self.log_path.open("ab") as output:
            self._proc = start_child(
                CHILD_MODULE, [str(spec_path)], threads=s.training.threads, nice=s.retrain.nice, output=output
            )
        log.info(
            "no model yet: training the first one while the daemon runs; stories queue until it is ready",
            profile=self.profile,
            pid=self._proc.pid,
            log=str(self.log_path),
        )

    def state(self) -> State:
        if self._proc is None:
            return "waiting"
        rc = self._proc.poll()
        if rc is None:
            return "training"
        return "ready" if rc == 0 else "failed"

    def published(self) -> bool:
        """The child says the model is published (it may still be tearing down: torch, ORT)."""
        progress = self.progress()
        return progress is not None and progress.phase == "done"

    def forget_child(self) -> None:
        """Once the model is served: let the child finish exiting on its own, reaped meanwhile."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            threading.Thread(target=proc.wait, name="first-model-reaper", daemon=True).start()

    def progress(self) -> TrainingProgress | None:
        try:
            return TrainingProgress.model_validate_json(self.progress_path.read_bytes())
        except (OSError, ValidationError):
            return None  # not written yet (or by a child of another version)

    def describe(self) -> str:
        """What ``/readyz``, the page and the log say while there is no model."""
        state = self.state()
        if state == "waiting":
            return f"no model yet: training the first model ('{self.profile}' profile) is starting"
        if state == "failed":
            rc = self._proc.returncode if self._proc else None
            return (
                f"no model: training the first model failed (exit {rc}); its log is {self.log_path}. "
                "Fix the cause and restart, or run `finsent models ensure`"
            )
        progress = self.progress()
        doing = progress.describe() if progress else "starting"
        elapsed = time.time() - self._started_at
        return (
            f"no model yet: training the first model ('{self.profile}' profile, {elapsed / 60:.0f} min so far): "
            f"{doing}; stories queue until it is ready"
        )

    def log_progress(self) -> None:
        """A line in the daemon's log on each phase change and every ``LOG_EVERY_S`` meanwhile."""
        progress = self.progress()
        if progress is None:
            return
        now = time.monotonic()
        if progress.phase == self._logged_phase and now - self._logged_at < LOG_EVERY_S:
            return
        self._logged_phase, self._logged_at = progress.phase, now
        left = progress.steps_left_s
        details = {"step": progress.step, "steps": progress.steps} if progress.phase == "train" else {}
        if left is not None:
            details["steps_left_s"] = round(left)
        log.info("first model training", doing=PHASE_TEXT[progress.phase], percent=progress.percent, **details)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            log.info("stopping the first model's training; it starts again with the daemon", pid=self._proc.pid)
            stop_child(self._proc)
