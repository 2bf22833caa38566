"""``finsent`` subcommands contributed by the connectors package."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the ``finsent`` parser."""
