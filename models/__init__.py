"""finsent's topic + sentiment classifier: model, training, evaluation, registry, inference.

The public names below are what the rest of finsent may use (``from models import Registry``);
every other module is internal to the package. They load on first use, so importing ``models``
(or its light modules, e.g. the settings) does not import torch: only :data:`InferenceEngine`
and the training and evaluation code do.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from models.hf import install as _quiet_transformers

_quiet_transformers()  # before anything imports transformers: see models.hf

_PUBLIC: dict[str, str] = {  # public name -> its module (the name there is the same unless _RENAMED)
    "AdaptiveBatcher": "models.batching",
    "ClassifierSettings": "models.settings",
    "GatePolicy": "models.gate",
    "InferenceEngine": "models.engine",
    "Registry": "models.registry",
    "RunReports": "models.runs",
    "TrainingSettings": "models.settings",
    "decide": "models.gate",
    "labels_for": "models.data",
    "load_fixed_sets": "models.challenger",
    "normalise_for_dedup": "models.data",
    "parse_label": "models.data",
    "ticker_relevance": "models.relevance",
}
_RENAMED = {"ticker_relevance": "relevance"}  # ``models.relevance`` is also the submodule's attribute
__all__ = [
    "AdaptiveBatcher",
    "ClassifierSettings",
    "GatePolicy",
    "InferenceEngine",
    "Registry",
    "RunReports",
    "TrainingSettings",
    "decide",
    "labels_for",
    "load_fixed_sets",
    "normalise_for_dedup",
    "parse_label",
    "ticker_relevance",
]
assert sorted(__all__) == sorted(_PUBLIC)

if TYPE_CHECKING:
    from models.batching import AdaptiveBatcher
    from models.challenger import load_fixed_sets
    from models.data import labels_for, normalise_for_dedup, parse_label
    from models.engine import InferenceEngine
    from models.gate import GatePolicy, decide
    from models.registry import Registry
    from models.relevance import relevance as ticker_relevance
    from models.runs import RunReports
    from models.settings import ClassifierSettings, TrainingSettings


def __getattr__(name: str) -> Any:
    """PEP 562: load a public name's module on first use."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
