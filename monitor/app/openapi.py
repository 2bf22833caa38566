"""What every route of the daemon can answer, added to its OpenAPI schema.

Routes declare their own 4xx (``responses=``, see :mod:`monitor.core.api_errors`);
:func:`document_errors` adds what every route can answer (401/403 from :mod:`monitor.app.auth`,
413 from the body cap) and the codes of routes whose modules do not declare them
(:data:`DECLARED`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from monitor.app.auth import READ_METHODS, SELF_AUTHENTICATED_PREFIXES
from monitor.core.api_errors import NOT_JSON, UNREADABLE_BODY, LabelsRefused, error

DECLARED: dict[tuple[str, str], dict[int, dict[str, Any]]] = {
    ("GET", "/alerts/{fingerprint}"): {404: error("no alert with that fingerprint (or prefix)")},
    ("POST", "/alerts/{fingerprint}/ack"): {404: error("no alert with exactly that fingerprint"), 415: NOT_JSON},
    ("POST", "/labels"): {422: error("labels refused; nothing stored", LabelsRefused)},
}
"""Error codes of routes declared outside :mod:`monitor.stages.routes` and :mod:`monitor.ui`, by (method, path)."""


def document_errors(app: FastAPI, public_paths: frozenset[str] | set[str] = frozenset()) -> None:
    """Make ``app.openapi()`` list the error answers its routes really give (FastAPI's documented
    way to extend the schema): 401/403 on every authenticated operation, 413 where a body is
    read (and 400 where FastAPI parses a JSON body: it answers 400 to one that is not UTF-8), and
    :data:`DECLARED`. A route's own ``responses=`` wins over the generic codes."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's, cached by the app; the additions below are idempotent
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for path, operations in schema.get("paths", {}).items():
            authenticated = path not in public_paths and not path.startswith(SELF_AUTHENTICATED_PREFIXES)
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                generic: dict[int, dict[str, Any]] = {}
                if authenticated:
                    generic[401] = error("no bearer token, or an unknown one")
                    generic[403] = error("the token lacks the scope this needs")
                    if method.upper() not in READ_METHODS:
                        generic[413] = error("request body larger than http.max_body_bytes")
                if "requestBody" in operation:
                    generic[400] = UNREADABLE_BODY
                for status, spec in generic.items():
                    responses.setdefault(str(status), _response(spec, components))
                for status, spec in DECLARED.get((method.upper(), path), {}).items():
                    responses[str(status)] = _response(spec, components)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _response(spec: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    model: type[BaseModel] = spec["model"]
    found = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in found.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components.setdefault(model.__name__, found)
    return {
        "description": spec["description"],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }
