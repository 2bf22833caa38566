"""``finsent dlq list|show|replay``: inspect the dead-letter topic and re-publish letters."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

from monitor.app.cliargs import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_option, settings_from_args
from monitor.core.bus.base import BusError
from monitor.core.bus.factory import make_command_bus
from monitor.core.dlq import LetterFilter, read_letters, replay_letters


def _time(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None


def _read(args: argparse.Namespace):

    overrides = {"kafka": {"bootstrap": args.kafka}} if args.kafka else {}
    settings = settings_from_args(args, **overrides)
    if not settings.kafka.enabled:
        print("finsent dlq: needs kafka.bootstrap (the in-process bus keeps no dead letters)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    try:
        bus = make_command_bus(settings)
    except BusError as err:
        print(f"finsent dlq: {err}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    try:
        letters, odd = read_letters(bus, settings.topics.dlq)
    except BusError as err:
        print(f"finsent dlq: {err}", file=sys.stderr)
        bus.close()
        raise SystemExit(EXIT_FAILURE) from None
    refs = frozenset(getattr(args, "refs", None) or ())
    chosen = LetterFilter(args.stage, args.reason, args.since, args.until, refs)
    for note in odd:
        print(f"finsent dlq: skipped {note}", file=sys.stderr)
    return bus, [x for x in letters if chosen(x)]


def _summary(item) -> dict:
    d = item.letter
    return {
        "ref": item.ref,
        "failed_at": d.failed_at.isoformat(),
        "stage": d.stage,
        "reason": d.reason,
        "source": f"{d.source_topic}/{d.source_partition}@{d.source_offset}" if d.source_topic else None,
        "bytes": len(d.payload),
    }


def _cmd_list(args: argparse.Namespace) -> int:
    bus, letters = _read(args)
    bus.close()
    for item in letters[-args.limit :] if args.limit else letters:
        if args.json:
            print(json.dumps(_summary(item)))
        else:
            s = _summary(item)
            print(
                f"{s['ref']:<10} {s['failed_at'][:19]}  {s['stage']:<12} {s['source'] or '-':<28} {s['reason'][:120]}"
            )
    print(f"{len(letters)} dead letters", file=sys.stderr)
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    bus, letters = _read(args)
    bus.close()
    if not letters:
        print(f"finsent dlq: no dead letter {', '.join(args.refs)}", file=sys.stderr)
        return EXIT_FAILURE
    for item in letters:
        print(
            json.dumps(
                {**_summary(item), "key": item.letter.key, "payload": item.letter.payload.decode("utf-8", "replace")},
                indent=2,
                ensure_ascii=False,
            )
        )
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:

    if not (args.refs or args.stage or args.reason or args.since or args.until or args.all):
        print(
            "finsent dlq replay: choose letters (REF..., --stage, --reason, --since/--until) or --all", file=sys.stderr
        )
        return EXIT_USAGE
    bus, letters = _read(args)
    try:
        if args.dry_run:
            for item in letters:
                print(f"would replay {item.ref} -> {item.letter.source_topic or args.to or '(no topic)'}")
            return EXIT_OK
        outcome = replay_letters(bus, letters, args.to)
    finally:
        bus.close()
    for line in outcome.replayed:
        print(f"replayed {line}")
    for line in outcome.skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(json.dumps({"replayed": len(outcome.replayed), "skipped": len(outcome.skipped)}))
    return EXIT_OK if not outcome.skipped else EXIT_FAILURE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dlq", help="list, show and replay dead letters (news.dlq)")
    dsub = p.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        add_config_option(q)
        q.add_argument("--kafka", metavar="HOST:PORT", help="Kafka bootstrap (overrides kafka.bootstrap)")
        q.add_argument("--stage", help="only letters from this stage (ingest, classify, aggregate, alerts, ...)")
        q.add_argument("--reason", metavar="TEXT", help="only letters whose reason contains TEXT (any case)")
        q.add_argument("--since", type=_time, help="only letters that failed at or after this ISO time")
        q.add_argument("--until", type=_time, help="only letters that failed before this ISO time")

    q = dsub.add_parser("list", help="one line per dead letter, oldest first")
    common(q)
    q.add_argument("--limit", type=int, default=0, help="only the newest N")
    q.add_argument("--json", action="store_true", help="JSON lines")
    q.set_defaults(func=_cmd_list)

    q = dsub.add_parser("show", help="dead letters in full, with the original payload")
    common(q)
    q.add_argument("refs", nargs="+", metavar="PARTITION:OFFSET")
    q.set_defaults(func=_cmd_show)

    q = dsub.add_parser("replay", help="re-publish the original bytes to the original topic")
    common(q)
    q.add_argument("refs", nargs="*", metavar="PARTITION:OFFSET")
    q.add_argument("--all", action="store_true", help="every letter matching the filters (or all)")
    q.add_argument("--to", metavar="TOPIC", help="topic for letters that came from outside the bus (ingest)")
    q.add_argument("--dry-run", action="store_true", help="say what would be replayed")
    q.set_defaults(func=_cmd_replay)
