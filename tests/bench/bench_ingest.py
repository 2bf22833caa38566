"""Ingest throughput into Kafka: file replay through the real path vs a naive per-story send.

    python tests/bench/bench_ingest.py [--kafka HOST:PORT] [--stories 20000] [--baseline-stories 3000] [--repeat 3]

Without ``--kafka`` a broker is started with ``deploy/kafka/kafka-local`` (and stopped after).
The real path is ``finsent replay --speed 0``: read the file, normalise, extract tickers, dedup
(SQLite + near-duplicate index), produce in chunks (one flush and one check of every delivery per
chunk), then remember the acknowledged ids. The baseline sends the same, already built records one
at a time, waiting for each ack (``producer.send(...).get()``), with no dedup or normalisation.
For reference it also measures the transport alone (the same producer sending the raw rows,
pre-encoded, in a tight loop with one flush): the ceiling any ingest path can reach here.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SYLLABLES = [
    "ac",
    "me",
    "glo",
    "bex",
    "ini",
    "tech",
    "um",
    "brel",
    "stark",
    "way",
    "os",
    "corp",
    "soy",
    "lent",
    "hoo",
    "li",
    "cy",
    "ber",
    "dyne",
    "ty",
    "rell",
    "won",
    "ka",
    "van",
    "de",
    "lay",
    "mas",
    "sive",
    "hal",
    "vor",
    "sen",
    "zen",
    "tra",
    "nex",
    "vio",
    "quan",
    "tum",
    "lum",
    "ora",
    "pex",
]
VERBS = [
    "beats",
    "misses",
    "raises",
    "cuts",
    "reaffirms",
    "delays",
    "announces",
    "completes",
    "expands",
    "halts",
    "wins",
    "loses",
    "files",
    "settles",
    "launches",
    "recalls",
    "acquires",
    "sells",
    "restructures",
    "upgrades",
    "downgrades",
    "suspends",
    "resumes",
    "doubles",
    "trims",
    "boosts",
    "scraps",
    "revives",
    "probes",
    "secures",
]
OBJECTS = [
    "quarterly estimates",
    "full-year guidance",
    "dividend",
    "buyback plan",
    "plant opening",
    "job cuts",
    "merger talks",
    "product launch",
    "debt offering",
    "price target",
    "chip order",
    "drug trial",
    "cloud contract",
    "defence deal",
    "battery venture",
    "mining permit",
    "store expansion",
    "pension plan",
    "credit line",
    "patent case",
    "ad campaign",
    "fleet order",
    "lithium supply",
    "data-centre build",
    "bond sale",
    "rights issue",
    "spin-off",
    "licence deal",
    "tax dispute",
    "safety review",
]
QUALIFIERS = [
    "in Europe",
    "in Asia",
    "after strike",
    "on strong demand",
    "amid probe",
    "as costs rise",
    "ahead of results",
    "despite tariffs",
    "for second time",
    "on AI boom",
    "in Brazil",
    "in Texas",
    "after hack",
    "amid CEO exit",
    "on weak yen",
    "as rates fall",
    "after court ruling",
    "in India",
    "on holiday sales",
    "amid drought",
    "after storm",
    "on port delays",
    "in Canada",
    "as oil slides",
]


def make_file(path: Path, n: int, seed: int = 7) -> None:
    """``n`` synthetic, distinct stories (about 1,500 invented companies, varied wording)."""
    rng = random.Random(seed)
    t0 = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)
    companies = sorted(
        {"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize() for _ in range(2000)}
    )
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            name = rng.choice(companies)
            ticker = name[:4].upper()
            title = (
                f"{name} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(QUALIFIERS)}; "
                f"${rng.randint(1, 999)} million at stake"
            )
            row = {
                "title": title,
                "published_at": (t0 + timedelta(seconds=i * 0.5)).isoformat(),
                "url": f"https://news.example.com/{ticker.lower()}/{i}?utm_source=bench",
                "tickers": [ticker],
                "body": f"{name} said on Friday that it {title.lower()}.",
            }
            fh.write(json.dumps(row) + "\n")


def start_broker(state: Path) -> str:
    env = {**os.environ, "KAFKA_LOCAL_STATE": str(state)}
    proc = subprocess.run(
        [str(ROOT / "deploy/kafka/kafka-local"), "start"], env=env, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise SystemExit(f"kafka-local start failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1].split("=", 1)[1]


def stop_broker(state: Path) -> None:
    subprocess.run(
        [str(ROOT / "deploy/kafka/kafka-local"), "stop"],
        env={**os.environ, "KAFKA_LOCAL_STATE": str(state)},
        capture_output=True,
        timeout=120,
    )


def settings_for(bootstrap: str, home: Path, suffix: str):
    from monitor.app.config import TopicSettings, load_settings

    topics = {k: f"{v}.bench.{suffix}" for k, v in TopicSettings().model_dump().items()}
    return load_settings(
        None,
        home=str(home),
        kafka={"bootstrap": bootstrap},
        topics=topics,
        connectors={"demo": False},
        logging={"level": "WARNING"},
    )


def run_real(bootstrap: str, path: Path, work: Path) -> dict:
    from connectors.replay import Replayer
    from connectors.settings import FileSource
    from monitor.app.component import Context
    from monitor.app.components.ingest import build_core
    from monitor.core.bus.factory import make_bus
    from monitor.core.runtime import tune_gc

    settings = settings_for(bootstrap, work / "home-real", uuid.uuid4().hex[:8])
    bus = make_bus(settings)
    core = build_core(Context(settings=settings, bus=bus))
    tune_gc()  # what `finsent replay` does before replaying
    try:
        stats = Replayer(FileSource(name="bench", path=path, speed=0), core.publisher).run(threading.Event())
    finally:
        core.close()
        bus.close()
    return stats.summary()


def run_baseline(bootstrap: str, path: Path, limit: int, work: Path) -> dict:
    from monitor.core.bus.factory import make_bus
    from monitor.core.records import NewsItem

    settings = settings_for(bootstrap, work / "home-base", uuid.uuid4().hex[:8])
    bus = make_bus(settings)
    producer = bus.producer()
    items = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= limit:
                break
            row = json.loads(line)
            items.append(
                NewsItem(
                    id=f"bench-{i}",
                    source="bench",
                    title=row["title"],
                    body=row["body"],
                    url=row["url"],
                    published_at=row["published_at"],
                    tickers=tuple(row["tickers"]),
                )
            )
    try:
        producer.send(settings.topics.raw, b"warm-up").get(timeout=30)
        started = time.perf_counter()
        for item in items:
            producer.send(settings.topics.raw, item.encode(), key=item.primary_key).get(timeout=30)
        seconds = time.perf_counter() - started
    finally:
        producer.close()
        bus.close()
    return {"produced": len(items), "seconds": round(seconds, 3)}


def run_transport(bootstrap: str, path: Path, work: Path) -> dict:
    """The ceiling: the same producer sending pre-encoded bytes in a tight loop, one flush."""
    from monitor.core.bus.factory import make_bus

    settings = settings_for(bootstrap, work / "home-transport", uuid.uuid4().hex[:8])
    bus = make_bus(settings)
    producer = bus.producer()
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    payloads = [(json.dumps(r).encode(), r["tickers"][0]) for r in rows]
    try:
        producer.send(settings.topics.raw, b"warm-up").get(timeout=30)
        started = time.perf_counter()
        deliveries = [producer.send(settings.topics.raw, value, key=key) for value, key in payloads]
        producer.flush(timeout=60)
        for d in deliveries:
            d.get(timeout=60)
        seconds = time.perf_counter() - started
    finally:
        producer.close()
        bus.close()
    return {"produced": len(payloads), "seconds": round(seconds, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kafka", metavar="HOST:PORT", help="broker to use (default: start one with kafka-local)")
    ap.add_argument("--stories", type=int, default=20_000)
    ap.add_argument("--baseline-stories", type=int, default=3_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each side; the best is reported")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    from monitor.core.logs import configure_logging

    configure_logging("WARNING", "console")
    with tempfile.TemporaryDirectory(prefix="finsent-bench-ingest-") as tmp:
        work = Path(tmp)
        broker_state = None
        bootstrap = args.kafka
        if not bootstrap:
            broker_state = work / "kafka"
            bootstrap = start_broker(broker_state)
        try:
            path = work / "stories.jsonl"
            make_file(path, args.stories)
            reals, bases, ceilings = [], [], []
            for n in range(args.repeat):
                reals.append(run_real(bootstrap, path, work / f"run{n}"))
                bases.append(run_baseline(bootstrap, path, args.baseline_stories, work / f"run{n}"))
                ceilings.append(run_transport(bootstrap, path, work / f"run{n}"))
            ceiling = min(ceilings, key=lambda r: r["seconds"])
            real = min(reals, key=lambda r: r["seconds"])
            base = min(bases, key=lambda r: r["seconds"])
        finally:
            if broker_state:
                stop_broker(broker_state)
    real_rate = real["produced"] / real["seconds"] if real["seconds"] else 0.0
    base_rate = base["produced"] / base["seconds"] if base["seconds"] else 0.0
    print(
        json.dumps(
            {
                "bench": "ingest",
                "stories": args.stories,
                "repeat": args.repeat,
                "all_real_seconds": [r["seconds"] for r in reals],
                "all_baseline_seconds": [b["seconds"] for b in bases],
                "real": {**real, "stories_per_s": round(real_rate)},
                "baseline_send_get_per_story": {**base, "stories_per_s": round(base_rate)},
                "transport_only_ceiling": {**ceiling, "stories_per_s": round(ceiling["produced"] / ceiling["seconds"])},
                "speedup_vs_baseline": round(real_rate / base_rate, 1) if base_rate else None,
                "target_stories_per_s": 5000,
                "meets_target": real_rate >= 5000,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
