"""finsent's daemon: config, records, bus, stages, CLI, HTTP, metrics and scheduling."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("finsent")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
