"""Where a training run is: its phase, its step, and how long the steps left should take.

:func:`models.train` reports a :class:`TrainingProgress` to ``on_progress`` at every phase change
and at most every ``every_s`` seconds during the steps; the daemon's first-model training shows it
on ``/readyz`` and the page (``monitor.app.first_model``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

Phase = Literal["data", "encode", "train", "finish", "done"]

PHASE_TEXT: dict[str, str] = {
    "data": "reading the training data",
    "encode": "tokenising and caching the frozen layers",
    "train": "training",
    "finish": "calibrating, scoring and checking the int8 export",
    "done": "published",
}


class TrainingProgress(BaseModel):
    model_config = ConfigDict(frozen=True)

    profile: str
    phase: Phase
    step: int = 0
    steps: int = 0
    started_at: float
    """``time.time()`` when the run started."""
    phase_started_at: float
    updated_at: float

    @property
    def percent(self) -> int | None:
        """Of the training steps (None before they start)."""
        if self.phase in ("finish", "done"):
            return 100
        if self.phase != "train" or not self.steps:
            return None
        return min(100, int(100 * self.step / self.steps))

    @property
    def steps_left_s(self) -> float | None:
        """The steps left at the pace so far (None until a step is done)."""
        if self.phase != "train" or self.step <= 0 or not self.steps:
            return None
        pace = (self.updated_at - self.phase_started_at) / self.step
        return max(0.0, pace * (self.steps - self.step))

    def describe(self) -> str:
        """One line for people: phase, step, percent and the estimate."""
        text = PHASE_TEXT[self.phase]
        if self.phase == "train" and self.steps:
            text += f": step {self.step} of {self.steps} ({self.percent}%)"
            left = self.steps_left_s
            if left is not None:
                text += f", about {_minutes(left)} left, then calibration and export"
        return text


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds / 10) * 10):.0f} s"
    return f"{round(seconds / 60):.0f} min"


class ProgressReporter:
    """Sends :class:`TrainingProgress` to ``sink``: every phase change, and steps at most every
    ``every_s`` seconds (and the last one)."""

    def __init__(
        self,
        profile: str,
        sink: Callable[[TrainingProgress], None] | None,
        every_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink, self._every_s, self._clock = sink, every_s, clock
        now = clock()
        self._current = TrainingProgress(
            profile=profile, phase="data", started_at=now, phase_started_at=now, updated_at=now
        )
        self._sent_at = float("-inf")

    @property
    def current(self) -> TrainingProgress:
        return self._current

    def phase(self, phase: Phase, steps: int = 0) -> None:
        now = self._clock()
        self._current = self._current.model_copy(
            update={"phase": phase, "step": 0, "steps": steps, "phase_started_at": now, "updated_at": now}
        )
        self._send(now)

    def step(self, step: int) -> None:
        now = self._clock()
        self._current = self._current.model_copy(update={"step": step, "updated_at": now})
        if now - self._sent_at >= self._every_s or step >= self._current.steps:
            self._send(now)

    def _send(self, now: float) -> None:
        self._sent_at = now
        if self._sink is not None:
            self._sink(self._current)
