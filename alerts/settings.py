"""Config section owned by the alert stage (``alerts``).

Example::

    alerts:
      rules_file: /etc/finsent/rules.yaml      # unset = the packaged alerts/rules/example.yaml
      default_receiver: ops
      receivers:
        ops:   {type: webhook, url: https://hooks.example.com/finsent, secret: "s3cret"}
        chat:  {type: slack, url: https://hooks.slack.com/services/T000/B000/XXX}
        local: {type: file}                     # JSON lines in $FINSENT_HOME/alerts.jsonl
        am:    {type: alertmanager, url: http://alertmanager:9093}   # POST /api/v2/alerts
      retry: {initial_backoff: 1s, max_backoff: 5m}
      outbox: {dead_letter_after: 24h}

:class:`EngineOptions` is what the evaluator runs with: this section resolved by the composition
root (with the HTTP address and the aggregator's window hops), or written out by a test or a replay.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from alerts.ruleset import RulesError, load_rules
from monitor.core.durations import Duration
from monitor.core.secrets import http_url_problem
from monitor.core.section import Section

if TYPE_CHECKING:
    from alerts.ruleset import RuleSet

PACKAGED_RULES = Path(__file__).resolve().parent / "rules" / "example.yaml"


class ReceiverSettings(Section):
    """Where notifications go. ``webhook``: Alertmanager v4 JSON; ``slack``: ``{"text": ...}``;
    ``file``: JSON lines appended to ``path`` (default ``$FINSENT_HOME/alerts.jsonl``; ``-`` = stdout);
    ``alertmanager``: the alerts pushed to an Alertmanager's ``POST {url}/api/v2/alerts``, firing ones
    re-sent every ``resend_interval`` (keep it below Alertmanager's ``resolve_timeout``, 5m by default)."""

    type: Literal["webhook", "slack", "file", "alertmanager"] = "webhook"
    url: str | None = Field(default=None, description="webhook/slack: the endpoint; alertmanager: its base URL")
    secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key for X-Finsent-Signature")
    timeout: Duration = Field(default=timedelta(seconds=5), description="per request (connect + read)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    path: Path | None = None
    max_alerts: int = Field(
        default=0, ge=0, description="alerts per notification; 0 = all (rest counted in truncatedAlerts)"
    )
    send_resolved: bool = True
    resend_interval: Duration = Field(
        default=timedelta(minutes=1),
        description="alertmanager: re-send firing alerts this often (below Alertmanager's resolve_timeout)",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and (problem := http_url_problem(v)):
            raise ValueError(problem)  # the error line shows the URL once, its credentials masked
        return v

    @model_validator(mode="after")
    def _fits_type(self) -> ReceiverSettings:
        if self.type in ("webhook", "slack", "alertmanager") and not self.url:
            raise ValueError(f"a {self.type} receiver needs url")
        if self.type == "file" and self.url:
            raise ValueError("a file receiver takes path, not url")
        if self.timeout <= timedelta(0):
            raise ValueError("timeout must be positive")
        if self.resend_interval <= timedelta(0):
            raise ValueError("resend_interval must be positive")
        return self


class RetrySettings(Section):
    """Backoff between delivery attempts: ``initial * multiplier**(n-1)``, capped, with jitter."""

    initial_backoff: Duration = timedelta(seconds=1)
    max_backoff: Duration = timedelta(minutes=5)
    multiplier: float = Field(default=2.0, ge=1.0)
    jitter: float = Field(default=0.2, ge=0.0, le=1.0, description="fraction of the delay randomised")
    max_retry_after: Duration = Field(default=timedelta(hours=1), description="cap on an honoured Retry-After")


class OutboxSettings(Section):
    dead_letter_after: Duration = Field(default=timedelta(hours=24), description="give up on a notification this old")
    poll_interval: Duration = Field(default=timedelta(seconds=1), description="deliverer idle poll")
    batch_size: int = Field(default=50, ge=1)
    keep_delivered: Duration = Field(default=timedelta(days=7), description="delivered rows kept for inspection")


class EvaluationSettings(Section):
    group_id: str = "finsent-alerts"
    stale_after: Duration = Field(
        default=timedelta(hours=1),
        description="a firing trend alert whose key sent nothing for this long (event time) resolves",
    )
    retention: Duration = Field(default=timedelta(days=7), description="resolved alerts kept for `finsent alerts`")
    max_evidence: int = Field(default=5, ge=0, description="headlines attached to an alert")
    catch_up_after: Duration = Field(
        default=timedelta(minutes=10),
        description="notifications evaluated this far behind real time carry a catch_up annotation with the lag",
    )


class AlertsSettings(Section):
    enabled: bool = True
    rules_file: Path | None = Field(default=None, description="unset = the packaged example rules")
    default_receiver: str = "local"
    receivers: dict[str, ReceiverSettings] = Field(default_factory=lambda: {"local": ReceiverSettings(type="file")})
    retry: RetrySettings = Field(default_factory=RetrySettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)

    @field_validator("receivers")
    @classmethod
    def _receiver_names(cls, v: dict[str, ReceiverSettings]) -> dict[str, ReceiverSettings]:
        for name in v:
            if not name or name.startswith("_") or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"invalid receiver name {name!r}: letters, digits, '-' and '_'")
        return v

    def rules_path(self) -> Path:
        return self.rules_file if self.rules_file is not None else PACKAGED_RULES

    def load_rules(self, windows: Collection[str] | None = None) -> RuleSet:
        """The validated rules, checked against the configured receivers (and, given ``windows``,
        the aggregator's window names); raises RulesError."""

        return load_rules(self.rules_path(), self.receivers, self.default_receiver, windows)

    def problems(self, windows: Collection[str] | None = None) -> list[str]:
        """Everything wrong with the rules file, one line each (empty when it is fine); with
        ``windows`` (the aggregator's), a rule on any other window is one of them."""
        if not self.enabled:
            return []

        try:
            self.load_rules(windows)
        except RulesError as err:
            return [f"alerts.rules_file ({err.source}): {p}" for p in err.problems]
        return []


@dataclass
class EngineOptions:
    """What rule evaluation, the alert lifecycle and notification dispatch read while they run."""

    receivers: dict[str, ReceiverSettings] = field(default_factory=lambda: {"local": ReceiverSettings(type="file")})
    default_receiver: str = "local"
    external_url: str = "http://127.0.0.1:8080"
    publish_topic: str | None = None
    stale_after: timedelta = timedelta(hours=1)
    retention: timedelta = timedelta(days=7)
    max_evidence: int = 5
    window_hops: dict[str, timedelta] = field(default_factory=dict)
    """Hop of each sliding window family (from the aggregator config); unknown = tumbling."""
    catch_up_after: timedelta = timedelta(minutes=10)
    """A notification whose event time is this far behind real time is marked ``catch_up``."""
