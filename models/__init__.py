"""finsent's topic + sentiment classifier: model, training, evaluation, registry, inference."""

from models.hf import install as _quiet_transformers

_quiet_transformers()  # before anything imports transformers: see models.hf
