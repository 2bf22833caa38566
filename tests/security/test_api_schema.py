"""#26 item 25, the schema is tested: schemathesis runs against the real HTTP app with every one of
its checks and every phase (examples, coverage, fuzzing, stateful) and finds nothing.

The app is the one ``finsent run`` serves: :func:`monitor.app.wiring.build_daemon` with every stage of
the pipeline on the in-process bus (stages not started, a keyword engine instead of a trained
model), a webhook push source, read/write/admin tokens and no demo; the requests go in process
(ASGI) with ``Host: 127.0.0.1`` and the admin token. The run is deterministic (fixed seed,
derandomized Hypothesis, no example database), so a failure here fails the same way again.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema

from monitor.app.component import Context
from monitor.app.config import load_settings
from monitor.app.http import build_app
from monitor.app.wiring import PIPELINE, build_daemon
from monitor.core.bus.memory import MemoryBus
from monitor.core.health import Health
from monitor.ui.overview import UiError
from monitor.ui.page import SEARCHABLE, page_router
from tests.stages.keyword_engine import KeywordEngine

READ, WRITE, ADMIN = "r" * 24, "w" * 24, "a" * 24
HOST = "http://127.0.0.1"  # TrustedHostMiddleware: the loopback name the daemon binds
PUSH_SOURCE = "partner"
MAX_EXAMPLES = 50  # per operation and generation mode (positive, negative): about 730 requests, 15 s

# Where a check cannot apply as schemathesis runs it, the operation's entry says which and why.
OPERATIONS: list[dict[str, Any]] = [
    # /readyz exists to answer 503 (documented, with the report) while a stage is not consuming:
    # here the stages are built but not started. Any other 5xx is still a failure.
    {"include-path": "/readyz", "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}}},
    # The push receiver authenticates itself with an HMAC of the body (no schema can express it, a
    # fuzzer cannot sign): pointed at the configured source, every request must be a documented
    # 401 (or 404/413/422), never a 5xx. All checks stay on.
    {"include-path": "/ingest/{source}", "parameters": {"source": PUSH_SOURCE}},
    # POST /labels takes any JSON (an object, a list, {"labels": [...]}) and decides what is a label
    # itself: names per task, case-insensitive, and story ids this process scored. Schema-valid
    # bodies are mostly refused (422, documented with every bad row named), so "valid data is
    # accepted" cannot hold; every other check runs.
    {"include-path": "/labels", "checks": {"positive_data_acceptance": {"enabled": False}}},
]


@dataclass
class Report:
    failures: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    phases: dict[str, str] = field(default_factory=dict)
    stop_reason: str = ""

    def describe(self) -> str:
        lines = [
            f"{check} on {operation} ({len(found)}x):\n  " + "\n  ".join(found[:3])
            for (check, operation), found in sorted(self.failures.items())
        ]
        return "\n".join(lines + [f"error: {e}" for e in self.errors])


def run_schemathesis(
    app: FastAPI,
    token: str | None = ADMIN,
    operations: list[dict[str, Any]] | None = None,
    max_examples: int = MAX_EXAMPLES,
) -> Report:
    config = SchemathesisConfig.from_dict(
        {
            "seed": 26025,
            "base-url": HOST,
            "headers": {"Authorization": f"Bearer {token}"} if token else {},
            # too_slow measures wall time: a loaded CI machine must not fail the schema
            "suppress-health-check": ["too_slow"],
            "generation": {"max-examples": max_examples, "deterministic": True, "database": "none"},
            "operations": operations or [],
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config, headers={"Host": "127.0.0.1"})
    report = Report()
    for event in from_schema(schema).execute():
        if isinstance(event, events.PhaseFinished):
            report.phases[event.phase.name.value] = event.status.value
        elif isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for case_id, interaction in recorder.interactions.items():
                if interaction.response is not None:
                    label = recorder.cases[case_id].value.operation.label
                    report.answers[(label, interaction.response.status_code)] += 1
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        label = failure.operation or recorder.cases[case_id].value.operation.label
                        report.failures[(check.name, label)].append(
                            f"{failure.title}: {failure.message}\n    {check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            report.errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            report.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            report.stop_reason = event.stop_reason.value
    return report


@pytest.fixture(scope="module")
def daemon_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    saved = {k: os.environ.pop(k) for k in [v for v in os.environ if v.startswith("FINSENT_")]}
    try:
        home = tmp_path_factory.mktemp("schema-home")
        settings = load_settings(
            None,
            home=str(home),
            http={
                "host": "127.0.0.1",
                "port": 0,
                "auth": {
                    "tokens": [
                        {"name": "reader", "value": READ, "scopes": ["read"]},
                        {"name": "writer", "value": WRITE, "scopes": ["write"]},
                        {"name": "root", "value": ADMIN, "scopes": ["admin"]},
                    ]
                },
            },
            connectors={
                "demo": False,
                "sources": [{"type": "webhook", "name": PUSH_SOURCE, "secret": {"value": "s3cret-" + "x" * 24}}],
            },
        )
        settings.ensure_dirs()
        ctx = Context(settings=settings, bus=MemoryBus())
        ctx.engine = KeywordEngine()  # classify's engine without a trained model
        daemon, ctx = build_daemon(settings, PIPELINE, ctx)
        try:
            yield build_app(ctx.health, ctx.registry, daemon.routers, settings.http)
        finally:
            assert daemon.shutdown() == 0  # nothing was started: closes the bus and the stores
    finally:
        os.environ.update(saved)


def test_every_operation_answers_as_its_schema_says(daemon_app: FastAPI) -> None:
    report = run_schemathesis(daemon_app, operations=OPERATIONS)
    assert not report.failures and not report.errors, report.describe()
    assert report.stop_reason == "completed"
    assert {report.phases.get(p) for p in ("coverage", "fuzzing")} == {"success"}, report.phases
    # stateful: schemathesis infers no links between these operations (and the schema declares
    # none), so the phase has nothing to chain; once it has, it must pass like the others.
    assert report.phases.get("stateful") in {"success", "skip"}, report.phases
    operations = {op for op, _ in report.answers}
    paths = daemon_app.openapi()["paths"]
    assert operations == {f"{m.upper()} {p}" for p, ops in paths.items() for m in ops}
    # the token and the Host header were right: not everything was refused at the door
    assert sum(n for (_, status), n in report.answers.items() if status < 300) > 100, report.answers
    assert report.answers[("POST /ingest/{source}", 401)] > 0, "the push source was never reached"


def test_ack_with_a_body_not_sent_as_json_is_a_415_not_a_500(daemon_app: FastAPI) -> None:
    """FastAPI validated such a body's raw bytes as the ack body, and its 422 handler could not
    encode bytes that are not UTF-8: a 500."""
    client = TestClient(daemon_app, base_url=HOST, raise_server_exceptions=False)
    auth = {"Authorization": f"Bearer {WRITE}"}
    for headers in ({"content-type": "text/plain"}, {}):
        r = client.post("/alerts/abc/ack", content=b"\xff\xfe", headers={**auth, **headers})
        assert r.status_code == 415 and r.json()["detail"].startswith("send the body as JSON"), r.text
    assert client.post("/alerts/abc/ack", json={"by": "ops"}, headers=auth).status_code == 404
    assert client.post("/alerts/abc/ack", headers=auth).status_code == 404  # no body: still fine


def test_page_parameters_say_which_values_the_page_answers() -> None:
    def match(q: str, window: str | None) -> Any:
        raise UiError(f"searched {q!r}")  # says what the route passed on

    router = page_router(lambda **_: None, match, lambda _: None, windows=["1m", "5m"])
    client = TestClient(build_app(Health(), CollectorRegistry(), [router]), base_url=HOST)
    params = {
        p["name"]: p["schema"]
        for op in ("/ui/overview", "/ui/keys")
        for p in client.get("/openapi.json").json()["paths"][op]["get"]["parameters"]
    }
    assert params["window"]["enum"] == ["1m", "5m", ""]  # empty: the default window
    assert params["q"]["pattern"] == SEARCHABLE
    for q in (" $ ", "$ $", "\u3000", "\x1c"):  # nothing to search for: the schema refuses it, so must the page
        assert re.search(SEARCHABLE, q) is None
        assert client.get("/ui/keys", params={"q": q}).json() == {"detail": "searched ''"}, repr(q)
    assert client.get("/ui/keys", params={"q": " $aapl "}).json() == {"detail": "searched ' $aapl '"}


def test_an_undocumented_status_fails_the_run() -> None:
    """The harness above can fail: an operation answering a code its schema does not list."""
    router = APIRouter()

    @router.get("/things/{name}")
    def thing(name: str) -> dict[str, str]:
        if name != "ok":
            raise HTTPException(status_code=409, detail="undocumented")
        return {"name": name}

    app = build_app(Health(), CollectorRegistry(), [router])
    report = run_schemathesis(app, token=None, max_examples=5)  # loopback: reads need no token
    assert ("status_code_conformance", "GET /things/{name}") in report.failures, report.describe()
