"""Backtest: what a candidate model would have changed over a past period, against the champion.

The stories published in ``[from, to)`` (from a JSONL dump of ``news.raw``, or read from the
``news.raw`` topic itself with a group-less consumer that commits nothing) are scored by both
versions, aggregated into trend windows with the configured windows
(:class:`~monitor.stages.windows.PartitionWindows`), and run through the configured alert rules
(``alerts.rule_replay``, an in-memory store). Nothing is written to any topic or production store.
The report: per model the sentiment mix and the trend points, how far the trend means moved
(mean and max absolute difference of ``mean_score`` over the windows both have), and per rule the
alerts that fired, gained and lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from alerts.rule_replay import replay
from monitor.core.records import NewsItem, Record, RecordDecodeError, ScoredItem, TrendPoint, decode
from monitor.stages.scoring import score_isolating_poison
from monitor.stages.windows import PartitionWindows, trend_keys

log = structlog.get_logger(__name__)


class BacktestError(ValueError):
    pass


def read_stories_file(path: Path) -> list[NewsItem]:
    """A JSONL file of ``NewsItem`` records (e.g. a dump of news.raw); bad lines are errors."""
    out, errors = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(decode(NewsItem, line))
        except RecordDecodeError as err:
            errors.append(f"line {n}: {err}")
    if errors:
        raise BacktestError(f"{path}: {len(errors)} bad line(s):\n  " + "\n  ".join(errors[:20]))
    return out


def read_stories_topic(settings: Any, timeout_s: float = 30.0) -> list[NewsItem]:
    """Every decodable story on ``news.raw`` (read-only: no consumer group, nothing committed)."""
    from kafka import KafkaConsumer, TopicPartition

    if not settings.kafka.enabled:
        raise BacktestError("no kafka.bootstrap configured: pass --file with a dump of news.raw")
    c = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        **settings.kafka.security_options(),
    )
    try:
        topic = settings.topics.raw
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        if not tps:
            raise BacktestError(f"topic {topic} does not exist")
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        out: list[NewsItem] = []
        while any(c.position(tp) < ends[tp] for tp in tps):
            for records in c.poll(timeout_ms=int(timeout_s * 1000), max_records=5000).values():
                for r in records:
                    try:
                        out.append(decode(NewsItem, r.value))
                    except RecordDecodeError:
                        continue  # the classify stage dead-lettered it too
        return out
    finally:
        c.close()


def _score(engine: Any, items: list[NewsItem], batch: int = 256) -> list[ScoredItem]:
    out: list[ScoredItem] = []
    for i in range(0, len(items), batch):
        out += [s for _, s in score_isolating_poison(engine.predict, items[i : i + batch]).scored]
    return out


def _simulate(settings: Any, scored: list[ScoredItem], rules: Any) -> tuple[list[TrendPoint], list[Any]]:

    windows = PartitionWindows(settings.aggregator)
    stream: list[Record] = []
    latest: dict[tuple[str, str, datetime], TrendPoint] = {}
    for s in sorted(scored, key=lambda s: (s.item.published_at, s.id)):
        for key in trend_keys(s, settings.aggregator.ticker_relevance_floor):
            windows.add(key, s)
        stream.append(s)
        for p in windows.take_dirty():
            stream.append(p)
            latest[(p.key, p.window, p.window_start)] = p
    notes = replay(rules, iter(stream)).notifications if rules is not None else []
    return list(latest.values()), notes


def _fired(notes: Iterable[Any]) -> dict[str, set[str]]:
    """rule -> subjects (trend key or story) that fired at least once."""
    out: dict[str, set[str]] = {}
    for n in notes:
        for a in n.alerts:
            if a.status == "firing":
                out.setdefault(a.rule, set()).add(a.labels.get("key") or a.labels.get("story") or a.fingerprint)
    return out


def backtest(
    settings: Any,
    candidate: Any,
    champion: Any,
    stories: list[NewsItem],
    start: datetime | None,
    end: datetime | None,
    rules: Any = None,
) -> dict[str, Any]:
    """``candidate`` and ``champion`` are engines; returns the comparison report."""
    items = [s for s in stories if (start is None or s.published_at >= start) and (end is None or s.published_at < end)]
    items = list({s.id: s for s in items}.values())  # de-duplicated by story id, like the pipeline
    report: dict[str, Any] = {
        "stories": len(items),
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "models": {},
    }
    results = {}
    for role, engine in (("champion", champion), ("candidate", candidate)):
        scored = _score(engine, items)
        points, notes = _simulate(settings, scored, rules)
        results[role] = (scored, points, notes)
        report["models"][role] = {
            "version": engine.version,
            "scored": len(scored),
            "sentiment_mix": dict(Counter(s.sentiment for s in scored)),
            "trend_points": len(points),
            "alerts_fired": {r: len(v) for r, v in sorted(_fired(notes).items())},
        }
    champ_sent = {s.id: s.sentiment for s in results["champion"][0]}
    cand = results["candidate"][0]
    report["agreement"] = round(sum(champ_sent.get(s.id) == s.sentiment for s in cand) / len(cand), 4) if cand else None
    old = {(p.key, p.window, p.window_start): p.mean_score for p in results["champion"][1]}
    diffs = [
        abs(p.mean_score - old[k]) for p in results["candidate"][1] if (k := (p.key, p.window, p.window_start)) in old
    ]
    report["trends"] = {
        "windows_compared": len(diffs),
        "mean_abs_diff": round(sum(diffs) / len(diffs), 4) if diffs else 0.0,
        "max_abs_diff": round(max(diffs), 4) if diffs else 0.0,
    }
    fired_old, fired_new = _fired(results["champion"][2]), _fired(results["candidate"][2])
    report["alerts"] = {
        rule: {
            "champion": len(fired_old.get(rule, ())),
            "candidate": len(fired_new.get(rule, ())),
            "gained": sorted(fired_new.get(rule, set()) - fired_old.get(rule, set())),
            "lost": sorted(fired_old.get(rule, set()) - fired_new.get(rule, set())),
        }
        for rule in sorted(set(fired_old) | set(fired_new))
    }
    return report
