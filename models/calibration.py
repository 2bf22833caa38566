"""Temperature scaling: one scalar per head, fitted on validation negative log-likelihood."""

from __future__ import annotations

import torch


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return float(torch.nn.functional.cross_entropy(logits.float() / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The T > 0 minimising NLL of ``softmax(logits / T)``; 1.0 when there is nothing to fit."""
    if logits.numel() == 0:
        return 1.0
    logits = logits.detach().float().clone()
    labels = labels.detach().long().clone()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp().clamp(0.05, 20.0))
    # Never return something worse than no scaling (LBFGS can misbehave on degenerate input).
    return t if nll(logits, labels, t) <= nll(logits, labels, 1.0) else 1.0


def expected_calibration_error(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, bins: int = 15
) -> float:
    """Top-label ECE of ``softmax(logits / T)``: rows binned by confidence into ``bins`` equal-width
    bins; the support-weighted mean of |accuracy - mean confidence| per bin (0 = calibrated)."""
    if logits.numel() == 0:
        return 0.0
    probs = torch.softmax(logits.detach().float() / temperature, dim=-1)
    return ece_from_probs(probs, labels, bins)


def ece_from_probs(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    conf, pred = probs.max(dim=-1)
    correct = (pred == labels.long()).float()
    index = torch.clamp((conf * bins).long(), max=bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += float(mask.float().mean()) * abs(float(correct[mask].mean()) - float(conf[mask].mean()))
    return total
