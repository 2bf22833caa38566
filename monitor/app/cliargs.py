"""What every package's CLI shares: exit codes, the ``--config`` option, loading settings.

This module imports no CLI module, so ``monitor.app.commands.alerts``, ``monitor.app.commands.connectors``, ``monitor.app.commands.models`` and the
composition root ``monitor.app.cli`` all build on it without importing one another.
"""

from __future__ import annotations

import argparse
import os
import sys

from monitor.app.config import ConfigError, load_settings
from monitor.core.logs import configure_logging
from monitor.core.secrets import mask_message

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75
"""sysexits' EX_TEMPFAIL: a condition outside finsent (a full disk) that a later start may not meet."""


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=os.environ.get("FINSENT_CONFIG"),
        help="YAML config file (default: $FINSENT_CONFIG; env FINSENT_* overrides it)",
    )


def settings_problems(settings, stages: tuple[str, ...] | None = None) -> list[str]:
    """Cross-section checks that need the world outside the file: rules files on disk, secrets in
    environment variables, token files. ``check-config`` reports them all; a daemon running
    ``stages`` refuses to start on those of its own stages (and of its HTTP server)."""

    problems: list[str] = []
    sections = {"ingest": settings.connectors, "alerts": settings.alerts}
    chosen = [s for name, s in sections.items() if stages is None or name in stages]
    for section in (*chosen, settings.http):
        if section is settings.alerts:  # rules are checked against the aggregator's windows
            problems.extend(settings.alerts.problems([w.name for w in settings.aggregator.windows]))
            continue
        checker = getattr(section, "problems", None)
        if callable(checker):
            problems.extend(checker())
    if problems:
        secrets = settings.secret_values()
        problems = [mask_message(p, secrets) for p in problems]
    return problems


def settings_from_args(args: argparse.Namespace, **overrides):
    """Load settings for a subcommand; on error print every problem and exit 2."""

    try:
        settings = load_settings(getattr(args, "config", None), **overrides)
    except ConfigError as err:
        print(f"finsent: {err}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None

    configure_logging(settings.logging.level, settings.logging.format, secrets=settings.secret_values())
    return settings
