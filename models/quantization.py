"""CPU int8: torch dynamic quantisation of the ``nn.Linear`` layers (weights int8, activations
quantised on the fly). Whether a version may be served this way is decided at training time
(accuracy within 0.5 pt on validation, recorded in the manifest's ``quantization`` section)."""

from __future__ import annotations

import warnings
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def quantize_dynamic_int8(model: M) -> M:
    """A quantised copy of ``model``, of the same class (CPU only; call on a CPU model in eval mode)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=False)
