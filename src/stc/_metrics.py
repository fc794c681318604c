"""The validation metrics stc selects by: single-label (class codes) and multi-label (indicator matrices)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

#: Every value the ``metric`` parameter takes: "auto" is accuracy for single-label targets and micro-F1 for
#: multi-label ones.
METRICS = ("auto", "accuracy", "macro_f1", "micro_f1", "samples_f1")
SINGLE_LABEL_METRICS = ("accuracy", "macro_f1")
#: With label sets "accuracy" is subset accuracy (every label of a text right), as scikit-learn's ``accuracy_score``.
MULTILABEL_METRICS = ("micro_f1", "macro_f1", "samples_f1", "accuracy")


def check_metric(metric: str, *, multilabel: bool = False) -> str:
    """The metric a fit uses (``"auto"`` resolved), refused unless it suits the target."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if metric == "auto":
        return "micro_f1" if multilabel else "accuracy"
    allowed = MULTILABEL_METRICS if multilabel else SINGLE_LABEL_METRICS
    if metric not in allowed:
        kind = "multi-label" if multilabel else "single-label"
        raise ValueError(f"metric={metric!r} does not apply to {kind} targets; use one of {allowed}")
    return metric


def score(y_true: np.ndarray, y_pred: np.ndarray, metric: str) -> float:
    """The metric, as a fraction: accuracy (subset accuracy for indicator matrices), or macro-, micro- or
    samples-F1."""
    if metric.endswith("_f1"):
        # a text with no label, predicted to have none, is right (samples-F1 1), as scikit-learn allows saying
        return float(f1_score(y_true, y_pred, average=metric[:-3], zero_division=1.0 if metric == "samples_f1" else 0))
    if _class_codes(y_true, y_pred):
        # scikit-learn's own arithmetic (np.average of the matches) without its input checks, which cost ~2 ms a
        # call: a search scores every candidate on every block, thousands of calls.
        return float(np.average(y_true == y_pred))
    return float(accuracy_score(y_true, y_pred))


def _class_codes(y_true, y_pred) -> bool:
    """Whether both are non-empty 1-D integer arrays of one length (what the search scores)."""
    return (isinstance(y_true, np.ndarray) and isinstance(y_pred, np.ndarray) and y_true.ndim == y_pred.ndim == 1
            and len(y_true) == len(y_pred) > 0 and y_true.dtype.kind in "iu" and y_pred.dtype.kind in "iu")
