"""Alert rule evaluation throughput (TrendPoints/s): finsent's engine vs a naive baseline, same run.

    PYTHONPATH=. .venv/bin/python tests/bench/bench_alerts.py [--points 50000] [--batch 500]

* ``engine``: :class:`alerts.evaluator.AlertEngine` as the evaluator stage drives it - indexed rule
  lookup, in-memory state, one SQLite transaction (WAL) per batch of ``--batch`` points.
* ``baseline``: every rule re-evaluated for every point (shell-pattern match on the key), the
  alert state kept the same way, and a SQLite write + commit per point (same WAL settings).

Both see the same synthetic stream: ~600 trend keys x 4 windows, 25 rules (exact topic keys,
``ticker:*`` patterns, ``source:*``, ``all``), sentiment drifting so alerts fire and resolve.
Prints one JSON line with both rates and their ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alerts.alert_store import AlertStore
from alerts.clock import ManualClock
from alerts.evaluation import measure_change, measure_level
from alerts.evaluator import AlertEngine
from alerts.routing import fingerprint_of, trend_labels
from alerts.ruleset import ChangeRule, RuleSet, parse_rules
from alerts.settings import EngineOptions
from monitor.core.logs import configure_logging
from monitor.core.records import TrendPoint

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
WINDOWS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
TOPICS = [
    "Energy | Oil",
    "Earnings",
    "Macro",
    "M&A | Investments",
    "Fed | Central Banks",
    "Markets",
    "Currencies",
    "Gold | Metals | Materials",
    "IPO",
    "Legal | Regulation",
]


def make_rules() -> RuleSet:
    specs: list[dict] = []
    for topic in TOPICS:
        specs.append(
            {
                "name": f"topic-gloom-{len(specs)}",
                "type": "threshold",
                "key": f"topic:{topic}",
                "window": "15m",
                "metric": "negative_share",
                "value": 0.6,
                "min_count": 5,
                "for": "5m",
            }
        )
    for i, w in enumerate(("5m", "15m", "1h")):
        specs.append(
            {
                "name": f"ticker-neg-{i}",
                "type": "threshold",
                "key": "ticker:*",
                "window": w,
                "metric": "mean_score",
                "op": "<",
                "value": -0.5,
                "min_count": 3,
                "for": "2m",
            }
        )
        specs.append({"name": f"ticker-spike-{i}", "type": "spike", "key": "ticker:*", "window": w, "min_count": 3})
    specs.append(
        {
            "name": "ticker-drop",
            "type": "change",
            "key": "ticker:*",
            "window": "5m",
            "baseline_window": "1h",
            "value": -0.4,
            "min_count": 3,
        }
    )
    specs.append(
        {
            "name": "ticker-drop-15m",
            "type": "change",
            "key": "ticker:*",
            "window": "15m",
            "baseline_window": "1h",
            "value": -0.5,
            "min_count": 3,
        }
    )
    for i, w in enumerate(WINDOWS):
        specs.append(
            {
                "name": f"market-{i}",
                "type": "threshold",
                "key": "all",
                "window": w,
                "metric": "mean_score",
                "op": "<",
                "value": -0.3,
                "min_count": 10,
            }
        )
    specs.append(
        {
            "name": "source-gloom",
            "type": "threshold",
            "key": "source:*",
            "window": "15m",
            "metric": "negative_share",
            "value": 0.7,
            "min_count": 5,
        }
    )
    specs.append(
        {"name": "odd-tickers", "type": "threshold", "key": "ticker:Z*", "window": "1m", "metric": "count", "value": 50}
    )
    return parse_rules({"rules": specs})


def make_points(n: int, seed: int = 7) -> list[TrendPoint]:
    rng = random.Random(seed)
    keys = (
        ["all"]
        + [f"topic:{t}" for t in TOPICS]
        + [f"source:src{i}" for i in range(40)]
        + [f"ticker:T{i:03d}" for i in range(550)]
    )
    mood = dict.fromkeys(keys, 0.0)
    points = []
    for i in range(n):
        t = T0 + timedelta(seconds=i * 0.2)
        key = keys[0] if i % 50 == 0 else rng.choice(keys)
        window = rng.choice(list(WINDOWS))
        size = WINDOWS[window]
        start = T0 + timedelta(seconds=((t - T0).total_seconds() // size) * size)
        mood[key] = max(-1.0, min(1.0, 0.98 * mood[key] + rng.gauss(0, 0.08)))
        neg = min(1.0, max(0.0, 0.35 - mood[key] * 0.5))
        points.append(
            TrendPoint(
                key=key,
                window=window,
                window_start=start,
                window_end=start + timedelta(seconds=size),
                count=rng.randint(0, 40),
                mean_score=mood[key],
                negative_share=neg,
                positive_share=max(0.0, 1.0 - neg - 0.2),
                ewma=mood[key],
                weighted_mean=mood[key],
                volume_z=rng.gauss(0, 1.5),
                baseline_mean=0.0,
                model_version="bench",
                emitted_at=t,
            )
        )
    return points


def run_engine(rules: RuleSet, points: list[TrendPoint], batch: int, db: Path) -> tuple[float, int]:
    store = AlertStore(db)
    engine = AlertEngine(rules, store, EngineOptions(publish_topic="news.alerts"), ManualClock())
    sent = 0
    started = time.perf_counter()
    for i in range(0, len(points), batch):
        sent += len(engine.process(points[i : i + batch]).outbox)
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed, sent


def run_baseline(rules: RuleSet, points: list[TrendPoint], db: Path) -> tuple[float, int]:
    """Every rule for every point, a dict of states, and one committed SQLite write per point."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE state (fp TEXT PRIMARY KEY, state TEXT, since TEXT, point_values TEXT)")
    states: dict[str, tuple[str, datetime]] = {}
    latest: dict[tuple[str, str], TrendPoint] = {}
    transitions = 0
    started = time.perf_counter()
    for p in points:
        latest[(p.key, p.window)] = p
        t = min(p.emitted_at, p.window_end)
        rows = []
        for rule in rules.trend_rules:
            if p.window not in rule.windows or not fnmatchcase(p.key, rule.key):
                continue
            if isinstance(rule, ChangeRule):
                cur = latest.get((p.key, rule.window))
                if cur is None:
                    continue
                m = measure_change(rule, cur, latest.get((p.key, rule.baseline_window)), False, 5)
            else:
                if p.window != rule.window:
                    continue
                m = measure_level(rule, p, False, 5)  # type: ignore[arg-type]
            if m.holds is None:
                continue
            fp = fingerprint_of(trend_labels(rule, p.key))
            state, since = states.get(fp, ("inactive", t))
            if m.holds:
                if state in ("inactive", "resolved"):
                    state, since = "pending", t
                if state == "pending" and t - since >= rule.for_:
                    state = "firing"
                    transitions += 1
            elif state in ("pending", "firing"):
                transitions += state == "firing"
                state = "resolved" if state == "firing" else "inactive"
            states[fp] = (state, since)
            rows.append((fp, state, since.isoformat(), json.dumps(m.values)))
        conn.execute("BEGIN")
        conn.executemany("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed, transitions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs each")
    args = ap.parse_args()
    configure_logging("WARNING")  # transitions are logged at INFO; keep the terminal out of the timing
    rules = make_rules()
    points = make_points(args.points)
    best_engine = best_base = float("inf")
    notifications = transitions = 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            e, notifications = run_engine(rules, points, args.batch, Path(tmp) / f"engine{r}.db")
            b, transitions = run_baseline(rules, points, Path(tmp) / f"base{r}.db")
            best_engine, best_base = min(best_engine, e), min(best_base, b)
    result = {
        "benchmark": "alerts.rule_evaluation",
        "points": len(points),
        "rules": len(rules.rules),
        "batch": args.batch,
        "engine_points_per_s": round(len(points) / best_engine),
        "baseline_points_per_s": round(len(points) / best_base),
        "speedup": round(best_base / best_engine, 2),
        "engine_outbox_rows": notifications,
        "baseline_firing_transitions": transitions,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(f"engine:   {result['engine_points_per_s']:>9,} points/s (batch {args.batch}, one transaction per batch)")
    print(f"baseline: {result['baseline_points_per_s']:>9,} points/s (all rules per point, a commit per point)")
    print(f"speedup:  {result['speedup']}x")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
