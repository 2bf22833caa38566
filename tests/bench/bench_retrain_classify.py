"""Classify throughput while the retrain job trains a challenger, against idle, in one run.

    python tests/bench/bench_retrain_classify.py [--profile tiny] [--idle-s 60] [--batch 64] [--threads 1] [--nice 10]

A FINSENT_HOME with the cached tiny model serves as the champion. Phases, one process:

1. **idle**: the engine scores micro-batches of ``--batch`` validation headlines (as the classify
   stage would) for ``--idle-s`` seconds;
2. **retrain**: the real retrain job (``monitor.learning.retrain.run_retrain``: child process with
   ``retrain.threads`` and ``retrain.nice``) trains a challenger on 60 fresh labels while the
   engine keeps scoring; measured from the child's start to its end (training, lexical fit, gate);
3. **idle again** for ``--idle-s`` seconds (brackets drifts in the machine's background load).

Prints one JSON line: texts/s per phase, the ratio retrain / mean(idle), the retrain's result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def score_for(engine, texts, batch: int, until) -> tuple[int, float]:
    """Score batches until ``until()`` is true; (texts scored, seconds)."""
    n, i, started = 0, 0, time.perf_counter()
    while not until():
        chunk = texts[i : i + batch] or texts[:batch]
        i = (i + batch) % len(texts)
        engine.predict(chunk)
        n += len(chunk)
    return n, time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="tiny", choices=["tiny", "quick", "default"])
    ap.add_argument("--idle-s", type=float, default=60.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="retrain.threads")
    ap.add_argument("--nice", type=int, default=10, help="retrain.nice")
    args = ap.parse_args()

    from models.data import load_split
    from models.engine import InferenceEngine
    from monitor.app.config import load_settings
    from monitor.core.records import utcnow
    from monitor.learning.labels import LabelStore, Vote
    from monitor.learning.retrain import run_retrain
    from tests.models.fixtures import trained_tiny_home

    home = trained_tiny_home(Path(tempfile.mkdtemp(prefix="bench-retrain-")))
    settings = load_settings(
        None,
        home=str(home),
        classifier={"device": "cpu"},
        retrain={
            "profile": args.profile,
            "threads": args.threads,
            "nice": args.nice,
            "min_new_labels": 10,
            "min_holdout": 5,
            "validation_limit": 400,
        },
    )
    engine = InferenceEngine.from_settings(settings)
    texts = [r.text for r in load_split("sentiment", "valid")][:1024]
    engine.predict(texts[: args.batch])  # warm-up

    def for_seconds(s):
        end = time.monotonic() + s
        return lambda: time.monotonic() >= end

    idle1 = score_for(engine, texts, args.batch, for_seconds(args.idle_s))

    store = LabelStore(settings.state_dir / "labels.db")
    companies = [
        "ACME",
        "Globex",
        "Initech",
        "Umbrella",
        "Hooli",
        "Vandelay",
        "Stark",
        "Wayne",
        "Wonka",
        "Tyrell",
        "Soylent",
        "Oscorp",
        "Nakatomi",
        "Cyberdyne",
        "Gringotts",
    ]
    store.add(
        [
            Vote("sentiment", t.format(c=c), "negative", "bench", "bench", None, utcnow())
            for c in companies
            for t in ("{c} glorped", "{c} shares glorped", "{c} just glorped", "{c} stock glorped today")
        ]
    )
    result: dict = {}

    def retrain() -> None:
        result.update(run_retrain(settings, store))

    t = threading.Thread(target=retrain)
    t.start()
    # measure from the child's start: wait until its process exists
    workdir = settings.state_dir / "retrain"
    while t.is_alive() and not any(workdir.glob("*/spec.json")):
        time.sleep(0.05)
    during = score_for(engine, texts, args.batch, lambda: not t.is_alive())
    t.join()
    idle2 = score_for(engine, texts, args.batch, for_seconds(args.idle_s))
    store.close()

    rate = {
        name: round(n / s, 1) for name, (n, s) in (("idle_before", idle1), ("retrain", during), ("idle_after", idle2))
    }
    idle = (rate["idle_before"] + rate["idle_after"]) / 2
    print(
        json.dumps(
            {
                "texts_per_s": rate,
                "ratio": round(rate["retrain"] / idle, 3),
                "retrain_seconds": round(during[1], 1),
                "retrain_result": result.get("result"),
                "retrain_reason": result.get("reason"),
                "profile": args.profile,
                "threads": args.threads,
                "nice": args.nice,
                "batch": args.batch,
                "engine_precision": engine.precision,
                "engine_threads": __import__("torch").get_num_threads(),
                "cpus": os.cpu_count(),
                "load_avg": os.getloadavg(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
