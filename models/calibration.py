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
