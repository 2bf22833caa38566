"""finsent's daemon: the kernel (``monitor.core``), the stream stages (``monitor.stages``), labels and
retraining (``monitor.learning``), the page (``monitor.ui``) and the composition root (``monitor.app``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("finsent")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
