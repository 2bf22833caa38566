from __future__ import annotations

import torch

from models.calibration import fit_temperature, nll


def test_fit_temperature_recovers_overconfidence() -> None:
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 3, generator=g) * 2
    labels = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=g).squeeze(1)
    overconfident = true_logits * 3.0  # a model 3x too sure of itself
    t = fit_temperature(overconfident, labels)
    assert 2.4 < t < 3.6
    assert nll(overconfident, labels, t) < nll(overconfident, labels)


def test_fit_temperature_degenerate_input() -> None:
    assert fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)) == 1.0
