"""Probabilities one can trust: a temperature fitted on held-out decision values, and how to measure calibration.

A logistic regression on hundreds of standardised neurons is often overconfident (probability 1.000 for an
ordinary sentence): its decision values are too large. Temperature scaling (Guo et al., 2017) divides them by one
number T fitted to minimise the log loss of held-out predictions; labels (the argmax) do not change.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax

__all__ = ["fit_temperature", "probabilities", "expected_calibration_error", "log_loss"]

_LOG_T_BOUNDS = (math.log(0.02), math.log(50.0))


def probabilities(decisions: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities (n, n_classes) from decision values: binary (n,) or (n, 1) -> sigmoid; else softmax."""
    decisions = np.asarray(decisions, dtype=np.float64)
    if decisions.ndim == 1 or decisions.shape[1] == 1:
        positive = expit(decisions.reshape(-1) / temperature)
        return np.column_stack([1.0 - positive, positive])
    return np.exp(log_softmax(decisions / temperature, axis=1))


def log_loss(proba: np.ndarray, codes: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class codes (probabilities clipped at 1e-15)."""
    picked = np.asarray(proba)[np.arange(len(codes)), codes]
    return float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0))))


def fit_temperature(decisions: np.ndarray, codes: np.ndarray) -> float:
    """The T > 0 that minimises the log loss of held-out ``decisions`` against their class ``codes``."""
    decisions = np.asarray(decisions, dtype=np.float64)
    codes = np.asarray(codes)
    if len(decisions) != len(codes) or len(codes) == 0:
        raise ValueError(f"need one decision row per label, got {len(decisions)} and {len(codes)}")

    def loss(log_t: float) -> float:
        return log_loss(probabilities(decisions, math.exp(log_t)), codes)

    result = minimize_scalar(loss, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(math.exp(result.x))


def expected_calibration_error(proba: np.ndarray, codes: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over ``n_bins`` equal-width confidence bins."""
    proba = np.asarray(proba)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == np.asarray(codes)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        members = bins == b
        if members.any():
            total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / len(codes))


def reliability_table(proba: np.ndarray, codes: np.ndarray, n_bins: int = 15) -> list[dict]:
    """Per confidence bin: its range, count, mean confidence and accuracy (for a reliability diagram)."""
    proba = np.asarray(proba)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(codes)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "count": int((bins == b).sum()),
             "confidence": float(confidence[bins == b].mean()) if (bins == b).any() else None,
             "accuracy": float(correct[bins == b].mean()) if (bins == b).any() else None}
            for b in range(n_bins)]
