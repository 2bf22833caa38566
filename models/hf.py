"""transformers, quietly: nothing on the terminal that reads like an error when nothing is wrong.

:func:`install` (run when the ``models`` package is imported, before anything imports
transformers) sets up two things, both lazy and cheap:

* ``triton`` is not imported without a GPU. ``transformers.masking_utils`` imports
  ``torch._dynamo``, which imports ``triton`` whenever the package is installed (it comes with
  torch's CUDA wheels). On a machine without CUDA triton is never used, and its nanobind
  extension prints ``nanobind: leaked ...`` lines at every interpreter exit. An import hook makes
  ``import triton`` fail there (torch then treats it as absent, as on a CPU-only install).
* The ``LOAD REPORT`` transformers logs when finsent puts fresh heads on the pretrained encoder
  (every training) is dropped when it lists only what that is expected to give: the encoder's
  unused pooler (UNEXPECTED) and the new heads, the entity head included (MISSING). Any other key
  still shows.

:func:`quiet_loading` turns transformers' "Loading weights" progress bar off for one load.
"""

from __future__ import annotations

import importlib.abc
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

EXPECTED_ON_FRESH_HEADS = {"UNEXPECTED": ("pooler.",), "MISSING": ("heads.", "entity_head.")}
_ROW = re.compile(r"^(?P<key>[\w.]+)\s*\|\s*(?P<status>[A-Z_]+)\s*\|")


class _NoTritonWithoutCuda(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "triton":
            return None
        torch = sys.modules.get("torch")
        if torch is None or torch.cuda.is_available():
            return None
        sys.modules["triton"] = None  # later imports and find_spec: absent
        raise ModuleNotFoundError("triton is not used without a GPU (see models.hf)", name="triton")


def expected_load_report(message: str) -> bool:
    """True for a LOAD REPORT that lists only the pooler as unexpected and the heads as missing."""
    if "LOAD REPORT" not in message:
        return False
    rows = [m for line in message.splitlines() if (m := _ROW.match(line.strip())) and m["key"] != "Key"]
    return bool(rows) and all(m["key"].startswith(EXPECTED_ON_FRESH_HEADS.get(m["status"], ("\0",))) for m in rows)


class _ExpectedLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not expected_load_report(record.getMessage())


def install() -> None:
    """Idempotent: a second call finds the hook and the filter in place."""
    if not any(isinstance(f, _NoTritonWithoutCuda) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoTritonWithoutCuda())
    logger = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, _ExpectedLoadReport) for f in logger.filters):
        logger.addFilter(_ExpectedLoadReport())


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No "Loading weights" progress bar during one ``from_pretrained`` call."""
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bar:
            hf_logging.enable_progress_bar()
