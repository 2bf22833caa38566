"""Replay memory benchmark (not a test): the peak RSS of ``finsent replay`` on a large JSONL file,
produced into a real single-node broker of its own.

    PYTHONPATH=. .venv/bin/python tests/bench/replay_memory.py [--size-mb 200] \
        [--file /tmp/replay200.jsonl] [--dedup-max-entries N] [--state /tmp/finsent-replay-kafka]

* Writes ``--file`` when it is missing: unique stories (a title of eight finance words, a 30-word
  body, one of 5,000 tickers, one of 7 sources), one story every 2 s of event time, each up to
  30 s out of place (so the bounded sort window has work to do), until the file has ``--size-mb``.
* Starts ``deploy/kafka/kafka-local`` with ``KAFKA_LOCAL_STATE=--state`` (stopped at the end),
  replays the file with ``--speed 0`` under ``/usr/bin/time -v`` in a fresh ``FINSENT_HOME`` and
  prints the replay's summary line, its wall time and its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = ROOT / "deploy" / "kafka" / "kafka-local"
WORDS = (
    "beat miss rise fall profit loss deal merger upgrade downgrade guidance outlook dividend recall shares"
).split()


def write_file(path: Path, size_mb: float) -> int:
    rng = random.Random(26)
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    limit = int(size_mb * 1024 * 1024)
    written = rows = 0
    with path.open("w", encoding="utf-8") as out:
        while written < limit:
            i = rows
            at = base + timedelta(seconds=max(0, 2 * i + rng.randint(-30, 30)))
            line = (
                json.dumps(
                    {
                        "title": f"Company{i % 5000} {' '.join(rng.choices(WORDS, k=8))} #{i}",
                        "body": " ".join(rng.choices(WORDS, k=30)),
                        "published_at": at.isoformat(),
                        "source": f"wire{i % 7}",
                        "tickers": [f"C{i % 5000}"],
                    }
                )
                + "\n"
            )
            out.write(line)
            written += len(line.encode())
            rows += 1
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=200.0)
    ap.add_argument("--file", type=Path, default=Path(tempfile.gettempdir()) / "replay200.jsonl")
    ap.add_argument(
        "--dedup-max-entries", type=int, default=None, help="connectors.dedup.max_entries (unset: the default)"
    )
    ap.add_argument("--state", type=Path, default=Path(tempfile.gettempdir()) / "finsent-replay-kafka")
    args = ap.parse_args()
    if not args.file.exists():
        print(f"writing {args.file} ({args.size_mb:g} MB): {write_file(args.file, args.size_mb)} rows", flush=True)
    shutil.rmtree(args.state, ignore_errors=True)
    kenv = {**os.environ, "KAFKA_LOCAL_STATE": str(args.state), "KAFKA_LOCAL_PORT": str(free_port())}
    started = subprocess.run([str(KAFKA_LOCAL), "start"], env=kenv, capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        print(started.stderr, file=sys.stderr)
        return 1
    bootstrap = started.stdout.strip().splitlines()[-1].split("=", 1)[1]
    home = Path(tempfile.mkdtemp(prefix="finsent-replay-home-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env.update(FINSENT_HOME=str(home), FINSENT_CONNECTORS__DEMO="false")
    if args.dedup_max_entries:
        env["FINSENT_CONNECTORS__DEDUP__MAX_ENTRIES"] = str(args.dedup_max_entries)
    finsent = Path(sys.executable).with_name("finsent")
    try:
        run = subprocess.run(
            ["/usr/bin/time", "-v", str(finsent), "replay", str(args.file), "--speed", "0", "--kafka", bootstrap],
            env=env,
            capture_output=True,
            text=True,
        )
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=kenv, capture_output=True, text=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", run.stderr)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "(no summary)"
    print(
        f"file={args.file} ({args.file.stat().st_size / 1e6:.0f} MB) dedup_max_entries="
        f"{args.dedup_max_entries or 'default'} exit={run.returncode}"
    )
    print(f"summary: {summary}")
    if peak and wall:
        print(
            f"peak RSS {int(peak.group(1)) / 1024:.0f} MiB ({int(peak.group(1)) / 1000:.0f} MB), wall {wall.group(1)}"
        )
    else:
        print(run.stderr[-2000:], file=sys.stderr)
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
