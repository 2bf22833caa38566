"""docs/METRICS.md is the code's metric catalogue, and every dashboard panel and Prometheus rule
uses only metrics and labels from it (Grafana cannot run here; promtool checks the syntax)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from monitor.app.metric_catalogue import LABEL_BOUNDS, MetricDoc, catalogue, render
from tests.deploy.bundle import DEPLOY, ROOT
from tests.deploy.procs import PROMTOOL, need

TARGET_LABELS = {"job", "role", "instance"}
NAME = re.compile(r"\b(finsent_[a-z0-9_]+|up)\b(\s*\{([^}]*)\})?")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
VARIABLES = {"$window": "15m", "$topic": "topic:x", "$ticker": "ticker:X", "$role": "classify"}


def test_metrics_doc_is_generated_from_the_code():
    assert (ROOT / "docs" / "METRICS.md").read_text() == render(), (
        "docs/METRICS.md is stale: python -m monitor.app.metric_catalogue > docs/METRICS.md"
    )


def test_every_label_has_a_documented_bound():
    docs = catalogue()
    missing = sorted({label for d in docs for label in d.labels} - set(LABEL_BOUNDS))
    assert not missing, f"labels without a bound in LABEL_BOUNDS: {missing}"
    names = {d.name for d in docs}
    for required in (
        "finsent_model_info",
        "finsent_model_validation",
        "finsent_retrain_runs_total",
        "finsent_retrain_duration_seconds",
        "finsent_http_requests_total",
        "finsent_alerts_outbox",
        "finsent_alerts_outbox_oldest_pending_seconds",
        "finsent_alerts_publish_to_alert_seconds",
        "finsent_role_info",
        "finsent_classify_predictions_total",
    ):
        assert required in names


def _dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for t in panel.get("targets", []):
                out.append((f"{path.name}: {panel['title']}", t["expr"]))
        for ann in dash.get("annotations", {}).get("list", []):
            if ann.get("expr"):
                out.append((f"{path.name}: annotation {ann['name']}", ann["expr"]))
        for var in dash.get("templating", {}).get("list", []):
            q = var.get("query")
            if isinstance(q, dict) and q.get("query", "").startswith("label_values("):
                inner = q["query"][len("label_values(") :].rsplit(",", 1)[0]
                out.append((f"{path.name}: variable {var['name']}", inner))
    return out


def _rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    return [(f"rules.yml: {r.get('alert') or r.get('record')}", r["expr"]) for g in rules["groups"] for r in g["rules"]]


def _substitute(expr: str) -> str:
    for var, value in VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def series_names(doc: MetricDoc) -> set[str]:
    """Every series name a metric exposes (Prometheus' exposition: histograms add _bucket, _sum, _count)."""
    if doc.type == "histogram":
        return {doc.name + s for s in ("_bucket", "_sum", "_count")}
    return {doc.name}


def test_every_panel_and_rule_uses_catalogued_metrics_and_labels():
    docs = catalogue()
    labels_of: dict[str, set[str]] = {"up": set()}
    for d in docs:
        for series in series_names(d):
            labels_of[series] = set(d.labels) | ({"le"} if series.endswith("_bucket") else set())
    problems = []
    exprs = _dashboard_exprs() + _rule_exprs()
    assert len(exprs) > 40
    for where, expr in exprs:
        used = NAME.findall(expr)
        if not used:
            problems.append(f"{where}: uses no finsent metric: {expr}")
        known_labels = set(TARGET_LABELS)
        for name, _, matchers in used:
            if name not in labels_of:
                problems.append(f"{where}: {name} is not in the catalogue")
                continue
            known_labels |= labels_of[name]
            for label in MATCHER.findall(matchers):
                if label not in labels_of[name] | TARGET_LABELS:
                    problems.append(f"{where}: {name} has no label {label!r}")
        for group in GROUPING.findall(expr):
            for label in filter(None, (g.strip() for g in group.split(","))):
                if label not in known_labels:
                    problems.append(f"{where}: groups by {label!r}, which none of its metrics has")
    assert not problems, "\n".join(problems)


def test_every_panel_expression_is_valid_promql(tmp_path: Path):
    need(PROMTOOL)
    exprs = [_substitute(e) for _, e in _dashboard_exprs()]
    rules = {
        "groups": [
            {"name": "dashboards", "rules": [{"record": f"finsent:panel_{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
