"""Soak benchmark (not a test): hours of event time compressed into minutes, recording the resident
memory (RSS) and open file descriptors of every process over time, in either deployment:

    PYTHONPATH=. .venv/bin/python tests/bench/soak.py --models $FINSENT_HOME/models \
        [--mode roles|embedded] [--minutes 3] [--rate 100] [--event-hours 1] [--state /tmp/finsent-soak-kafka]

* ``--mode roles`` (default): starts ``deploy/kafka/kafka-local`` with ``KAFKA_LOCAL_STATE=--state``
  (never the shared broker, stopped at the end) and ``finsent run --stages
  ingest|classify|aggregate|alerts`` as four processes.
* ``--mode embedded``: one ``finsent run`` on the embedded defaults that ``make run`` starts (the
  in-process bus, the demo feed on), no broker.
* Either way: the real model from ``--models``, one pushed-webhook source, and one alert rule that
  fires and resolves on the mix of headlines (to a local signed-webhook receiver in this process).
* Pushes ``--rate`` stories/s (signed, 10 per request) for ``--minutes``; event times run evenly
  over ``--event-hours`` ending now, so the windows open, close and are evicted as in that many
  hours of real traffic.
* Every ``--sample-s`` seconds records RSS and open fds of the broker JVM, each role and this
  driver. Growth is reported from the first sample after the warm-up (``--warmup-s``) to the last,
  and as MiB/min over the last ``--tail-min`` minutes (the levelling-off criterion).

Prints a Markdown table and writes the whole series as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402

from connectors.webhook import sign  # noqa: E402
from tests.alerts.helpers import Receiver  # noqa: E402
from tests.ports import free_port  # noqa: E402

KAFKA_LOCAL = ROOT / "deploy" / "kafka" / "kafka-local"
ROLES = ("ingest", "classify", "aggregate", "alerts")
SECRET = "soak-push-secret"
HEADLINES = [
    "{t} beats quarterly earnings estimates as cloud revenue jumps {n}",
    "{t} shares plunge after regulator opens fraud probe {n}",
    "{t} announces acquisition of rival chipmaker for ${n}m",
    "{t} cuts full-year guidance citing weak consumer demand ({n})",
    "Fed holds rates steady; {t} rallies with the wider market {n}",
    "{t} recalls {n} vehicles over software fault, stock slips",
    "{t} CEO says AI demand remains strong into next quarter {n}",
    "Analysts downgrade {t} to sell on margin squeeze {n}",
]
RULES = """
rules:
  - name: market-gloom
    type: threshold
    key: all
    window: 5m
    metric: negative_share
    op: ">"
    value: 0.45
    min_count: 20
    for: 0
    severity: warning
    receiver: hook
"""


def proc_sample(pid: int) -> tuple[float, int] | None:
    """(RSS MiB, open fds) of a live process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, AttributeError):
        return None
    return rss_kb / 1024, fds


def metric(url: str, name: str) -> float:
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return float("nan")
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models",
        required=True,
        type=Path,
        help="a model registry with a current version ($FINSENT_HOME/models, or ~/.cache/finsent/test-model/quick-*)",
    )
    ap.add_argument(
        "--mode",
        choices=("roles", "embedded"),
        default="roles",
        help="roles: four processes over a broker of its own; embedded: one `finsent run` (in-process bus, demo on)",
    )
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--tail-min", type=float, default=10.0, help="report growth over the last N minutes")
    ap.add_argument("--rate", type=float, default=100.0, help="stories per second")
    ap.add_argument("--event-hours", type=float, default=1.0)
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--warmup-s", type=float, default=30.0)
    ap.add_argument("--state", type=Path, default=Path(tempfile.gettempdir()) / "finsent-soak-kafka")
    ap.add_argument("--out", type=Path, default=Path("soak.json"))
    ap.add_argument(
        "--dedup-max-entries",
        type=int,
        default=None,
        help="connectors.dedup.max_entries for the ingest role (unset: the default)",
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="finsent-soak-"))
    home = work / "home"
    shutil.copytree(args.models, home / "models", ignore=shutil.ignore_patterns(".staging"))
    (work / "rules.yaml").write_text(RULES)
    receiver = Receiver()
    embedded = args.mode == "embedded"
    roles = ("all",) if embedded else ROLES
    # The broker's heap is resident from the start (-Xms = -Xmx, pre-touched; Kafka's own advice is
    # Xms = Xmx): a JVM's RSS otherwise climbs for hours towards its fixed -Xmx as it touches
    # pages, which reads like growth but is a bound. What could still grow then is off-heap.
    kenv = {
        **os.environ,
        "KAFKA_LOCAL_STATE": str(args.state),
        "KAFKA_LOCAL_PORT": str(free_port()),
        "KAFKA_LOCAL_JVM_OPTS": "-Xms512m -XX:+AlwaysPreTouch",
    }
    broker_pid: int | None = None
    bootstrap = ""
    if not embedded:
        shutil.rmtree(args.state, ignore_errors=True)
        started = subprocess.run([str(KAFKA_LOCAL), "start"], env=kenv, capture_output=True, text=True, timeout=300)
        if started.returncode != 0:
            print(started.stderr, file=sys.stderr)
            return 1
        bootstrap = started.stdout.strip().splitlines()[-1].split("=", 1)[1]
        broker_pid = int((args.state / "broker.pid").read_text())
    procs: dict[str, subprocess.Popen] = {}
    urls: dict[str, str] = {}
    try:
        for role in roles:
            port = free_port()
            urls[role] = f"http://127.0.0.1:{port}"
            cfg = work / f"{role}.yaml"
            cfg.write_text(
                yaml.safe_dump(
                    {
                        "home": str(home),
                        "logging": {"level": "WARNING", "format": "json"},
                        **({} if embedded else {"kafka": {"bootstrap": bootstrap}}),
                        "http": {"port": port},
                        "connectors": {
                            "demo": embedded,
                            "sources": [
                                {"type": "webhook", "name": "wire", "secret": {"value": SECRET}, "max_items": 100}
                            ],
                            **({"dedup": {"max_entries": args.dedup_max_entries}} if args.dedup_max_entries else {}),
                        },
                        "alerts": {
                            "rules_file": str(work / "rules.yaml"),
                            "default_receiver": "hook",
                            "receivers": {"hook": {"type": "webhook", "url": receiver.url, "secret": "soak-hook"}},
                        },
                    }
                )
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
            env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
            procs[role] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "monitor.app.cli",
                    "run",
                    *(() if embedded else ("--stages", role)),
                    "--config",
                    str(cfg),
                ],
                env=env,
                stdout=(work / f"{role}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 300
        for role, url in urls.items():
            while True:
                if procs[role].poll() is not None:
                    raise SystemExit(f"{role} exited: {(work / f'{role}.log').read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/readyz", timeout=3).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{role} never became ready")
                time.sleep(0.5)

        pids = {
            **({"broker (JVM)": broker_pid} if broker_pid else {}),
            **{("finsent run (embedded)" if r == "all" else r): p.pid for r, p in procs.items()},
            "driver": os.getpid(),
        }
        series: list[dict] = []
        stop = threading.Event()
        t0 = time.monotonic()

        def sampler() -> None:
            while True:
                row = {"t": round(time.monotonic() - t0, 1)}
                for name, pid in pids.items():
                    s = proc_sample(pid)
                    row[name] = None if s is None else {"rss_mib": round(s[0], 1), "fds": s[1]}
                series.append(row)
                if stop.wait(args.sample_s):
                    return

        threading.Thread(target=sampler, daemon=True).start()
        total = int(args.rate * args.minutes * 60)
        event_span = args.event_hours * 3600
        event_start = datetime.now(timezone.utc) - timedelta(seconds=event_span)
        rng = random.Random(7)
        scorer = urls["all" if embedded else "classify"]
        push_url = f"{urls['all' if embedded else 'ingest']}/ingest/wire"
        sent = refused = 0
        per_request = 10
        with httpx.Client(timeout=30) as client:
            for first in range(0, total, per_request):
                due = t0 + first / args.rate
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                items = []
                for i in range(first, min(total, first + per_request)):
                    tick = f"T{rng.randrange(400):03d}"
                    items.append(
                        {
                            "id": f"soak-{i}",
                            "title": rng.choice(HEADLINES).format(t=f"${tick}", n=i),
                            "published_at": (event_start + timedelta(seconds=i * event_span / total)).isoformat(),
                        }
                    )
                body = json.dumps({"items": items}).encode()
                r = client.post(push_url, content=body, headers={"X-Finsent-Signature": sign(SECRET, body)})
                if r.status_code == 202:
                    sent += len(items)
                else:
                    refused += len(items)
        push_s = time.monotonic() - t0
        # Let the pipeline drain (bounded), then one last sample.
        drain_deadline = time.monotonic() + 120
        while time.monotonic() < drain_deadline and metric(scorer, "finsent_classify_scored_total") < sent:
            time.sleep(2)
        stop.set()
        time.sleep(0.1)
        last = {"t": round(time.monotonic() - t0, 1)}
        for name, pid in pids.items():
            s = proc_sample(pid)
            last[name] = None if s is None else {"rss_mib": round(s[0], 1), "fds": s[1]}
        series.append(last)
        classified = metric(scorer, "finsent_classify_scored_total")
        alive = {r: p.poll() is None for r, p in procs.items()}
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        if not embedded:
            subprocess.run([str(KAFKA_LOCAL), "stop"], env=kenv, capture_output=True, text=True, timeout=120)
        receiver.close()

    warm = next((row for row in series if row["t"] >= args.warmup_s), series[0])
    # the tail ends where the pushing ends (the drain that follows is not steady-state load)
    pushing = [row for row in series if row["t"] <= push_s + args.sample_s] or series
    tail_end = pushing[-1]
    tail_start = next((row for row in pushing if row["t"] >= tail_end["t"] - args.tail_min * 60), pushing[0])
    tail_span_min = max(1e-9, (tail_end["t"] - tail_start["t"]) / 60)
    print(
        f"machine={platform.platform()} cpus={os.cpu_count()} python={platform.python_version()} "
        f"date={datetime.now(timezone.utc):%Y-%m-%dT%H:%MZ}"
    )
    print(
        f"pushed {sent} stories ({refused} refused) in {push_s:.0f}s = {sent / push_s:.1f}/s; event time "
        f"{args.event_hours:g} h; classified {classified:.0f}; alerts delivered {len(receiver.accepted)}; "
        f"roles alive at the end: {alive}"
    )
    print(
        f"mode={args.mode}; growth over the last {tail_span_min:.1f} min of pushing: "
        f"{tail_start['t']:.0f}s to {tail_end['t']:.0f}s"
    )
    print(
        f"\n| process | RSS at {warm['t']:.0f}s (MiB) | RSS at end | peak | growth | last {args.tail_min:g} min (MiB/min) "
        f"| fds at {warm['t']:.0f}s | fds at end | peak fds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in pids:
        vals = [row[name] for row in series if row.get(name)]
        w, e = warm.get(name), last.get(name)
        ts, te = tail_start.get(name), tail_end.get(name)
        if not vals or not w or not e or not ts or not te:
            print(f"| {name} | n/a |")
            continue
        slope = (te["rss_mib"] - ts["rss_mib"]) / tail_span_min
        print(
            f"| {name} | {w['rss_mib']:.0f} | {e['rss_mib']:.0f} | {max(v['rss_mib'] for v in vals):.0f} | "
            f"{e['rss_mib'] - w['rss_mib']:+.0f} | {slope:+.2f} | {w['fds']} | {e['fds']} | "
            f"{max(v['fds'] for v in vals)} |"
        )
    args.out.write_text(
        json.dumps(
            {
                "mode": args.mode,
                "sent": sent,
                "refused": refused,
                "classified": classified,
                "alerts": len(receiver.accepted),
                "alive": alive,
                "series": series,
            },
            indent=1,
        )
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(alive.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
