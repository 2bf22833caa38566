"""The one settings object: a YAML file plus ``FINSENT_*`` environment variables.

Precedence (highest first): environment variables (``FINSENT_`` prefix, ``__`` for nesting, e.g.
``FINSENT_KAFKA__BOOTSTRAP=127.0.0.1:9092``), the YAML file, then the defaults below.
Validated once at start-up; :func:`load_settings` turns every problem into a :class:`ConfigError`
that lists each bad field by its dotted path.

Each subsystem owns its own section model (``models.settings``, ``connectors.settings``,
``alerts.settings``, ``monitor.stages.settings``); this module only assembles them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from alerts.settings import AlertsSettings
from connectors.settings import ConnectorsSettings
from models.settings import ClassifierSettings, TrainingSettings
from monitor.app.auth import HttpAuthSettings, host_pattern
from monitor.core.bus.settings import KafkaSettings, TopicSettings
from monitor.core.secrets import http_url_problem, is_secret_field, mask_config, mask_message, secret_values
from monitor.core.section import Section
from monitor.core.yamlfile import YamlFileError, load_yaml
from monitor.learning.settings import RetrainSettings
from monitor.stages.settings import AggregatorSettings, ClassifyStageSettings


class HttpSettings(Section):
    enabled: bool = True
    host: str = Field(default="127.0.0.1", description="loopback by default; reads need a token off loopback")
    port: int = Field(default=8080, ge=0, lt=65536, description="0 = pick a free port")
    public_url: str | None = Field(default=None, description="base URL used in alert generatorURL links")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header names the API answers besides loopback, the bind host and public_url's host "
        "('*.example.com' for a domain, '*' for any); others get 400. Unset with host 0.0.0.0: any",
    )
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="larger request bodies get 413 (push ingest: per-source cap)"
    )
    auth: HttpAuthSettings = Field(default_factory=HttpAuthSettings)
    tls_cert: Path | None = Field(default=None, description="PEM certificate chain: serve HTTPS")
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, v: list[str]) -> list[str]:
        return [host_pattern(h) for h in v]

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is not None and (problem := http_url_problem(v)):
            raise ValueError(problem)
        return v

    def problems(self) -> list[str]:
        out = self.auth.problems() if self.enabled else []
        if self.enabled and (self.tls_cert is None) != (self.tls_key is None):
            out.append("http: give both tls_cert and tls_key, or neither")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if self.enabled and path is not None and not path.is_file():
                out.append(f"http.{name}: no such file: {path}")
        return out


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "console"


DEMO_GRACE_WALL_S = 5.0
"""Wall seconds of lateness the demo replay's windows absorb (see ``Settings._demo_grace``)."""


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("finsent", appauthor=False))


class Settings(BaseSettings):
    """Everything finsent can be told. See ``deploy/finsent.example.yaml`` for a commented file."""

    model_config = SettingsConfigDict(
        env_prefix="FINSENT_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home, description="models, state and outboxes live here")
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    classify: ClassifyStageSettings = Field(default_factory=ClassifyStageSettings)
    aggregator: AggregatorSettings = Field(default_factory=AggregatorSettings)
    connectors: ConnectorsSettings = Field(default_factory=ConnectorsSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings, file_secret_settings)

    @model_validator(mode="after")
    def _demo_grace(self) -> Settings:
        # The demo replays two hours a minute: a second of classify batching skew is two minutes
        # of event time, past the default grace. Unless grace is set, give the demo
        # DEMO_GRACE_WALL_S of wall time (in event time), so its windows keep their stories.
        if self.connectors.demo and "grace" not in self.aggregator.model_fields_set:
            self.aggregator.grace = max(self.aggregator.grace, DEMO_GRACE_WALL_S * self.connectors.demo_speed)
        return self

    # -- derived paths ----------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    def ensure_dirs(self) -> None:
        for d in (self.home, self.models_dir, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)

    def masked(self) -> dict[str, Any]:
        """The resolved config as plain data with every secret shown as ``**********``."""

        return mask_config(self.model_dump(mode="json"))

    def secret_values(self) -> set[str]:
        """Every secret string this config holds (for redacting logs and error messages)."""

        out = secret_values(self.model_dump())
        for token in self.http.auth.tokens:
            try:
                out.add(token.reveal())
            except ValueError:
                pass
        return out


class ConfigError(ValueError):
    """The configuration is invalid; ``errors`` holds one ``path: message`` line per problem.

    Every line passes :func:`monitor.core.secrets.mask_message`: ``secrets`` (the values the rejected
    configuration holds) and URL credentials masked, control and bidi characters escaped."""

    def __init__(self, source: str, errors: list[str], secrets: Iterable[str] = ()) -> None:
        secrets = set(secrets)
        self.source = mask_message(source, secrets)
        self.errors = [mask_message(e, secrets) for e in errors]
        super().__init__(f"invalid configuration ({self.source}):\n" + "\n".join(f"  - {e}" for e in self.errors))


def _format_errors(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = e.get("input")
        hidden = isinstance(got, (dict, list)) or got is None or is_secret_field(e["loc"])
        lines.append(f"{path}: {e['msg']}" + ("" if hidden else f" (got {got!r})"))
    return lines


ENV_PREFIX = "FINSENT_"


def _env_secrets() -> set[str]:
    """Values of ``FINSENT_*`` variables that set a secret field (never echoed in an error)."""
    return {
        v
        for k, v in os.environ.items()
        if k.upper().startswith(ENV_PREFIX) and v and is_secret_field(k[len(ENV_PREFIX) :].lower().split("__"))
    }


def _unparsable_env_vars() -> list[str]:
    """The ``FINSENT_*`` variables that pydantic-settings cannot read (a section or list given as a
    value that is not JSON), found by reading each variable alone."""
    probe = EnvSettingsSource(Settings)
    everything = dict(probe.env_vars)
    bad = []
    for name, value in everything.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        probe.env_vars = {name: value}
        try:
            probe()
        except (SettingsError, ValueError):
            bad.append(name.upper())
    return sorted(bad)


def _empty_bootstrap_over_a_broker(data: dict[str, Any]) -> str | None:
    """An explicitly empty ``FINSENT_KAFKA__BOOTSTRAP`` while the file names a broker would quietly
    switch to the in-process bus: refused (unset the variable instead)."""
    env = next((v for k, v in os.environ.items() if k.upper() == "FINSENT_KAFKA__BOOTSTRAP"), None)
    kafka = data.get("kafka")
    named = kafka.get("bootstrap") if isinstance(kafka, dict) else None
    if env is not None and not env.strip() and isinstance(named, str) and named.strip():
        return (
            "FINSENT_KAFKA__BOOTSTRAP is set but empty, while the file sets kafka.bootstrap: an empty value "
            "would silently drop the broker for the in-process bus. Unset the variable to use the file's "
            "broker, or give host:port"
        )
    return None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path)
    except YamlFileError as err:
        raise ConfigError(str(path), [str(err)], _env_secrets()) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"<root>: expected a mapping of sections, got {type(data).__name__}"])
    return data


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load and validate settings from ``path`` (optional) and the environment.

    ``overrides`` (keyword sections, e.g. ``kafka={"bootstrap": ...}``) are merged over the file;
    environment variables still win over both.
    """
    data: dict[str, Any] = read_yaml(Path(path)) if path else {}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    source = str(path) if path else "defaults + environment"
    if problem := _empty_bootstrap_over_a_broker(data):
        raise ConfigError(source, [problem])
    try:
        return Settings(**data)
    except ValidationError as err:
        raise ConfigError(source, _format_errors(err), secret_values(data) | _env_secrets()) from None
    except SettingsError as err:
        bad = _unparsable_env_vars()
        lines = [
            f"{name}: not valid JSON (this setting is a section, a list or a mapping, so the variable must hold JSON)"
            for name in bad
        ] or [f"environment: {err}"]
        raise ConfigError(source, lines, _env_secrets()) from None
