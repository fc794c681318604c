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


def check_class_weight(class_weight: str | None, metric: str, *, multilabel: bool = False) -> str | None:
    """The class weights a fit uses (``"auto"`` resolved: the loss weighs what the metric weighs), or a refusal.

    ``"auto"`` is ``"balanced"`` for macro-F1 over single labels, which counts every class the same however rare it
    is (and is what ``stc fit`` chooses for an imbalanced file), and None otherwise: accuracy counts every text the
    same, and a label set's rarity is answered by each label's own decision threshold. Why: on MR drawn 1:6
    (8/32/128 minority texts, 3 seeds; ``benchmarks/README.md``, "Imbalanced classes"), unweighted fits chose by
    macro-F1 predicted the majority class for every text at 8 minority texts."""
    if class_weight not in ("auto", None, "balanced"):
        raise ValueError(f"class_weight must be one of ('auto', None, 'balanced'), got {class_weight!r}")
    if multilabel:
        if class_weight == "balanced":
            raise ValueError("class_weight='balanced' does not apply to label sets: each label's own decision "
                             "threshold already answers its rarity; leave class_weight='auto' or None")
        return None
    if class_weight == "auto":
        return "balanced" if metric == "macro_f1" else None
    return class_weight


def score(y_true: np.ndarray, y_pred: np.ndarray, metric: str) -> float:
    """The metric, as a fraction: accuracy (subset accuracy for indicator matrices), or macro-, micro- or
    samples-F1."""
    if _indicators(y_true, y_pred):
        return _indicator_score(y_true, y_pred, metric)
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


def _indicators(y_true, y_pred) -> bool:
    """Whether both are non-empty 2-D integer (0/1) arrays of one shape (the multi-label search's blocks)."""
    return (isinstance(y_true, np.ndarray) and isinstance(y_pred, np.ndarray) and y_true.ndim == y_pred.ndim == 2
            and y_true.shape == y_pred.shape and y_true.size > 0 and y_true.dtype.kind in "iub"
            and y_pred.dtype.kind in "iub")


def _indicator_score(Y_true: np.ndarray, Y_pred: np.ndarray, metric: str) -> float:
    """``score`` of indicator matrices, as scikit-learn computes it (``tests/test_metrics.py`` holds them equal),
    without its input checks: 5 ms a call, and a multi-label search scores thousands of blocks (films, 1,992
    texts: 38 s of a 90 s search and estimate, 2026-12-05). F1 is 2 tp / (2 tp + fp + fn); where that is 0 / 0 (no
    true and no predicted label) it is 0 for a label (macro) or the whole matrix (micro), 1 for a text (samples)."""
    T, P = Y_true != 0, Y_pred != 0
    if metric == "accuracy":  # subset accuracy
        return float(np.average((T == P).all(axis=1)))
    axis = {"micro_f1": None, "macro_f1": 0, "samples_f1": 1}[metric]
    tp = np.count_nonzero(T & P, axis=axis)
    wrong = np.count_nonzero(T != P, axis=axis)  # fp + fn
    denominator = 2 * tp + wrong
    empty = 1.0 if metric == "samples_f1" else 0.0
    f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), empty)
    return float(np.mean(f1))
