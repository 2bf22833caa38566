"""Liveness and readiness: what ``/healthz`` and ``/readyz`` report."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from monitor.core.secrets import mask_urls_in


class Check(BaseModel):
    name: str
    ok: bool
    detail: str = ""


class HealthReport(BaseModel):
    status: str
    checks: list[Check]


@dataclass
class Health:
    """Named checks registered by components; liveness and readiness are evaluated on request."""

    _live: dict[str, Callable[[], tuple[bool, str]]] = field(default_factory=dict)
    _ready: dict[str, Callable[[], tuple[bool, str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_liveness(self, name: str, check: Callable[[], tuple[bool, str]]) -> None:
        with self._lock:
            self._live[name] = check

    def add_readiness(self, name: str, check: Callable[[], tuple[bool, str]]) -> None:
        with self._lock:
            self._ready[name] = check

    @staticmethod
    def _run(checks: dict[str, Callable[[], tuple[bool, str]]]) -> HealthReport:
        results = []
        for name, fn in checks.items():
            try:
                ok, detail = fn()
            except Exception as err:  # a failing check is a failed check, not a 500
                ok, detail = False, f"check raised {type(err).__name__}: {err}"
            results.append(Check(name=name, ok=ok, detail=mask_urls_in(detail)))
        return HealthReport(status="ok" if all(c.ok for c in results) else "fail", checks=results)

    def liveness(self) -> HealthReport:
        with self._lock:
            checks = dict(self._live)
        return self._run(checks)

    def readiness(self) -> HealthReport:
        with self._lock:
            checks = {**self._live, **self._ready}
        return self._run(checks)
