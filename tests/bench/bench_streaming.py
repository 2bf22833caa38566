"""Streaming benchmark: classify throughput and publish->trend latency through a real Kafka broker.

    PYTHONPATH=. .venv/bin/python tests/bench/bench_streaming.py --kafka 127.0.0.1:PORT \
        --engine real --home /path/with/models   # or --engine fake (KeywordEngine, no torch)

Part 1, throughput: N stories are pre-loaded on news.raw; a classify worker scores them all and we
time it from its first poll to the last acknowledged commit. Baseline in the same run: the same
worker with ``classifier.max_batch_size=1`` (one story per engine call, produce, ack and commit).

Part 2, latency: classify + aggregate (rekey + windows) run in this process on the real broker; a
paced producer publishes stories at 50, 100 and 200 stories/s (event time = publish time); each
story carries a unique ticker, so the first TrendPoint for ``ticker:<that>`` read back from
news.trends marks the moment the story is reflected in a trend. We also time publish->news.scored.
Prints a Markdown table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from monitor.app.config import Settings, TopicSettings, load_settings  # noqa: E402
from monitor.core.bus.codec import send_record  # noqa: E402
from monitor.core.bus.kafka import KafkaBus  # noqa: E402
from monitor.core.records import NewsItem, ScoredItem, TrendPoint, decode  # noqa: E402

HEADLINES = [
    "{t} beats quarterly earnings estimates as cloud revenue jumps",
    "{t} shares plunge after regulator opens fraud probe",
    "{t} announces $2bn acquisition of rival chipmaker",
    "{t} cuts full-year guidance citing weak consumer demand",
    "Fed holds rates steady; {t} rallies with the wider market",
    "{t} recalls vehicles over software fault, stock slips",
    "{t} CEO says AI demand remains strong into next quarter",
    "Analysts upgrade {t} to buy on margin recovery",
]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * (len(s) - 1))))
    return s[k]


def make_settings(args: argparse.Namespace, suffix: str, **sections) -> Settings:
    topics = TopicSettings(**{k: f"{v}.bench.{suffix}" for k, v in TopicSettings().model_dump().items()})
    base = {
        "home": str(args.home),
        "kafka": {"bootstrap": args.kafka, "partitions": 3},
        "topics": topics.model_dump(),
        "http": {"enabled": False},
        "logging": {"level": "WARNING"},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return load_settings(None, **base)


def make_engine(args: argparse.Namespace, settings: Settings):
    if args.engine == "fake":
        from tests.stages.keyword_engine import KeywordEngine

        return KeywordEngine()
    from monitor.stages.scoring import load_engine

    return load_engine(settings)


def story(i: int, ticker: str, published: datetime | None = None) -> NewsItem:
    return NewsItem(
        id=f"bench-{ticker}-{i}",
        source=("wire", "rss", "blog")[i % 3],
        title=HEADLINES[i % len(HEADLINES)].format(t=ticker),
        published_at=published or datetime.now(timezone.utc),
        tickers=(ticker,),
    )


# -- part 1: throughput --------------------------------------------------------------------------
def throughput(args: argparse.Namespace, engine, batch_size: int, label: str) -> dict:
    from monitor.stages.classify import ClassifyStage

    settings = make_settings(
        args,
        f"tp{batch_size}-{uuid.uuid4().hex[:6]}",
        classifier={"max_batch_size": batch_size, "max_delay_ms": 20},
        classify={"max_in_flight": 4096, "poll_max_records": 500},
    )
    bus = KafkaBus(settings.kafka)
    bus.ensure_topics(settings.topics.all())
    p = bus.producer()
    tickers = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "META", "GOOG", "JPM"]
    ds = [
        send_record(p, settings.topics.raw, s, key=s.primary_key)
        for s in (story(i, tickers[i % len(tickers)]) for i in range(args.n))
    ]
    for d in ds:
        d.get(60)
    p.close()
    stage = ClassifyStage(settings, bus, engine, CollectorRegistry(), name=f"bench-{label}")
    stop = threading.Event()
    t = threading.Thread(target=stage.run, args=(stop,), daemon=True)
    t0 = time.perf_counter()
    t.start()
    while stage.metrics.scored._value.get() < args.n:
        if not t.is_alive():
            raise RuntimeError("classify stage died")
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    stop.set()
    t.join(60)
    batches = stage.batches
    return {
        "label": label,
        "max_batch_size": batch_size,
        "stories": args.n,
        "seconds": round(elapsed, 3),
        "stories_per_s": round(args.n / elapsed, 1),
        "batches": batches,
        "mean_batch": round(args.n / max(1, batches), 1),
    }


# -- part 2: latency -----------------------------------------------------------------------------
class TopicWatcher(threading.Thread):
    """Records the first time each key is seen on a topic (wall clock, seconds)."""

    def __init__(self, bootstrap: str, topic: str, key_of) -> None:
        super().__init__(daemon=True)
        self.c = KafkaConsumer(
            topic,
            bootstrap_servers=[bootstrap],
            group_id=f"bench-watch-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="latest",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
        )
        self.key_of = key_of
        self.first_seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.assigned = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            batches = self.c.poll(timeout_ms=50)
            if self.c.assignment():
                self.assigned.set()
            now = time.time()
            for records in batches.values():
                for r in records:
                    k = self.key_of(r.value)
                    if k is not None and k not in self.first_seen:
                        self.first_seen[k] = now
        self.c.close()


def latency(args: argparse.Namespace, engine) -> list[dict]:
    from monitor.app.component import Context
    from monitor.app.components.stages import build_aggregate, build_classify

    settings = make_settings(
        args,
        f"lat-{uuid.uuid4().hex[:6]}",
        aggregator={"windows": [{"name": "1m", "size": "1m"}, {"name": "5m", "size": "5m", "hop": "1m"}]},
    )
    bus = KafkaBus(settings.kafka)
    bus.ensure_topics(settings.topics.all())
    settings.ensure_dirs()
    ctx = Context(settings=settings, bus=bus, registry=CollectorRegistry())
    ctx.engine = engine
    stages = [s for c in (build_classify(ctx), build_aggregate(ctx)) for s in c.stages]
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stop,), daemon=True) for s in stages]

    def trend_key(v: bytes) -> str | None:
        p = decode(TrendPoint, v)
        return p.key[len("ticker:") :] if p.key.startswith("ticker:L") else None

    def scored_key(v: bytes) -> str | None:
        s = decode(ScoredItem, v)
        return s.item.tickers[0]

    trends = TopicWatcher(args.kafka, settings.topics.trends, trend_key)
    scored = TopicWatcher(args.kafka, settings.topics.scored, scored_key)
    for w in (trends, scored):
        w.start()
    for t in threads:
        t.start()
    for w in (trends, scored):
        w.assigned.wait(60)
    while not all(s.ready()[0] for s in stages):
        time.sleep(0.1)
    time.sleep(2.0)
    results = []
    producer = bus.producer()
    seq = 0
    try:
        for rate in args.rates:
            sent: dict[str, float] = {}
            n = int(rate * args.duration)
            warm = int(rate * args.warmup)
            start = time.perf_counter()
            wall0 = time.time()
            for i in range(n + warm):
                target = start + i / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                seq += 1
                ticker = f"L{seq}"
                item = story(seq, ticker)
                send_record(producer, settings.topics.raw, item, key=item.primary_key)
                if i >= warm:
                    sent[ticker] = time.time()
            producer.flush(30)
            achieved = (n + warm) / (time.perf_counter() - start)
            deadline = time.time() + 60
            while time.time() < deadline and not all(k in trends.first_seen for k in sent):
                time.sleep(0.1)
            lat_trend = [trends.first_seen[k] - t for k, t in sent.items() if k in trends.first_seen]
            lat_scored = [scored.first_seen[k] - t for k, t in sent.items() if k in scored.first_seen]
            results.append(
                {
                    "rate": rate,
                    "achieved_rate": round(achieved, 1),
                    "stories": n,
                    "missing": n - len(lat_trend),
                    "scored_p50_ms": round(1000 * percentile(lat_scored, 50), 1),
                    "scored_p99_ms": round(1000 * percentile(lat_scored, 99), 1),
                    "trend_p50_ms": round(1000 * percentile(lat_trend, 50), 1),
                    "trend_p99_ms": round(1000 * percentile(lat_trend, 99), 1),
                    "trend_mean_ms": round(1000 * statistics.fmean(lat_trend), 1) if lat_trend else None,
                    "wall_start": wall0,
                }
            )
            print(f"  rate {rate}/s: {results[-1]}", file=sys.stderr, flush=True)
    finally:
        producer.close()
        stop.set()
        for t in threads:
            t.join(30)
        for w in (trends, scored):
            w.stop.set()
            w.join(10)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kafka", default=os.environ.get("FINSENT_TEST_KAFKA"), help="bootstrap host:port")
    ap.add_argument("--engine", choices=["fake", "real"], default="real")
    ap.add_argument(
        "--home",
        type=Path,
        default=Path("/tmp/finsent-bench-home"),
        help="finsent home (the real engine loads the registry under HOME/models)",
    )
    ap.add_argument("--n", type=int, default=2000, help="stories for the throughput part")
    ap.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=[50, 100, 200])
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds per rate")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each rate")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    if not args.kafka:
        ap.error("--kafka HOST:PORT (or FINSENT_TEST_KAFKA) is required: start one with deploy/kafka/kafka-local")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(args, make_settings(args, "engine"))
    version = engine.version
    print(
        f"engine={args.engine} version={version} cpus={os.cpu_count()} python={platform.python_version()}",
        file=sys.stderr,
    )
    report: dict = {
        "engine": args.engine,
        "model_version": version,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if not args.skip_throughput:
        engine.predict([story(0, "WARM").text] * 8)
        base = throughput(args, engine, 1, "one story at a time")
        batched = throughput(args, engine, 256, "micro-batched")
        report["throughput"] = [base, batched]
        report["speedup"] = round(batched["stories_per_s"] / base["stories_per_s"], 2)
        print("\n| classify | max_batch_size | stories/s | mean batch | seconds |\n|---|---:|---:|---:|---:|")
        for r in (base, batched):
            print(
                f"| {r['label']} | {r['max_batch_size']} | {r['stories_per_s']} | {r['mean_batch']} | {r['seconds']} |"
            )
        print(f"\nspeed-up micro-batched vs one at a time: x{report['speedup']}")
    if not args.skip_latency:
        lat = latency(args, engine)
        report["latency"] = lat
        print(
            "\n| offered rate/s | achieved/s | publish->scored p50 / p99 ms | publish->trend p50 / p99 ms | missing |"
        )
        print("|---:|---:|---:|---:|---:|")
        for r in lat:
            print(
                f"| {r['rate']} | {r['achieved_rate']} | {r['scored_p50_ms']} / {r['scored_p99_ms']} | "
                f"{r['trend_p50_ms']} / {r['trend_p99_ms']} | {r['missing']} |"
            )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
