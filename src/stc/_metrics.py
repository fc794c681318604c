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
    if _class_codes(y_true, y_pred):
        # scikit-learn's own arithmetic (np.average of the matches) without its input checks, which cost ~2 ms a
        # call: a search scores every candidate on every block, thousands of calls.
        return float(np.average(y_true == y_pred))
    return float(accuracy_score(y_true, y_pred))


def _class_codes(y_true, y_pred) -> bool:
    """Whether both are non-empty 1-D integer arrays of one length (what the search scores)."""
    return (isinstance(y_true, np.ndarray) and isinstance(y_pred, np.ndarray) and y_true.ndim == y_pred.ndim == 1
            and len(y_true) == len(y_pred) > 0 and y_true.dtype.kind in "iu" and y_pred.dtype.kind in "iu")
