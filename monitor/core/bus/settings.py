"""Where the bus lives (``kafka``) and what its topics are called (``topics``): sections of the root settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from monitor.core.section import Section


class KafkaSettings(Section):
    """Where the bus lives. ``bootstrap`` unset means the in-process bus (embedded mode)."""

    bootstrap: str | None = Field(default=None, description="host:port[,host:port]; unset = in-process bus")
    client_id: str = "finsent"
    partitions: int = Field(default=3, ge=1, description="partitions for topics finsent creates")
    memory_max_records: int = Field(
        default=50_000,
        ge=1000,
        description="in-process bus (no bootstrap): records kept per partition of a topic "
        "no consumer group reads; read topics keep only what some group has not committed yet",
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        description="copies of each partition of the topics finsent creates (3 on a three-broker cluster: one "
        "broker may die with nothing lost); checked against the cluster's brokers at start",
    )
    min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="topics finsent creates accept a write once this many copies have it (with acks=all); "
        "unset = the broker's default (kafka-local: 2 on three brokers, else 1)",
    )
    request_timeout_ms: int = Field(default=30_000, ge=1000)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    metadata_max_age_ms: int = Field(
        default=5_000,
        ge=100,
        description="consumers refresh topic metadata this often (a member that joined before a new "
        "topic's partitions were visible gets them at the next refresh)",
    )
    topic_ready_timeout_s: float = Field(default=15.0, gt=0, description="wait for created topics' metadata")
    linger_ms: int = Field(default=5, ge=0)
    batch_size: int = Field(default=64 * 1024, ge=1024)
    compression: Literal["gzip"] | None = None
    max_request_size: int = Field(default=4 * 1024 * 1024, ge=1024)
    buffer_memory: int = Field(
        default=32 * 1024 * 1024,
        ge=1024 * 1024,
        description="bytes a producer buffers while the broker is slow or away; past it sends fail clearly",
    )
    max_block_ms: int = Field(default=5_000, ge=0, description="a send waits this long for buffer space")
    startup_timeout_s: float = Field(
        default=0.0, ge=0, description="a daemon waits this long for the broker at start (0 = for ever)"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    @field_validator("bootstrap")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is None or v.strip() == "":
            return None  # (an empty FINSENT_KAFKA__BOOTSTRAP over a file that names a broker: load_settings)
        for server in v.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not (0 < int(port) < 65536):
                raise ValueError(f"expected host:port, got {server.strip()!r}")
        return v.strip()

    @property
    def enabled(self) -> bool:
        return self.bootstrap is not None

    @model_validator(mode="after")
    def _insync_within_copies(self) -> KafkaSettings:
        if self.min_insync_replicas is not None and self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) exceeds replication_factor "
                f"({self.replication_factor}): no write could ever be accepted"
            )
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in (self.bootstrap or "").split(",") if s.strip()]

    def security_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        return opts


class TopicSettings(Section):
    raw: str = "news.raw"
    scored: str = "news.scored"
    trends: str = "news.trends"
    labels: str = "news.labels"
    dlq: str = "news.dlq"
    alerts: str = "news.alerts"
    retrain_lease: str = Field(
        default="finsent.retrain.lease",
        description="one-partition topic whose consumer group elects the retrain instance that trains "
        "(monitor.core.bus.lease); nothing is written to it",
    )

    ingest_feeds: str = Field(
        default="finsent.ingest.feeds",
        description="compacted topic whose partitions are the slots that split polled feeds among ingest "
        "instances (a consumer group); it also holds each feed's recently published ids for its next owner",
    )

    def all(self) -> list[str]:
        return [self.raw, self.scored, self.trends, self.labels, self.dlq, self.alerts]
