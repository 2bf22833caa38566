"""``finsent`` subcommands, one module per family; each has ``register(subparsers)``."""

__all__ = ["alerts", "connectors", "daemon", "dlq", "labels", "models"]
