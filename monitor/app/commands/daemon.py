"""``finsent run [--stages ROLE,...]``: the daemon, every role or some.

Roles: ingest, classify, aggregate, alerts, retrain. One role per process is
``finsent run --stages ROLE`` (what deploy/compose.yaml and deploy/systemd/finsent@.service run);
``finsent ingest|classify|aggregate`` are shorthands for the same. ``finsent alerts`` and
``finsent retrain`` are the operator's commands (list/ack alerts; retrain once, now), not roles.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys

from models.registry import RegistryError
from monitor.app.cliargs import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    add_config_option,
    settings_from_args,
    settings_problems,
)
from monitor.app.wiring import BUILDERS, PIPELINE, build_daemon
from monitor.core.bus import ClusterTooSmall
from monitor.core.persist import disk_fault_in
from monitor.learning.labels import LabelStore
from monitor.learning.retrain import run_retrain


def port_problem(host: str, port: int) -> tuple[str, int] | None:
    """Why the HTTP server could not listen on ``host:port`` (and the exit code to give), else None.

    Tried with the options uvicorn (asyncio) binds with, on every address ``host`` names."""
    if port == 0:
        return None
    hint = "set http.port (or FINSENT_HTTP__PORT) to a free port, or stop what listens there"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        return f"cannot listen on {host}:{port}: {getattr(err, 'strerror', None) or err}; check http.host", EXIT_USAGE
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio's create_server: IPv6 only, beside an IPv4 listener
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    return f"port {port} on {host} is already in use; {hint}", EXIT_TEMPFAIL
                reason = err.strerror or err
                return f"cannot listen on {host}:{port}: {reason}; check http.host and http.port", EXIT_USAGE
    return None


def _runner(stages: tuple[str, ...]):
    def handler(args: argparse.Namespace) -> int:
        overrides = {}
        if getattr(args, "kafka", None):
            overrides["kafka"] = {"bootstrap": args.kafka}
        settings = settings_from_args(args, **overrides)
        chosen = tuple(args.stages.split(",")) if getattr(args, "stages", None) else stages
        problems = settings_problems(settings, chosen)
        if problems:
            print("finsent: refusing to start:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
            return EXIT_USAGE
        if settings.http.enabled and (bind := port_problem(settings.http.host, settings.http.port)):
            print(f"finsent: refusing to start: {bind[0]}", file=sys.stderr)
            return bind[1]

        try:
            daemon, _ = build_daemon(settings, chosen)
        except ClusterTooSmall as err:
            print(f"finsent: refusing to start: {err}", file=sys.stderr)
            return EXIT_USAGE
        except RegistryError as err:  # classify.first_model is null and there is no model to serve
            print(
                f"finsent: refusing to start: {err}; or set classify.first_model to train one at start",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        except Exception as err:
            fault = disk_fault_in(err)
            if fault is None:
                raise
            # Opening the state needs a write (schema, WAL files): no crash, no traceback, and an exit
            # code a supervisor retries on (systemd's Restart=on-failure; compose's restart policy).
            print(
                f"finsent: cannot open the state under {settings.state_dir}: {fault}. The disk is full or "
                "failing; free space there and start again.",
                file=sys.stderr,
            )
            return EXIT_TEMPFAIL
        try:
            return daemon.run_forever()
        except RuntimeError:
            # Taken between the check above and uvicorn's bind: no traceback either.
            if daemon.http is None or (bind := port_problem(settings.http.host, settings.http.port)) is None:
                raise
            daemon.shutdown()  # (no stage had started: HTTP comes first)
            print(f"finsent: stopped: {bind[0]}", file=sys.stderr)
            return bind[1]

    return handler


def _retrain(args: argparse.Namespace) -> int:
    import json

    if not args.now:
        print(
            "finsent: retrain: pass --now to run the job once now (the daemon runs it on retrain.cron)", file=sys.stderr
        )
        return EXIT_USAGE
    settings = settings_from_args(args)
    settings.ensure_dirs()

    store = LabelStore(settings.state_dir / "labels.db")
    try:
        report = run_retrain(settings, store, force=args.force)
    finally:
        store.close()
    print(f"{report['result']}: {report['reason']}", file=sys.stderr)
    print(json.dumps(report))
    return EXIT_FAILURE if report["result"] in ("failed", "timeout") else EXIT_OK


def _stage_list(value: str) -> str:

    unknown = [s for s in value.split(",") if s not in BUILDERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    return value


def register(sub: argparse._SubParsersAction) -> None:

    specs = {
        "run": (
            PIPELINE,
            (
                "run every role in one process, or one role per process with --stages ROLE "
                "(in-process bus unless kafka.bootstrap is set)"
            ),
        ),
        "ingest": (("ingest",), "= run --stages ingest: the configured connectors, producing to news.raw"),
        "classify": (("classify",), "= run --stages classify: news.raw -> news.scored (a consumer-group member)"),
        "aggregate": (("aggregate",), "= run --stages aggregate: news.scored -> rolling trends on news.trends"),
    }
    for name, (stages, help_text) in specs.items():
        p = sub.add_parser(name, help=help_text)
        add_config_option(p)
        p.add_argument("--kafka", metavar="HOST:PORT", help="Kafka bootstrap (overrides kafka.bootstrap)")
        if name == "run":
            p.add_argument(
                "--stages",
                metavar="ROLE[,ROLE]",
                type=_stage_list,
                help=f"run only these roles (default: {','.join(stages)}); the names of the "
                "compose services and the systemd instances finsent@ROLE",
            )
        p.set_defaults(func=_runner(stages))

    p = sub.add_parser("retrain", help="run the retrain job (train a challenger, gate, promote) once")
    add_config_option(p)
    p.add_argument("--now", action="store_true", help="run it now, in the foreground (prints the run report)")
    p.add_argument("--force", action="store_true", help="train even with fewer than retrain.min_new_labels")
    p.set_defaults(func=_retrain)
