"""Config sections owned by the streaming stages (``classify``, ``aggregator``).

Durations are written as in :mod:`monitor.core.durations` (``"90s"``, ``"15m"``, ``"1h30m"``) or as a
bare number of seconds.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models import ClassifierSettings
from monitor.core.bus.settings import KafkaSettings, TopicSettings
from monitor.core.durations import Seconds


class ClassifyStageSettings(BaseModel):
    """The classify worker: a consumer-group member that scores ``news.raw`` in micro-batches.

    The batch token budget, row cap and max delay come from the ``classifier`` section.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    group_id: str = "finsent-classify"
    max_in_flight: int = Field(
        default=2048, ge=1, description="stories read but not yet committed; fetching pauses above this"
    )
    poll_max_records: int = Field(default=500, ge=1)
    produce_timeout: Seconds = Field(default=30.0, gt=0, description="wait for the broker to acknowledge")
    lag_interval: Seconds = Field(default=5.0, gt=0, description="how often consumer lag is measured")
    reload_interval: Seconds = Field(default=30.0, gt=0, description="how often the registry is checked")
    items_kept: int = Field(default=10_000, ge=0, description="recent scored items served by GET /items/{id}")
    first_model: Literal["quick", "default", "tiny"] | None = Field(
        default="quick",
        description="with no usable model at start: train this profile in a child process while the daemon "
        "runs (the page answers, stories queue, /readyz shows progress); null (or 'off') = refuse to start without one",
    )

    @field_validator("first_model", mode="before")
    @classmethod
    def _off(cls, v: object) -> object:
        """``FINSENT_CLASSIFY__FIRST_MODEL=null`` (or ``off``, ``none``, empty) from the environment."""
        return None if isinstance(v, str) and v.strip().lower() in ("", "null", "none", "off") else v


class WindowSpec(BaseModel):
    """One window family: tumbling (``hop`` unset or equal to ``size``) or sliding."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=32, description="what TrendPoint.window and ?window= say")
    size: Seconds = Field(gt=0)
    hop: Seconds | None = Field(default=None, gt=0, description="sliding step; unset = tumbling")

    @model_validator(mode="after")
    def _aligned(self) -> WindowSpec:
        hop = self.hop_s
        if hop > self.size:
            raise ValueError(f"window {self.name}: hop ({hop:g}s) must not exceed size ({self.size:g}s)")
        ratio = self.size / hop
        if abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"window {self.name}: size ({self.size:g}s) must be a multiple of hop ({hop:g}s)")
        if self.size < 0.001 or hop < 0.001:
            raise ValueError(f"window {self.name}: size and hop must be at least 1ms")
        return self

    @property
    def hop_s(self) -> float:
        return self.hop if self.hop is not None else self.size

    @property
    def sliding(self) -> bool:
        return self.hop_s < self.size


DEFAULT_TICKER_RELEVANCE_FLOOR = 0.2
"""Below this relevance a ticker mention does not feed the ticker's trend (docs/STREAMING.md)."""


def _default_windows() -> list[WindowSpec]:
    return [
        WindowSpec(name="1m", size=60),
        WindowSpec(name="5m", size=300),
        WindowSpec(name="15m", size=900, hop=300),
        WindowSpec(name="1h", size=3600, hop=900),
    ]


class AggregatorSettings(BaseModel):
    """Event-time windows over ``news.scored`` per trend key (see docs/STREAMING.md)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    group_id: str = "finsent-aggregate"
    windows: list[WindowSpec] = Field(default_factory=_default_windows, min_length=1)
    grace: Seconds = Field(default=120.0, ge=0, description="how long after a window's end late stories count")
    idle_timeout: Seconds = Field(
        default=30.0,
        ge=0,
        description="an upstream partition read to its end, with classify caught up on the raw topic and "
        "silent this long (wall time), stops holding the watermark back",
    )
    baseline_windows: int = Field(default=12, ge=1, description="previous windows behind the volume baseline")
    min_baseline_windows: int = Field(default=3, ge=1, description="fewer than this: no volume_z")
    ewma_alpha: float = Field(default=0.3, gt=0.0, le=1.0)
    top_items: int = Field(default=5, ge=0, description="evidence stories kept per window")
    history_windows: int = Field(default=96, ge=1, description="closed windows kept per key for queries")
    flush_interval: Seconds = Field(
        default=0.25, gt=0, description="coalescing interval: updated windows are emitted and checkpointed this often"
    )
    repartition_topic: str | None = Field(
        default=None, description="internal topic keyed by trend key; unset = '<topics.scored>.bykey'"
    )
    poll_max_records: int = Field(default=1000, ge=1)
    produce_timeout: Seconds = Field(default=30.0, gt=0)
    lag_interval: Seconds = Field(default=5.0, gt=0)
    state_file: str = Field(default="aggregate.db", description="SQLite checkpoint under home/state")
    metric_tickers: list[str] = Field(
        default_factory=list,
        max_length=200,
        description='tickers whose latest trends are also Prometheus gauges (finsent_trend_*{key="ticker:X"}); '
        "bounded by this list - every other ticker is in GET /trends only",
    )
    ticker_relevance_floor: float = Field(
        default=DEFAULT_TICKER_RELEVANCE_FLOOR,
        ge=0.0,
        le=1.0,
        description="a story feeds 'ticker:SYM' only when its relevance to SYM is at least this; above it the "
        "story counts weighted by relevance (docs/STREAMING.md, 'Per-ticker sentiment and relevance')",
    )
    changelog: bool = Field(
        default=True,
        description="back the checkpoint with the compacted topic '<repartition topic>.changelog' "
        "(Kafka only), so a partition moving to another host is restored from it",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> AggregatorSettings:
        names = [w.name for w in self.windows]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"window names must be unique, repeated: {', '.join(dupes)}")
        if self.min_baseline_windows > self.baseline_windows:
            raise ValueError("min_baseline_windows must not exceed baseline_windows")
        return self

    def window(self, name: str) -> WindowSpec | None:
        return next((w for w in self.windows if w.name == name), None)


class StageConfig(Protocol):
    """What the stages read from the root settings (``monitor.app.config.Settings`` satisfies it)."""

    @property
    def kafka(self) -> KafkaSettings: ...

    @property
    def topics(self) -> TopicSettings: ...

    @property
    def classify(self) -> ClassifyStageSettings: ...

    @property
    def classifier(self) -> ClassifierSettings: ...

    @property
    def aggregator(self) -> AggregatorSettings: ...
