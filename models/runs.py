"""Retrain run reports, kept in the registry beside the versions: ``<models_dir>/runs/<run id>.json``.

One report per run of the retrain job, whatever its result (promoted, rejected, skipped, failed,
timeout): the champion's and the challenger's metrics side by side, the gate's decision and its
reason. ``finsent models list|show`` print them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import structlog

from models.registry import Registry, RegistryError, _write_json_atomic

log = structlog.get_logger(__name__)


class RunReports:
    def __init__(self, registry: Registry) -> None:
        self.dir = registry.root / "runs"

    def write(self, report: dict[str, Any]) -> Path:
        """Store one run's report (``report["run_id"]`` names it); atomic."""
        run_id = str(report["run_id"])
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise RegistryError(f"invalid run id {run_id!r}")
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{run_id}.json"
        _write_json_atomic(path, report)
        return path

    def all(self) -> list[dict[str, Any]]:
        """Every readable report, oldest first (run ids sort by time)."""
        if not self.dir.is_dir():
            return []
        out = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                out.append(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, ValueError) as err:
                log.warning("unreadable_run_report", path=str(p), error=str(err))
        return out

    def for_version(self, version: str) -> dict[str, Any] | None:
        """The report of the run that trained ``version`` (None for versions no run made)."""
        found = [r for r in self.all() if r.get("challenger") == version]
        return found[-1] if found else None


def summary_line(report: dict[str, Any]) -> str:
    """``run <id>  <result>  <challenger vs champion>  <reason>`` for listings."""
    who = ""
    if report.get("challenger"):
        who = f"  {report['challenger']} vs {report.get('champion') or '-'}"
    return f"run {report['run_id']}  {report['result']:<9}{who}  {report.get('reason', '')}"
