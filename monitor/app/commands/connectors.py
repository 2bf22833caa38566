"""``finsent`` subcommand contributed by the connectors package: ``replay`` (``ingest`` is a role of ``monitor.app.commands.daemon``)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from connectors.replay import Replayer
from connectors.settings import FileSource
from monitor.app.cliargs import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_option, settings_from_args
from monitor.app.component import Context
from monitor.app.components.ingest import build_core
from monitor.core.bus.base import BusError
from monitor.core.bus.factory import make_command_bus
from monitor.core.runtime import tune_gc


def _overrides(args: argparse.Namespace) -> dict:
    return {"kafka": {"bootstrap": args.kafka}} if getattr(args, "kafka", None) else {}


def _cmd_replay(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.is_dir():
        print(f"finsent replay: {path} is a directory; give one CSV or JSONL file", file=sys.stderr)
        return EXIT_USAGE
    if not path.exists():
        print(f"finsent replay: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    if args.speed < 0:
        print("finsent replay: --speed must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    settings = settings_from_args(args, **_overrides(args))
    if not settings.kafka.enabled:
        # the in-process bus would end with this command, and the ids would still be remembered
        # as seen: the stories would reach nobody and the next replay would call them duplicates
        print(
            "finsent replay: no broker configured: set kafka.bootstrap (or --kafka HOST:PORT); "
            "replay feeds a running pipeline through Kafka",
            file=sys.stderr,
        )
        return EXIT_USAGE

    import signal

    from pydantic import ValidationError

    try:
        source = FileSource(name=args.source, path=path, speed=args.speed, format=args.format)
    except ValidationError as err:
        print(f"finsent replay: invalid --source {args.source!r}: {err.errors()[0]['msg']}", file=sys.stderr)
        return EXIT_USAGE
    try:
        bus = make_command_bus(settings)
        ctx = Context(settings=settings, bus=bus)
        ingest = build_core(ctx)
    except BusError as err:
        print(f"finsent replay: {err}", file=sys.stderr)
        return EXIT_FAILURE
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    replayer = Replayer(source, ingest.publisher)

    tune_gc()
    code = EXIT_OK
    try:
        stats = replayer.run(stop)
    except BusError as err:
        print(f"finsent replay: {err}", file=sys.stderr)
        stats, code = replayer.stats, EXIT_FAILURE
    finally:
        ingest.close()
        bus.close()
    print(json.dumps(stats.summary()), flush=True)
    return code


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the ``finsent`` parser."""
    p = sub.add_parser(
        "replay",
        help="replay a CSV/JSONL file of stories into news.raw in event-time order",
        description="Replay stories (title|text, published_at, [url, tickers, source, id, body]) into "
        "news.raw and print one JSON line: read, produced, duplicates, rejected, seconds.",
    )
    p.add_argument("file", help="a .jsonl or .csv file")
    p.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="event seconds per wall second (60 = an hour per minute); 0 = as fast as possible",
    )
    p.add_argument("--kafka", metavar="HOST:PORT", help="Kafka bootstrap (overrides kafka.bootstrap)")
    p.add_argument("--source", default="replay", help="source name for rows without one (default: replay)")
    p.add_argument("--format", choices=("auto", "jsonl", "csv"), default="auto")
    add_config_option(p)
    p.set_defaults(func=_cmd_replay)
