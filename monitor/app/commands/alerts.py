"""``finsent alerts list|show|ack`` and ``finsent rules check|test``."""

from __future__ import annotations

import argparse
import sys

from alerts.alert_store import AlertStore
from alerts.rule_replay import ReplayError, describe, read_replay, replay
from alerts.ruleset import RulesError, load_rules
from alerts.views import AlertList, AlertView, OutboxView
from monitor.app.cliargs import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_option, settings_from_args
from monitor.app.components.alerts import engine_options, store_path


def _open_store(args: argparse.Namespace):

    settings = settings_from_args(args)
    path = store_path(settings)
    if not path.exists():
        print(f"finsent: no alert state yet ({path})", file=sys.stderr)
        return None
    return AlertStore(path)


def _fmt_time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _cmd_alerts_list(args: argparse.Namespace) -> int:

    store = _open_store(args)
    if store is None:
        return EXIT_OK
    try:
        alerts = store.list_alerts(args.state)
        undelivered = store.outbox_entries(("pending", "dead"), args.limit)
        counts = store.outbox_counts()
    finally:
        store.close()
    if args.json:
        print(
            AlertList(
                alerts=[AlertView.of(a) for a in alerts],
                outbox_counts=counts,
                undelivered=[OutboxView.of(e) for e in undelivered],
            ).model_dump_json(indent=2)
        )
        return EXIT_OK
    print(f"{'STATE':<9} {'FINGERPRINT':<17} {'RULE':<26} {'SUBJECT':<28} {'SINCE':<20} {'REV':>3}  SUMMARY")
    for a in alerts:
        since = a.starts_at if a.state != "pending" else a.active_since
        ack = " (acked)" if a.acked_at and a.state == "firing" else ""
        print(
            f"{a.state + ack:<9} {a.fingerprint:<17} {a.rule[:26]:<26} {a.subject[:28]:<28} "
            f"{_fmt_time(since):<20} {a.revision:>3}  {a.annotations.get('summary', '')}"
        )
    if not alerts:
        print("(no alerts)")
    print(f"\noutbox: {counts['pending']} undelivered, {counts['dead']} dead, {counts['delivered']} delivered")
    for e in undelivered:
        view = OutboxView.of(e)
        print(
            f"  #{view.id} {view.state:<7} -> {view.receiver:<12} {view.reason:<8} attempts={view.attempts} "
            f"next={_fmt_time(view.next_attempt_at)} {view.last_error or ''}"
        )
    return EXIT_OK


def _cmd_alerts_show(args: argparse.Namespace) -> int:

    store = _open_store(args)
    if store is None:
        return EXIT_FAILURE
    try:
        found = store.find_alert(args.fingerprint)
    finally:
        store.close()
    if found is None:
        print(f"finsent: no alert matches {args.fingerprint!r}", file=sys.stderr)
        return EXIT_FAILURE
    print(AlertView.of(found).model_dump_json(indent=2))
    return EXIT_OK


def _cmd_alerts_ack(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    store = _open_store(args)
    if store is None:
        return EXIT_FAILURE
    try:
        found = store.find_alert(args.fingerprint)
        if found is None:
            print(f"finsent: no alert matches {args.fingerprint!r}", file=sys.stderr)
            return EXIT_FAILURE
        store.ack(found.fingerprint, args.by, datetime.now(timezone.utc))
    finally:
        store.close()
    print(f"acked {found.fingerprint} ({found.rule}, {found.state}); no repeats until it resolves")
    return EXIT_OK


def _load_rules_or_report(path: str, args: argparse.Namespace):

    settings = settings_from_args(args)
    known = (settings.alerts.receivers, settings.alerts.default_receiver) if getattr(args, "config", None) else ()
    try:
        rules = load_rules(path, *known)
    except RulesError as err:
        print(f"finsent: {err}", file=sys.stderr)
        return None, None
    return rules, settings


def _cmd_rules_check(args: argparse.Namespace) -> int:
    rules, _ = _load_rules_or_report(args.file, args)
    if rules is None:
        return EXIT_USAGE
    for r in rules.rules:
        target = getattr(r, "key", None) or ",".join(getattr(r, "tickers", ()))
        print(f"  {r.type:<9} {r.name:<28} {target}")
    print(f"{args.file}: {len(rules.rules)} rules OK", file=sys.stderr)
    return EXIT_OK


def _cmd_rules_test(args: argparse.Namespace) -> int:

    rules, settings = _load_rules_or_report(args.file, args)
    if rules is None:
        return EXIT_USAGE

    options = engine_options(settings)  # window hops of the aggregator config, as the daemon sees them
    try:
        result = replay(rules, read_replay(args.replay), options)
    except (ReplayError, OSError) as err:
        print(f"finsent: {err}", file=sys.stderr)
        return EXIT_USAGE
    for n in result.notifications:
        if args.json:
            print(n.model_dump_json())
        else:
            print("\n".join(describe(n)))
    fired = sum(1 for n in result.notifications for a in n.alerts if n.reason == "firing" and a.status == "firing")
    print(f"{result.records} records, {len(result.notifications)} notifications, {fired} alerts fired", file=sys.stderr)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the ``finsent`` parser."""
    p = sub.add_parser("alerts", help="list, show and acknowledge alerts (reads $FINSENT_HOME/state/alerts.db)")
    asub = p.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)

    lp = asub.add_parser("list", help="firing/pending/resolved alerts and undelivered or dead notifications")
    add_config_option(lp)
    lp.add_argument("--state", choices=["pending", "firing", "resolved"])
    lp.add_argument("--limit", type=int, default=50, help="outbox entries shown")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=_cmd_alerts_list)

    sp = asub.add_parser("show", help="one alert, by fingerprint (or a unique prefix)")
    add_config_option(sp)
    sp.add_argument("fingerprint", metavar="FP")
    sp.set_defaults(func=_cmd_alerts_show)

    ap = asub.add_parser("ack", help="acknowledge a firing alert: no repeat notifications until it resolves")
    add_config_option(ap)
    ap.add_argument("fingerprint", metavar="FP")
    ap.add_argument("--by", default="cli", help="who acknowledged it")
    ap.set_defaults(func=_cmd_alerts_ack)

    p = sub.add_parser("rules", help="validate alert rules, or test them against a replay")
    rsub = p.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    cp = rsub.add_parser("check", help="validate a rules file (with -c: also its receivers)")
    add_config_option(cp)
    cp.add_argument("file", metavar="FILE")
    cp.set_defaults(func=_cmd_rules_check)

    tp = rsub.add_parser("test", help="show what the rules would have fired over a JSONL replay")
    add_config_option(tp)
    tp.add_argument("file", metavar="FILE")
    tp.add_argument("--replay", required=True, metavar="F", help="JSONL of TrendPoint / ScoredItem records")
    tp.add_argument("--json", action="store_true", help="one JSON notification per line")
    tp.set_defaults(func=_cmd_rules_test)
