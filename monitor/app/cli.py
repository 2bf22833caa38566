"""``finsent``: one console script, subcommands contributed by each package.

Each package exposes ``register(subparsers)`` in its ``cli`` module and sets ``func`` on its
parsers; a handler takes the parsed ``argparse.Namespace`` and returns an exit code. Handlers
import heavy modules (torch, transformers) lazily so ``finsent --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from monitor import __version__
from monitor.app.cliargs import EXIT_OK, EXIT_USAGE, settings_problems
from monitor.app.commands import alerts, connectors, daemon, dlq, labels, models
from monitor.app.config import ConfigError, load_settings


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"finsent {__version__}")
    return EXIT_OK


def _cmd_check_config(args: argparse.Namespace) -> int:

    try:
        settings = load_settings(args.file)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    problems = settings_problems(settings)
    print(json.dumps(settings.masked(), indent=2, sort_keys=False))
    if problems:
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return EXIT_USAGE
    print(f"config OK ({args.file})", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finsent",
        description="Watch financial news as it streams in, score it, and alert when the mood turns.",
    )
    parser.add_argument("--version", action="version", version=f"finsent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=_cmd_version)

    p = sub.add_parser("check-config", help="validate a config file and print it resolved (secrets masked)")
    p.add_argument("file", help="YAML config file")
    p.set_defaults(func=_cmd_check_config)

    for module in (daemon, labels, connectors, models, alerts, dlq):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
