"""Config section ``retrain``: label intake, the scheduled retrain job and its promotion gate."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.core.durations import Seconds


class ValidationSetSpec(BaseModel):
    """One fixed validation set the gate checks a challenger on (never trained on)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="how reports and metrics name the set")
    task: Literal["sentiment", "topic"]
    path: Path | None = Field(
        default=None, description="CSV with text,label columns; unset = the bundled set named by `bundled`"
    )
    bundled: Literal["tweets", "tweets_dedup", "news", "news_semeval"] = Field(
        default="tweets",
        description="a fixed set shipped in models/data (models.domains.validation_sets); "
        "news sets exist for sentiment only",
    )

    @model_validator(mode="after")
    def _bundled_exists_for_task(self) -> ValidationSetSpec:
        if self.path is None and self.task == "topic" and self.bundled.startswith("news"):
            raise ValueError(f"validation set {self.name!r}: no bundled news set for the topic task")
        return self


def _bundled_sets() -> list[ValidationSetSpec]:
    return [
        ValidationSetSpec(name="sentiment", task="sentiment"),
        ValidationSetSpec(name="topic", task="topic"),
        ValidationSetSpec(name="news_sentiment", task="sentiment", bundled="news"),
    ]


class RetrainSettings(BaseModel):
    """Re-training on fresh human labels (apscheduler cron, or ``finsent retrain --now``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    cron: str = Field(default="0 3 * * *", description="crontab expression (UTC)")
    min_new_labels: int = Field(default=50, ge=1, description="skip the run below this many new/changed labels")
    profile: Literal["default", "quick", "tiny"] = "default"
    auto_promote: bool = Field(default=True, description="promote a challenger that passes the gate")
    label_group: str | None = Field(
        default=None,
        min_length=1,
        description="consumer group of this instance's label intake from the labels topic; unset = one of "
        "its own (finsent-labels.<host and state dir>), so every retrain instance of a standby pair stores "
        "every label",
    )
    # -- the child process
    threads: int = Field(default=1, ge=1, description="torch/OpenMP threads of the training child process")
    nice: int = Field(default=10, ge=0, le=19, description="niceness added to the training child process")
    time_budget: Seconds = Field(default=3600.0, gt=0, description="the child is killed past this; run = timeout")
    # -- the gate
    holdout_share: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="share of fresh labels held out of training (stable hash of the text)"
    )
    min_holdout: int = Field(default=10, ge=1, description="held-out labels needed to judge a challenger")
    min_gain: float = Field(
        default=0.02, ge=0.0, le=1.0, description="required accuracy gain on the held-out fresh labels"
    )
    max_drop: float = Field(
        default=0.01, ge=0.0, le=1.0, description="allowed drop of accuracy and macro-F1 on each fixed validation set"
    )
    validation_sets: list[ValidationSetSpec] = Field(default_factory=_bundled_sets, min_length=1)
    validation_limit: int | None = Field(
        default=None, ge=10, description="rows drawn (seeded) from each fixed set; unset = all"
    )
    # -- shadow scoring (monitor.stages.shadow): 0 = promote as soon as the gate passes
    shadow_share: float = Field(
        default=0.0, ge=0.0, le=1.0, description="share of live stories classify also scores with a shadowed challenger"
    )
    shadow_period: Seconds = Field(
        default=0.0, ge=0, description="a gate-passing challenger is shadowed this long before promotion"
    )
    shadow_min_samples: int = Field(default=200, ge=1, description="shadow-scored stories needed to decide")
    shadow_min_agreement: float = Field(
        default=0.8, ge=0.0, le=1.0, description="sentiment agreement with the champion needed to promote"
    )

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(v)
        except ValueError as err:
            raise ValueError(f"not a crontab expression: {err}") from None
        return v

    @model_validator(mode="after")
    def _shadow_needs_traffic(self) -> RetrainSettings:
        if self.shadow_period > 0 and self.shadow_share <= 0:
            raise ValueError("shadow_period > 0 needs shadow_share > 0 (classify must shadow-score some traffic)")
        return self

    @model_validator(mode="after")
    def _unique_set_names(self) -> RetrainSettings:
        names = [s.name for s in self.validation_sets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"validation_sets: duplicate name(s) {', '.join(dupes)}")
        return self
