"""The validation metrics stc selects by."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

METRICS = ("accuracy", "macro_f1")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def score(y_true: np.ndarray, y_pred: np.ndarray, metric: str) -> float:
    """Accuracy or macro-F1, as a fraction."""
    if metric == "macro_f1":
        return float(f1_score(y_true, y_pred, average="macro", zero_division=0))
    return float(accuracy_score(y_true, y_pred))
