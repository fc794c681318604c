"""The multi-label head's fit: one ridge classifier for every label, at several penalties from one Gram matrix.

A ridge classifier (least squares on +-1 targets, scikit-learn's ``RidgeClassifier`` with ``solver="cholesky"``)
on standardised features is fitted, per penalty, by one Cholesky factorisation of the Gram matrix of the rows
(when the features outnumber them: the dual) or of the features (the primal), shared by every label. The Gram
matrix does not depend on the penalty, so ``ridge_path`` forms it once and factorises it once per C: the search
scores every C of a candidate's columns (``stc.head.MULTILABEL_CS``) for little more than one fit, where
``RidgeClassifier`` forms the Gram matrix again at each (for 1,600 rows and 3,000 columns: 0.3 s per Gram
product against 0.05 s per factorisation, one thread). Its coefficients are scikit-learn's (``tests/test_ridge.py``
holds them to ``RidgeClassifier``'s); the search and the final fit both take them from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from sklearn.preprocessing import StandardScaler

__all__ = ["RidgePath", "ridge_path"]


class RidgePath:
    """Ridge classifiers for every label at each C, on the same standardisation.

    Attributes
    ----------
    mean, scale : arrays of shape (n_features,)
        The standardisation (``StandardScaler``'s ``mean_`` and ``scale_`` on the training rows).
    coefs : list of arrays of shape (n_labels, n_features)
        Per C, every label's weights on the standardised features.
    intercepts : list of arrays of shape (n_labels,)
        Per C, every label's intercept.
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coefs: list[np.ndarray], intercepts: list[np.ndarray]):
        self.mean, self.scale, self.coefs, self.intercepts = mean, scale, coefs, intercepts


def ridge_path(X: np.ndarray, Y: np.ndarray, Cs: Sequence[float]) -> RidgePath:
    """Fit a ridge classifier for every label of ``Y`` at each C of ``Cs`` (penalty ``stc.head.ridge_alpha(C)`` =
    1 / (2 C)) on the standardised rows of ``X``, as ``make_final_classifier(C, multilabel=True)`` would.

    Parameters
    ----------
    X : array of shape (n_rows, n_features)
        The training rows (any float dtype; computed in float64).
    Y : array of shape (n_rows, n_labels)
        The 0/1 indicator of each row's labels; a label constant over the rows gets a constant decision (its
        intercept), as in scikit-learn.
    Cs : sequence of float
        The inverse penalties, each > 0.

    Returns
    -------
    RidgePath
        The standardisation and, per C, the labels' weights and intercepts.
    """
    scaler = StandardScaler().fit(X)
    Z = (np.asarray(X, dtype=np.float64) - scaler.mean_) / scaler.scale_
    centre = Z.mean(axis=0)  # zero already, up to rounding: the ridge's own centring, as scikit-learn's fit_intercept
    Z -= centre
    T = np.where(np.asarray(Y) > 0, 1.0, -1.0)
    offset = T.mean(axis=0)
    T -= offset
    n_rows, n_features = Z.shape
    dual = n_features > n_rows
    gram = Z @ Z.T if dual else Z.T @ Z
    right = T if dual else Z.T @ T
    coefs, intercepts = [], []
    for C in Cs:
        system = gram.copy()
        system.flat[::len(system) + 1] += 0.5 / C
        solution = cho_solve(cho_factor(system, overwrite_a=True, check_finite=False), right, check_finite=False)
        coef = (Z.T @ solution if dual else solution).T
        coefs.append(np.ascontiguousarray(coef))
        intercepts.append(offset - coef @ centre)
    return RidgePath(scaler.mean_, scaler.scale_, coefs, intercepts)
