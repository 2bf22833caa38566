"""Alert rules as written in YAML, validated with messages that name the rule and the field.

Four rule types (``type:``):

* ``threshold`` - a metric of one window of a key crosses a value, e.g. the negative share of
  ``topic:Energy | Oil`` over ``15m`` above 0.6 with at least 20 stories;
* ``change`` - a metric on one window minus a metric on another window of the same key, e.g.
  EWMA over ``5m`` minus EWMA over ``1h`` below -0.4 (a sentiment drop);
* ``spike`` - the volume z-score of a window above a value (default 3);
* ``story`` - a single first-seen story whose own sentiment for a watched ticker (relevant enough)
  is below a value.

``key`` is an exact trend key (``all``, ``topic:<name>``, ``ticker:<SYM>``, ``source:<name>``) or
a shell-style pattern (``ticker:*``); each matching key is its own alert.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from alerts.templating import Template, TemplateError
from monitor.core.durations import Duration
from monitor.core.secrets import mask_message
from monitor.core.yamlfile import YamlFileError, load_yaml

Op = Literal[">", ">=", "<", "<="]
TrendMetric = Literal[
    "count", "mean_score", "negative_share", "positive_share", "ewma", "weighted_mean", "volume_z", "baseline_mean"
]
RuleType = Literal["threshold", "change", "spike", "story"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_LABELS = frozenset({"alertname", "severity"})

COMMON_VARIABLES = frozenset({"rule", "severity", "value", "threshold", "op"})
TREND_VARIABLES = COMMON_VARIABLES | {"key", "window", "metric", "count", "subject"}


METRIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    "mean_score": (-1.0, 1.0),
    "ewma": (-1.0, 1.0),
    "weighted_mean": (-1.0, 1.0),
    "baseline_mean": (-1.0, 1.0),
    "negative_share": (0.0, 1.0),
    "positive_share": (0.0, 1.0),
    "count": (0.0, None),
    "volume_z": (None, None),
}
"""What each trend metric can be: scores in [-1, 1], shares in [0, 1], counts from 0 (None: unbounded)."""


def _span(lo: float | None, hi: float | None) -> str:
    return f"[{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"


def range_problem(what: str, op: str, value: float, lo: float | None, hi: float | None) -> str | None:
    """Why ``<what> <op> <value>`` is a rule that cannot work, given that ``what`` is in [lo, hi]: it
    can never hold, or the value lies outside what ``what`` can be. None when it is fine."""
    can_hold = {
        "<": lo is None or lo < value,
        "<=": lo is None or lo <= value,
        ">": hi is None or hi > value,
        ">=": hi is None or hi >= value,
    }[op]
    if not can_hold:
        return f"value: {what} {op} {value:g} can never hold ({what} is in {_span(lo, hi)}); the rule could never fire"
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return f"value: {value:g} is outside what {what} can be ({_span(lo, hi)})"
    return None


class RuleBase(BaseModel):
    """What every rule has: identity, timing, routing and presentation."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, allow_inf_nan=False)

    VARIABLES: ClassVar[frozenset[str]] = COMMON_VARIABLES

    name: str = Field(description="unique; becomes the alertname label")
    for_: Duration = Field(default=timedelta(0), alias="for", description="must hold this long; 0 = fire at once")
    severity: str = Field(default="warning", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict, description="templated: {{ key }}, {{ value }}")
    receiver: str | None = Field(default=None, description="configured receiver; unset = alerts.default_receiver")
    group_by: tuple[str, ...] = Field(default=("alertname",), description="labels that form a notification group")
    repeat_interval: Duration = Field(default=timedelta(hours=4), description="re-send while firing; 0 = never")
    send_resolved: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"invalid rule name {v!r}: letters, digits, '_', '.', ':', '-' (max 128)")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _LABEL_NAME.match(name):
                raise ValueError(f"invalid label name {name!r}")
            if name in RESERVED_LABELS:
                raise ValueError(f"label {name!r} is set by finsent; use the rule's name/severity instead")
        return v

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if name != "..." and not _LABEL_NAME.match(name):
                raise ValueError(f"invalid label name {name!r}")
        return tuple(dict.fromkeys(v))

    @field_validator("annotations")
    @classmethod
    def _templates(cls, v: dict[str, str]) -> dict[str, str]:
        # a field validator (not a model one) so its errors show beside those of other fields
        problems = []
        for field, text in v.items():
            try:
                Template.parse(text, cls.VARIABLES)
            except TemplateError as err:
                problems.append(f"{field}: {err}")
        if problems:
            raise ValueError("\n".join(problems))
        return v

    def templates(self) -> dict[str, Template]:
        return {k: Template.parse(v) for k, v in self.annotations.items()}


class TrendRule(RuleBase):
    """A rule over TrendPoints of the keys matching ``key`` on ``window``."""

    VARIABLES: ClassVar[frozenset[str]] = TREND_VARIABLES

    key: str = Field(min_length=1, description="trend key or pattern, e.g. 'topic:Energy | Oil', 'ticker:*'")
    window: str = Field(min_length=1, description="window name from the aggregator config, e.g. '15m'")
    min_count: int = Field(default=0, ge=0, description="stories the window needs before the rule can hold")
    keep_firing_for: Duration = Field(
        default=timedelta(0),
        description="once firing, stay firing this long after the condition stops holding; it holding again "
        "in that time continues the same episode (no new alert). 0 = resolve at once",
    )

    @property
    def is_pattern(self) -> bool:
        return any(c in self.key for c in "*?[")

    @property
    def windows(self) -> tuple[str, ...]:
        return (self.window,)


class ThresholdRule(TrendRule):
    type: Literal["threshold"]
    metric: TrendMetric
    op: Op = ">"
    value: float

    @model_validator(mode="after")
    def _can_fire(self) -> ThresholdRule:
        if problem := range_problem(self.metric, self.op, self.value, *METRIC_RANGES[self.metric]):
            raise ValueError(problem)
        return self


class ChangeRule(TrendRule):
    """``metric`` on ``window`` minus ``baseline_metric`` on ``baseline_window``, compared to ``value``."""

    VARIABLES: ClassVar[frozenset[str]] = TREND_VARIABLES | {"current", "baseline", "baseline_window"}

    type: Literal["change"]
    metric: TrendMetric = "ewma"
    baseline_window: str = Field(min_length=1)
    baseline_metric: TrendMetric | None = Field(default=None, description="default: the same metric")
    op: Op = "<"
    value: float

    @model_validator(mode="after")
    def _two_windows(self) -> ChangeRule:
        if self.baseline_window == self.window:
            raise ValueError("baseline_window must differ from window")
        lo, hi = METRIC_RANGES[self.metric]
        base_lo, base_hi = METRIC_RANGES[self.baseline_metric or self.metric]
        span = (
            None if lo is None or base_hi is None else lo - base_hi,
            None if hi is None or base_lo is None else hi - base_lo,
        )
        if problem := range_problem(f"the change of {self.metric}", self.op, self.value, *span):
            raise ValueError(problem)
        return self

    @property
    def windows(self) -> tuple[str, ...]:
        return (self.window, self.baseline_window)


class SpikeRule(TrendRule):
    """Volume z-score of the window (``volume_z``) against ``value``."""

    type: Literal["spike"]
    op: Op = ">"
    value: float = 3.0

    @property
    def metric(self) -> str:
        return "volume_z"


class StoryRule(RuleBase):
    """One story: a watched ticker, first seen, that ticker's own sentiment score below ``value``.

    Each watched ticker of the story is measured on its entity sentiment (the story's when the
    record has none for it); mentions less relevant than ``min_relevance`` are ignored."""

    VARIABLES: ClassVar[frozenset[str]] = COMMON_VARIABLES | {
        "title",
        "source",
        "url",
        "ticker",
        "story_id",
        "topic",
        "score",
        "published_at",
        "subject",
        "relevance",
        "story_score",
    }

    type: Literal["story"]
    tickers: tuple[str, ...] = Field(default=("*",), description="watched tickers; '*' = any ticker")
    topics: tuple[str, ...] = Field(default=(), description="optional topic filter (exact names)")
    op: Op = "<"
    value: float = -0.8
    first_seen_only: bool = Field(default=True, description="only stories with novelty 1.0 (first sighting)")
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0, description="of the ticker's own sentiment")
    min_relevance: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="ignore a ticker the story is less about than this (a passing mention); a record without "
        "relevance for the ticker is not filtered",
    )
    resolve_after: Duration = Field(default=timedelta(hours=1), description="a story alert resolves after this")
    send_resolved: bool = False

    @field_validator("tickers")
    @classmethod
    def _tickers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("list at least one ticker, or '*' for any")
        return tuple(t if t == "*" else t.upper() for t in v)

    @model_validator(mode="after")
    def _no_for(self) -> StoryRule:
        if self.for_ > timedelta(0):
            raise ValueError("for: a story rule fires on one story; 'for' must be 0")
        if problem := range_problem("a story's score", self.op, self.value, -1.0, 1.0):
            raise ValueError(problem)
        return self

    @property
    def any_ticker(self) -> bool:
        return "*" in self.tickers


Rule = Annotated[ThresholdRule | ChangeRule | SpikeRule | StoryRule, Field(discriminator="type")]
_RULE = TypeAdapter(Rule)


class RulesError(ValueError):
    """A rules file is unreadable or invalid; ``problems`` has one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = mask_message(source)  # URL credentials masked, control and bidi characters escaped
        self.problems = [mask_message(p) for p in problems]
        source, problems = self.source, self.problems
        super().__init__(f"invalid alert rules ({source}):\n" + "\n".join(f"  - {p}" for p in problems))


class RuleSet(BaseModel):
    """The validated rules of one file."""

    model_config = ConfigDict(frozen=True)
    source: str = "<inline>"
    rules: tuple[Rule, ...] = ()

    @property
    def trend_rules(self) -> list[TrendRule]:
        return [r for r in self.rules if isinstance(r, TrendRule)]

    @property
    def story_rules(self) -> list[StoryRule]:
        return [r for r in self.rules if isinstance(r, StoryRule)]

    def by_name(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)


def _clean_msg(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def _rule_errors(name: str, err: ValidationError, tag: object) -> list[str]:
    out: list[str] = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        if loc and loc[0] == tag:
            loc = loc[1:]
        msg = _clean_msg(e["msg"])
        if e["type"] == "union_tag_invalid":
            msg = f"unknown rule type {tag!r} (expected threshold, change, spike or story)"
            loc = ["type"]
        elif e["type"] == "union_tag_not_found":
            msg = "missing (threshold, change, spike or story)"
            loc = ["type"]
        elif e["type"] == "extra_forbidden":
            msg = "unknown field"
        if loc == ["annotations"]:  # one line per bad template: "annotations.<field>: ..."
            out.extend(f"rule {name!r}: annotations.{m}" for m in msg.split("\n"))
            continue
        # a model-level message that already names its field ("for: ...") needs no prefix
        if not loc and ":" in msg.split(" ", 1)[0]:
            out.append(f"rule {name!r}: {msg}")
        else:
            out.append(f"rule {name!r}: {'.'.join(loc) or '<rule>'}: {msg}")
    return out


def parse_rules(
    data: Any,
    source: str = "<inline>",
    receivers: set[str] | dict[str, Any] | None = None,
    default_receiver: str | None = None,
    windows: Collection[str] | None = None,
) -> RuleSet:
    """Validate parsed YAML (``{rules: [...]}`` or a bare list) into a :class:`RuleSet`.

    Every problem of every rule is reported at once; with ``receivers`` given, each rule's
    receiver (also of a rule that is invalid otherwise) must be one of them; with ``windows``
    given (the aggregator's window names), each trend rule's windows must be among them."""
    if isinstance(data, dict):
        extra = sorted(str(k) for k in set(data) - {"rules"})
        if extra:
            raise RulesError(source, [f"<root>: unknown section(s) {', '.join(extra)} (expected 'rules')"])
        data = data.get("rules") or []
    if data is None:
        data = []
    if not isinstance(data, list):
        raise RulesError(source, [f"rules: expected a list of rules, got {type(data).__name__}"])
    problems: list[str] = []
    rules: list[Any] = []
    seen: set[str] = set()
    for i, raw in enumerate(data):
        if not isinstance(raw, dict):
            problems.append(f"rule #{i + 1}: expected a mapping, got {type(raw).__name__}")
            continue
        name = str(raw.get("name") or f"#{i + 1}")
        if name in seen:
            problems.append(f"rule {name!r}: name: duplicate rule name")
            continue
        seen.add(name)
        try:
            rule = _RULE.validate_python(raw)
            rules.append(rule)
            if windows is not None and isinstance(rule, TrendRule):
                for field, window in zip(("window", "baseline_window"), rule.windows):
                    if window not in windows:
                        problems.append(
                            f"rule {name!r}: {field}: no aggregator window is named {window!r}, so the rule could "
                            f"never fire (aggregator.windows: {', '.join(windows) or 'none'})"
                        )
        except ValidationError as err:
            problems.extend(_rule_errors(name, err, raw.get("type")))
        except RecursionError:
            problems.append(f"rule {name!r}: nested too deeply")
        if receivers is not None:
            target = raw.get("receiver") or default_receiver
            if isinstance(target, str) and target not in receivers:
                field = "receiver" if raw.get("receiver") else "receiver (alerts.default_receiver)"
                problems.append(
                    f"rule {name!r}: {field}: unknown receiver {target!r} "
                    f"(configured: {', '.join(sorted(receivers)) or 'none'})"
                )
    if problems:
        raise RulesError(source, problems)
    return RuleSet(source=source, rules=tuple(rules))


def load_rules(
    path: str | Path,
    receivers: set[str] | dict[str, Any] | None = None,
    default_receiver: str | None = None,
    windows: Collection[str] | None = None,
) -> RuleSet:
    path = Path(path)
    try:
        data = load_yaml(path)
    except YamlFileError as err:
        raise RulesError(str(path), [str(err)]) from None
    return parse_rules(data, str(path), receivers, default_receiver, windows)
