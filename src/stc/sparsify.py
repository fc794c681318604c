"""η selection: per layer, keep the neurons whose sorted importances add up to a fraction η of the layer's total."""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_ETAS", "select_neurons", "check_eta"]

#: The paper's grid of η values.
DEFAULT_ETAS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


def check_eta(eta: float) -> float:
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating)) or not 0.0 < float(eta) <= 1.0:
        raise ValueError(f"eta must be a number in (0, 1], got {eta!r}")
    return float(eta)


def select_neurons(importance: np.ndarray, eta: float) -> np.ndarray:
    """Indices (ascending) of the shortest set of top neurons holding at least η of the total importance.

    Importance is a neuron's squared probe weight, summed over classes. A probe whose weights are all zero keeps
    nothing. Ties in importance are broken by the lower index, so the selection is deterministic.
    """
    eta = check_eta(eta)
    importance = np.asarray(importance, dtype=np.float64)
    if importance.ndim != 1 or (importance < 0).any() or not np.isfinite(importance).all():
        raise ValueError("importance must be a 1-D array of finite non-negative numbers")
    total = importance.sum()
    if total <= 0:
        return np.empty(0, dtype=np.int64)
    order = np.argsort(-importance, kind="stable")
    cumulative = np.cumsum(importance[order])
    # Rounding can leave the last partial sum a hair under eta * total when eta = 1: never step past the end.
    count = min(int(np.searchsorted(cumulative, eta * total * (1 - 1e-12), side="left")) + 1, len(order))
    return np.sort(order[:count]).astype(np.int64)
