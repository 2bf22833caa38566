"""Training progress (models.training_progress): phases in order, steps throttled, an estimate
from the pace so far, one line for people."""

from __future__ import annotations

from models.training_progress import ProgressReporter, TrainingProgress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_phase_changes_always_reach_the_sink_and_steps_at_most_every_second() -> None:
    clock, seen = Clock(), []
    r = ProgressReporter("quick", seen.append, every_s=1.0, clock=clock)
    r.phase("data")
    clock.now += 5
    r.phase("encode")
    clock.now += 10
    r.phase("train", steps=100)
    for step in range(1, 101):
        clock.now += 0.25
        r.step(step)
    r.phase("finish")
    r.phase("done")
    phases = [p.phase for p in seen]
    assert phases[:3] == ["data", "encode", "train"] and phases[-2:] == ["finish", "done"]
    steps = [p.step for p in seen if p.phase == "train"]
    assert steps[0] == 0 and steps[-1] == 100  # the start and the last step are never dropped
    assert steps == sorted(steps) and 25 <= len(steps) <= 27  # 25 s of steps, one report a second
    assert all(p.started_at == 1000.0 for p in seen)


def test_the_estimate_is_the_pace_so_far_times_the_steps_left() -> None:
    p = TrainingProgress(
        profile="quick", phase="train", step=50, steps=200, started_at=0, phase_started_at=100, updated_at=200
    )
    assert p.percent == 25
    assert p.steps_left_s == 300.0  # 2 s a step, 150 steps left
    assert p.describe() == "training: step 50 of 200 (25%), about 5 min left, then calibration and export"
    early = p.model_copy(update={"step": 0, "updated_at": 100})
    assert early.steps_left_s is None and "left" not in early.describe()
    assert TrainingProgress(profile="q", phase="encode", started_at=0, phase_started_at=0, updated_at=0).percent is None
    done = p.model_copy(update={"phase": "finish"})
    assert done.percent == 100 and done.steps_left_s is None
