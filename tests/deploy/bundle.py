"""Reading the shipped deploy/ bundle: compose services, the roles they run, Prometheus targets."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ROLES = ("ingest", "classify", "aggregate", "alerts", "retrain")


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def prometheus_config() -> dict:
    return yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())


def role_of(service: dict) -> str | None:
    """The finsent role a compose service runs (``finsent run --stages ROLE``), or None."""
    cmd = service.get("command") or []
    if cmd[:3] == ["finsent", "run", "--stages"] and len(cmd) > 3:
        return cmd[3]
    return None


def role_services() -> dict[str, dict]:
    return {name: s for name, s in compose()["services"].items() if role_of(s)}


def scrape_targets(config: dict) -> list[tuple[str, str, int]]:
    """(job, host, port) for every static and DNS target of every scrape job."""
    out = []
    for job in config.get("scrape_configs", []):
        for sc in job.get("static_configs", []):
            for target in sc.get("targets", []):
                host, _, port = target.rpartition(":")
                out.append((job["job_name"], host, int(port)))
        for dc in job.get("dns_sd_configs", []):
            for name in dc.get("names", []):
                out.append((job["job_name"], name, int(dc["port"])))
    return out


def service_port(service: dict) -> int | None:
    port = (service.get("environment") or {}).get("FINSENT_HTTP__PORT")
    return int(port) if port is not None else None


def mounts(service: dict) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount with a relative host path."""
    out = []
    for v in service.get("volumes", []) or []:
        src, _, rest = v.partition(":")
        if src.startswith("."):
            out.append((src, rest.split(":")[0]))
    return out


def for_duration_zero(rules_text: str, to: str = "0s") -> str:
    """A copy of rules.yml with every ``for:`` shortened (for tests that cannot wait minutes)."""
    return re.sub(r"^(\s*)for: .*$", rf"\1for: {to}", rules_text, flags=re.M)
