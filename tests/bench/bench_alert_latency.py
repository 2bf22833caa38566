"""Publish -> alert latency benchmark: the whole pipeline on a real Kafka broker.

    PYTHONPATH=. .venv/bin/python tests/bench/bench_alert_latency.py \
        [--kafka 127.0.0.1:PORT] [--home HOME] --rates 50,100,200,400 --duration 30 --warmup 5 \
        --baseline-rate 10 [--classify-workers 1]

What runs: ``--classify-workers N`` (default 1) ``finsent classify`` processes in one consumer
group, as an operator runs them, plus ``monitor.app.wiring.build_daemon(settings, ("aggregate",
"alerts"))`` in the benchmark's process (``--classify-workers 0``: classify in that process too,
the layout of the first measurements), on a real broker (``--kafka``, or a private one started with ``deploy/kafka/kafka-local`` and stopped at the
end), the real fine-tuned model from ``--home`` (default: the cached ``quick`` test model, see
``tests/models/fixtures.py``), unique topics, no connectors. A paced producer publishes
``NewsItem``s straight to ``news.raw`` (key = primary ticker, ``published_at`` = now) at ``--rate``
stories/s: ordinary headlines about ~150 random tickers, and once a second, in their place, one
strongly negative story about a fresh ticker ``PLT<n>``. One threshold rule (``ticker:PLT*``,
tumbling 1m window, ``mean_score < -0.4``, ``min_count 1``, ``for 0``) turns each planted story into
its own alert, delivered to a local webhook that records the arrival wall time of each body.

Latency = first arrival of the firing alert whose ``key`` label is ``ticker:PLT<n>`` minus the wall
time just before that story was handed to the producer. Reported per phase: p50/p95/p99/max,
planted vs alerted (a planted story the model scored above the threshold cannot alert; its score is
read from ``news.scored``), achieved rate, and publish->scored for the planted stories. The
baseline phase runs the same measurement at ``--baseline-rate`` (default 10/s) in the same
invocation, each phase with a fresh daemon, home and topics; the ratio of p99s is what the load
costs. Prints a Markdown table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402

from monitor.app.config import Settings, TopicSettings, load_settings  # noqa: E402
from monitor.core.bus.codec import send_record  # noqa: E402
from monitor.core.records import NewsItem, ScoredItem, decode  # noqa: E402

KAFKA_LOCAL = ROOT / "deploy" / "kafka" / "kafka-local"
RULE_NAME = "plt-gloom"
THRESHOLD = -0.4
RULES = f"""
rules:
  - name: {RULE_NAME}
    type: threshold
    key: "ticker:PLT*"
    window: 1m
    metric: mean_score
    op: "<"
    value: {THRESHOLD}
    min_count: 1
    for: 0
    severity: critical
    receiver: hook
    annotations:
      summary: "{{{{ key }}}} mean score {{{{ value | signed }}}} over {{{{ window }}}}"
"""

PLANTED = [
    "${t} shares plunge 40% after fraud charges, bankruptcy fears mount",
    "${t} stock crashes as chief executive resigns amid accounting scandal",
    "${t} downgraded to sell, shares tumble to a record low",
    "${t} slumps after profit warning, guidance slashed",
    "${t} sinks 30% after missing earnings estimates badly, layoffs announced",
    "${t} plummets on collapsing sales and mass layoffs",
    "${t} shares drop as lenders cut credit lines, default feared",
    "${t} tumbles after auditor resigns, shares halted",
    "${t} stock collapses after losing its largest contract",
    "${t} files for bankruptcy protection as losses mount",
]
BACKGROUND = [
    # positive
    "${t} beats quarterly earnings estimates as cloud revenue jumps",
    "${t} rallies to a record high on strong revenue growth",
    "Analysts upgrade ${t} to buy on margin recovery",
    "${t} raises full-year outlook after a strong quarter",
    "${t} announces bigger buyback and dividend increase",
    # neutral
    "${t} to present at investor conference next week",
    "${t} names new chief financial officer",
    "${t} schedules third-quarter earnings call for Thursday",
    "${t} completes previously announced debt offering",
    "${t} shares little changed ahead of the Fed decision",
    "${t} opens new regional office in Austin",
    # negative
    "${t} cuts guidance citing weak consumer demand",
    "${t} recalls vehicles over software fault, stock slips",
    "${t} falls after regulator opens probe into sales practices",
    "${t} misses revenue estimates as margins shrink",
]
_LETTERS = "ABCDEFGHIJKLMNOQRSTUVWXYZ"  # no P: no background ticker can look like PLT*


def background_tickers(n: int, rng: random.Random) -> list[str]:
    seen: set[str] = set()
    while len(seen) < n:
        seen.add("".join(rng.choice(_LETTERS) for _ in range(rng.choice((3, 4)))))
    return sorted(seen)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None when there are no values."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(q / 100 * (len(s) - 1))))]


def ms(v: float | None) -> float | None:
    return None if v is None else round(1000 * v, 1)


# -- broker ---------------------------------------------------------------------------------------
class LocalBroker:
    """A private ``kafka-local`` broker with its own state dir; ``stop()`` removes every trace."""

    def __init__(self) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="bench-alert-kafka-"))
        self.env = {**os.environ, "KAFKA_LOCAL_STATE": str(self.state)}
        self.bootstrap: str | None = None

    def start(self) -> str:
        proc = subprocess.run([str(KAFKA_LOCAL), "start"], env=self.env, capture_output=True, text=True, timeout=600)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines or not lines[-1].startswith("bootstrap="):
            raise RuntimeError(f"kafka-local start failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        self.bootstrap = lines[-1].split("=", 1)[1]
        return self.bootstrap

    def stop(self) -> None:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=self.env, capture_output=True, text=True, timeout=120)
        shutil.rmtree(self.state, ignore_errors=True)


# -- webhook receiver -----------------------------------------------------------------------------
@dataclass
class Arrival:
    at: float
    body: dict


@dataclass
class WebhookReceiver:
    """In-process HTTP receiver on 127.0.0.1:<ephemeral>, recording each body's arrival wall time."""

    arrivals: list[Arrival] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.time()
                with lock:
                    receiver.arrivals.append(Arrival(at, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="bench-webhook", daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def first_firing(self) -> dict[str, tuple[float, dict]]:
        """Trend key -> (first arrival time, alert) over every firing alert received so far."""
        seen: dict[str, tuple[float, dict]] = {}
        for arrival in list(self.arrivals):
            for alert in arrival.body.get("alerts", []):
                key = alert.get("labels", {}).get("key")
                if alert.get("status") == "firing" and key and key not in seen:
                    seen[key] = (arrival.at, alert)
        return seen

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# -- planted-story scores -------------------------------------------------------------------------
class ScoredWatcher(threading.Thread):
    """Reads news.scored; for planted stories (message key PLT*) records first-seen time and score."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="bench-scored-watcher", daemon=True)
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=[bootstrap],
            group_id=f"bench-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
        )
        self.seen: dict[str, tuple[float, float]] = {}  # ticker -> (wall time, sentiment score)
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for records in self.consumer.poll(timeout_ms=100).values():
                    now = time.time()
                    for r in records:
                        if r.key and r.key.startswith(b"PLT"):
                            scored = decode(ScoredItem, r.value)
                            self.seen.setdefault(scored.item.tickers[0], (now, scored.sentiment_score))
        finally:
            self.consumer.close()


# -- one phase ------------------------------------------------------------------------------------
def phase_settings(args: argparse.Namespace, work: Path, receiver_url: str) -> tuple[Settings, Path]:
    """The phase's settings, and the same as a config file for the classify processes."""
    suffix = uuid.uuid4().hex[:8]
    home = work / f"home-{suffix}"
    shutil.copytree(args.home / "models", home / "models", ignore=shutil.ignore_patterns(".staging"))
    rules = work / f"rules-{suffix}.yaml"
    rules.write_text(RULES)
    topics = TopicSettings(**{k: f"{v}.alertbench.{suffix}" for k, v in TopicSettings().model_dump().items()})
    overrides = dict(
        home=str(home),
        kafka={"bootstrap": args.kafka},
        topics=topics.model_dump(),
        http={"port": 0},
        logging={"level": "WARNING"},
        connectors={"demo": False},
        aggregator={"windows": [{"name": "1m", "size": "1m"}]},
        **({"classifier": {"threads": args.classify_threads}} if args.classify_threads else {}),
        alerts={
            "rules_file": str(rules),
            "default_receiver": "hook",
            "receivers": {"hook": {"type": "webhook", "url": receiver_url}},
        },
    )
    config = work / f"config-{suffix}.yaml"
    config.write_text(yaml.safe_dump(overrides))
    return load_settings(None, **overrides), config


def start_classify_workers(n: int, config: Path, work: Path) -> list[subprocess.Popen]:
    """``finsent classify`` processes (one consumer group), as an operator would run them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    procs = []
    for i in range(n):
        log = (work / f"{config.stem}-classify-{i}.log").open("w")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "monitor.app.cli", "classify", "--config", str(config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(ROOT),
            )
        )
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout_s:g}s waiting for {what}")


def run_phase(args: argparse.Namespace, work: Path, rate: int, label: str, rng: random.Random) -> dict:
    from monitor.app.wiring import build_daemon

    receiver = WebhookReceiver()
    settings, config = phase_settings(args, work, receiver.url)
    own = args.classify_workers == 0
    daemon, ctx = build_daemon(settings, ("classify", "aggregate", "alerts") if own else ("aggregate", "alerts"))
    watcher = ScoredWatcher(args.kafka, settings.topics.scored)
    producer = None
    workers: list[subprocess.Popen] = []
    try:
        ctx.bus.ensure_topics(settings.topics.all())
        daemon.start()
        watcher.start()
        workers = start_classify_workers(args.classify_workers, config, work)
        wait_for(lambda: daemon.health.readiness().status == "ok", 180, "the daemon to be ready")
        producer = ctx.bus.producer()
        # a probe story: the classify worker(s) are in the group and scoring before the clock starts
        probe = NewsItem(
            id=f"{label}-probe",
            source="wire",
            title="$PLTPROBE shares plunge",
            tickers=("PLTPROBE",),
            published_at=datetime.now(timezone.utc),
        )
        send_record(producer, settings.topics.raw, probe, key=probe.primary_key)
        producer.flush(30)
        wait_for(lambda: "PLTPROBE" in watcher.seen, 240, "the classify worker(s) to score a probe story")
        time.sleep(2.0)  # let the consumer groups settle before the clock starts
        tickers = background_tickers(150, rng)
        load_before = os.getloadavg()
        planted: dict[str, tuple[str, float]] = {}  # ticker -> (story id, publish wall time)
        total = int(rate * (args.warmup + args.duration))
        warm = int(rate * args.warmup)
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if i >= warm and (i - warm) % rate == rate // 2:  # once per measured second, in place of one
                ticker = f"PLT{len(planted) + 1}"
                title = rng.choice(PLANTED).format(t=ticker)
            else:
                ticker = rng.choice(tickers)
                title = rng.choice(BACKGROUND).format(t=ticker)
            published = time.time()
            item = NewsItem(
                id=f"{label}-{i}-{ticker}",
                source=rng.choice(("wire", "rss", "blog")),
                title=title,
                published_at=datetime.fromtimestamp(published, timezone.utc),
                tickers=(ticker,),
            )
            send_record(producer, settings.topics.raw, item, key=item.primary_key)
            if ticker.startswith("PLT"):
                planted[ticker] = (item.id, published)
        producer.flush(30)
        achieved = total / (time.perf_counter() - start)
        load_after = os.getloadavg()

        def settled() -> bool:  # every planted story alerted, or scored too high to alert
            fired = receiver.first_firing()
            return all(
                f"ticker:{t}" in fired or (t in watcher.seen and watcher.seen[t][1] >= THRESHOLD) for t in planted
            )

        try:
            wait_for(settled, args.drain, "alerts for every planted story")
        except RuntimeError as err:
            print(f"  {label}: {err}", file=sys.stderr)
        fired = receiver.first_firing()
        latencies, alert_to_story_ok = [], 0
        for ticker, (story_id, published) in planted.items():
            hit = fired.get(f"ticker:{ticker}")
            if hit:
                latencies.append(hit[0] - published)
                alert_to_story_ok += story_id in {e.get("id") for e in hit[1].get("evidence", [])}
        scored_lat = [watcher.seen[t][0] - p for t, (_, p) in planted.items() if t in watcher.seen]
        not_negative = sorted(
            (t, round(watcher.seen[t][1], 3)) for t in planted if t in watcher.seen and watcher.seen[t][1] >= THRESHOLD
        )
        unexplained = sorted(t for t in planted if f"ticker:{t}" not in fired and t not in dict(not_negative))
        result = {
            "phase": label,
            "rate": rate,
            "achieved_rate": round(achieved, 1),
            "stories": total,
            "measured_s": args.duration,
            "planted": len(planted),
            "alerted": len(latencies),
            "evidence_matches": alert_to_story_ok,
            "scored_above_threshold": not_negative,
            "missing_unexplained": unexplained,
            "p50_ms": ms(percentile(latencies, 50)),
            "p95_ms": ms(percentile(latencies, 95)),
            "p99_ms": ms(percentile(latencies, 99)),
            "max_ms": ms(max(latencies) if latencies else None),
            "scored_p50_ms": ms(percentile(scored_lat, 50)),
            "scored_p99_ms": ms(percentile(scored_lat, 99)),
            "latencies_ms": [ms(x) for x in latencies],  # in publish order: growth = queueing
            "notifications": len(receiver.arrivals),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
        }
        print(f"  {label}: {json.dumps(result)}", file=sys.stderr, flush=True)
        return result
    finally:
        if producer is not None:
            producer.close()
        stop_workers(workers)
        daemon.stop_event.set()
        code = daemon.wait()
        watcher.stop.set()
        watcher.join(10)
        receiver.close()
        if code != 0:
            print(f"  {label}: daemon stopped with code {code}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kafka", default=None, help="bootstrap HOST:PORT; unset = start a private kafka-local broker")
    ap.add_argument(
        "--home",
        type=Path,
        default=None,
        help="FINSENT_HOME holding a trained model (HOME/models); unset = the cached 'quick' test model",
    )
    ap.add_argument("--rates", default="100", help="stories/s offered in the measured phases, comma-separated")
    ap.add_argument(
        "--classify-workers",
        type=int,
        default=1,
        help="finsent classify processes (one consumer group); 0 = classify inside the bench process",
    )
    ap.add_argument(
        "--classify-threads",
        type=int,
        default=None,
        help="classifier.threads of each classify worker (unset: all cores)",
    )
    ap.add_argument("--baseline-rate", type=int, default=10, help="stories/s offered in the baseline phase (0 = skip)")
    ap.add_argument("--duration", type=float, default=30.0, help="measured seconds per phase (one planted story/s)")
    ap.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds of background stream per phase")
    ap.add_argument("--drain", type=float, default=90.0, help="how long to wait for outstanding alerts after a phase")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from monitor.core.logs import configure_logging

    configure_logging("WARNING", stream=sys.stderr)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-alert-latency-"))
    broker = None
    try:
        if args.home is None:
            from tests.models.fixtures import trained_home

            args.home = trained_home(work / "model", "quick")
        if not args.kafka:
            broker = LocalBroker()
            args.kafka = broker.start()
        print(
            f"broker={args.kafka} home={args.home} cpus={os.cpu_count()} loadavg={os.getloadavg()}",
            file=sys.stderr,
            flush=True,
        )
        phases = []
        if args.baseline_rate:
            phases.append(run_phase(args, work, args.baseline_rate, f"baseline-{args.baseline_rate}", rng))
        for rate in [int(r) for r in args.rates.split(",") if r.strip()]:
            phases.append(run_phase(args, work, rate, f"rate-{rate}", rng))
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        "\n| phase | offered/s | achieved/s | planted | alerted | publish->alert p50 / p95 / p99 / max ms "
        "| planted publish->scored p50 / p99 ms | load avg (1m) before / after |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in phases:
        print(
            f"| {r['phase']} | {r['rate']} | {r['achieved_rate']} | {r['planted']} | {r['alerted']} | "
            f"{r['p50_ms']} / {r['p95_ms']} / {r['p99_ms']} / {r['max_ms']} | "
            f"{r['scored_p50_ms']} / {r['scored_p99_ms']} | {r['loadavg_before'][0]} / {r['loadavg_after'][0]} |"
        )
    report = {
        "benchmark": "publish_to_alert_latency",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "phases": phases,
    }
    report["classify_workers"] = args.classify_workers
    if args.baseline_rate and phases[0]["p99_ms"]:
        for r in phases[1:]:
            if r["p99_ms"]:
                r["p99_ratio_vs_baseline"] = round(r["p99_ms"] / phases[0]["p99_ms"], 2)
                print(f"p99 at {r['rate']}/s vs {args.baseline_rate}/s: x{r['p99_ratio_vs_baseline']}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
