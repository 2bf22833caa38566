"""The promotion gate: may a challenger replace the champion?

Two kinds of evidence, both measured on data the challenger never trained on:

(a) every **fixed validation set** (``retrain.validation_sets``): neither accuracy nor macro-F1
    may drop by more than ``max_drop`` against the champion (no forgetting, no poisoning);
(b) the **held-out slice of the fresh labels**: accuracy must rise by at least ``min_gain``
    (the challenger actually learnt what the labellers taught), on at least ``min_holdout`` rows.

A registry without a champion promotes any challenger (nothing to compare against).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GatePolicy:
    min_gain: float
    max_drop: float
    min_holdout: int


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def decide(comparison: dict[str, Any], policy: GatePolicy) -> GateDecision:
    """``comparison`` as written by :mod:`models.challenger` (``fixed``, ``holdout``, ``champion``)."""
    if not comparison.get("champion"):
        return GateDecision(True, ["no champion yet: the first model is promoted"])
    failed: list[str] = []
    passed: list[str] = []
    checks: list[dict[str, Any]] = []
    for name, entry in comparison["fixed"].items():
        for metric in ("accuracy", "macro_f1"):
            old, new = entry["champion"][metric], entry["challenger"][metric]
            ok = old - new <= policy.max_drop + 1e-9
            checks.append({"check": f"fixed:{name}:{metric}", "champion": old, "challenger": new, "ok": ok})
            if not ok:
                failed.append(
                    f"fixed set {name!r}: {metric} {old:.4f} -> {new:.4f} "
                    f"(drop {old - new:.4f} > max_drop {policy.max_drop})"
                )
    hold = comparison["holdout"]
    n = hold["n"]
    if n < policy.min_holdout:
        failed.append(f"only {n} held-out fresh labels (< min_holdout {policy.min_holdout}): cannot judge the gain")
        checks.append({"check": "holdout:n", "value": n, "ok": False})
    else:
        old, new = hold["champion"]["accuracy"], hold["challenger"]["accuracy"]
        ok = new - old >= policy.min_gain - 1e-9
        checks.append({"check": "holdout:accuracy", "champion": old, "challenger": new, "ok": ok})
        line = f"held-out fresh labels (n={n}): accuracy {old:.4f} -> {new:.4f} (gain {new - old:+.4f}"
        if ok:
            passed.append(line + f" >= min_gain {policy.min_gain})")
        else:
            failed.append(line + f" < min_gain {policy.min_gain})")
    if failed:
        return GateDecision(False, failed, checks)
    return GateDecision(True, [*passed, f"no fixed set dropped more than max_drop {policy.max_drop}"], checks)
