"""The metric catalogue: every Prometheus metric finsent serves, read from the code that defines it.

``python -m monitor.app.metric_catalogue > docs/METRICS.md`` writes the catalogue; a test fails when the
file and the code diverge, and another checks every dashboard panel and Prometheus rule against
:func:`catalogue`. Each role's metric classes are instantiated on a fresh registry and their
names, types, help texts and label names read back, so nothing here restates a definition; what
the code cannot say - which values a label takes - is :data:`LABEL_BOUNDS`, and a label without
a bound there fails the test.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from alerts.metrics import AlertMetrics
from connectors.metrics import IngestMetrics
from monitor.app.auth import Authenticator, HttpAuthSettings
from monitor.app.metrics import BusMemoryCollector, HttpMetrics, ModelInfoCollector, RoleMetrics
from monitor.learning.metrics import RetrainMetrics
from monitor.stages.aggregate import AggregateMetrics
from monitor.stages.classify import ClassifyMetrics
from monitor.stages.shadow import ShadowMetrics

LABEL_BOUNDS: dict[str, str] = {
    "role": "5: ingest, classify, aggregate, alerts, retrain",
    "version": "1 per process (the finsent version, or the served model version)",
    "source": "the configured sources (connectors.sources) plus the demo feed",
    "kind": "finsent_ingest_errors: the fixed error kinds in connectors/metrics.py (ERROR_KINDS); "
    "finsent_alerts_records: trend, scored",
    "reason": "classify: the fixed dead-letter reasons of the stage; alerts: firing, resolved, revised, repeat; "
    "http auth failures: missing, invalid, scope",
    "topic": "the input topic of the stage (1-2 topic names); finsent_bus_memory_records: the topics of the "
    "in-process bus (topics.*, the repartition topic)",
    "partition": "the partitions of the input topics (kafka.partitions)",
    "stage": "the stage names of the role (rekey, trends)",
    "outcome": "aggregate: counted, duplicate, late_dropped; deliveries: delivered, retry, dead",
    "key": "'all', each topic label (models/data/topic/labels.txt) and each of aggregator.metric_tickers as ticker:X",
    "window": "the configured aggregator.windows names",
    "receiver": "the configured alerts.receivers names plus _bus",
    "state": "alerts: pending, firing, resolved; outbox: pending, delivered, dead",
    "route": "the daemon's route templates (e.g. /trends/{key}), 'other' for unmatched paths",
    "method": "HTTP methods used (GET, POST, ...)",
    "status": "HTTP status codes returned",
    "profile": "the training profiles (default, quick, tiny)",
    "trained_at": "1 per process: the served version's creation time",
    "task": "sentiment, topic",
    "backend": "the classifier backends: onnx, torch",
    "precision": "the classifier precisions: int8, bf16, bfloat16, float16, float32",
    "label": "sentiment: negative, neutral, positive; topic: the topic labels (models/data/topic/labels.txt)",
    "metric": "accuracy, macro_f1",
    "result": "promoted, rejected, shadowing, skipped, failed, timeout",
    "set": "the names of retrain.validation_sets (default: sentiment, topic, news_sentiment)",
    "model": "champion, challenger",
    "sentiment": "negative, neutral, positive",
}


@dataclass(frozen=True)
class MetricDoc:
    name: str  # as exposed (counters with _total)
    type: str
    help: str
    labels: tuple[str, ...]
    roles: tuple[str, ...]


def _sources() -> list[tuple[tuple[str, ...], Callable[[CollectorRegistry], object]]]:

    every = ("ingest", "classify", "aggregate", "alerts", "retrain")
    return [
        (every, RoleMetrics),
        (every, HttpMetrics),
        (every, lambda r: Authenticator(HttpAuthSettings(), "127.0.0.1", r)),
        (every, lambda r: r.register(BusMemoryCollector(None))),
        (("ingest",), IngestMetrics),
        (("classify",), ClassifyMetrics),
        (("classify",), ShadowMetrics),
        (("classify",), lambda r: r.register(ModelInfoCollector(None))),
        (("aggregate",), AggregateMetrics),
        (("alerts",), AlertMetrics),
        (("retrain",), RetrainMetrics),
    ]


_SUFFIX = {"counter": "_total", "info": "_info"}


def catalogue() -> list[MetricDoc]:
    docs: dict[str, MetricDoc] = {}
    for roles, build in _sources():
        registry = CollectorRegistry()
        build(registry)
        collectors = set(registry._collector_to_names)
        for collector in collectors:
            described = list(collector.describe()) if hasattr(collector, "describe") else list(collector.collect())
            for family in described:
                labels = tuple(getattr(collector, "_labelnames", ()) or ())
                if not labels and family.samples:
                    labels = tuple(k for k in family.samples[0].labels)
                if not labels:
                    labels = _described_labels(collector, family.name)
                name = family.name + _SUFFIX.get(family.type, "")
                prev = docs.get(name)
                all_roles = tuple(dict.fromkeys((prev.roles if prev else ()) + roles))
                docs[name] = MetricDoc(name, family.type, family.documentation, labels, all_roles)
    return sorted(docs.values(), key=lambda d: d.name)


def _described_labels(collector: object, family: str) -> tuple[str, ...]:

    if isinstance(collector, ModelInfoCollector):
        return {
            "finsent_model": ("version", "profile", "trained_at"),
            "finsent_model_validation": ("task", "metric"),
        }.get(family, ())
    return {"finsent_bus_memory_records": ("topic",)}.get(family, ())


def render() -> str:
    docs = catalogue()
    lines = [
        "# finsent metrics",
        "",
        "Generated from the metric definitions in the code by `python -m monitor.app.metric_catalogue > docs/METRICS.md`",
        "(`tests/deploy/test_catalogue.py` fails when this file and the code diverge). Each role serves its",
        'own metrics on its own port (`/metrics`); Prometheus adds `job="finsent-ROLE"` and `role="ROLE"`',
        "target labels (deploy/prometheus/prometheus.yml), so nothing is counted twice when roles are split.",
        "Histograms also expose `_bucket`, `_sum` and `_count`; counters are listed with their `_total` name.",
        "",
        "| metric | type | labels | roles | meaning |",
        "|---|---|---|---|---|",
    ]
    for d in docs:
        labels = ", ".join(f"`{label}`" for label in d.labels) or "-"
        meaning = d.help.replace("|", "\\|")
        lines.append(f"| `{d.name}` | {d.type} | {labels} | {', '.join(d.roles)} | {meaning} |")
    used = sorted({label for d in docs for label in d.labels})
    lines += [
        "",
        "## Label bounds",
        "",
        "Every label takes a bounded set of values:",
        "",
        "| label | values |",
        "|---|---|",
    ]
    lines += [f"| `{label}` | {LABEL_BOUNDS.get(label, '**unbounded?**')} |" for label in used]
    lines += [
        "",
        "Target labels added by Prometheus: `job` (`finsent-ROLE`), `role`, `instance` (one per process).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
