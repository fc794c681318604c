"""The multi-label head's fit: one ridge classifier for every label, for many penalties and nested column sets from
one Gram matrix.

A ridge classifier (least squares on +-1 targets, scikit-learn's ``RidgeClassifier`` with ``solver="cholesky"``)
on standardised features is fitted by one Cholesky factorisation of a Gram matrix shared by every label: of the
features (the primal) or, when the features outnumber the rows, of the rows (the dual). The search asks for many
fits that share that work, and ``ridge_fits`` does it once for all of them:

* the Gram matrix does not depend on the penalty: every C of a set of columns (``stc.head.MULTILABEL_CS``) is one
  factorisation of it, not one Gram product each;
* the search's candidates come in nested column sets (the neurons kept at a smaller η are among those kept at a
  larger one; an earlier exit layer's columns are among a later one's): with the columns ordered so that each set
  is a prefix, a prefix's primal system is the leading block of the widest one's, and so is its Cholesky factor,
  so one factorisation per C serves every set no wider than the rows; for a wider set (the dual), the rows' Gram
  matrix of a prefix is that of a shorter prefix plus the added columns' products, so it is built once, step by
  step;
* each factorisation is LAPACK's single precision (1.7 s against 2.9 s for 8,000 rows), its solution refined in
  float64 against the float64 system until it is float64's (iterative refinement, as LAPACK's ``dsposv`` does; a
  float64 factorisation where it does not converge): the weights are those of a float64 solve (``_solve``). The
  dual's Gram matrix, the largest product of a wide readout (8,000 rows x 14,000 columns), is itself formed in
  float32, and its refinement's residuals from the float64 columns (two thin products a step instead of one with the
  Gram matrix): all of films' label-set fit 623 -> 551 s with the same model (search 366 -> 319 s, final fit 34 ->
  27 s; ``benchmarks/README.md``, "Multi-label (films)").

Measured (films, 1,992 texts, 21 genres, one C in stage 1; ``benchmarks/README.md``, "Multi-label (films)"): the
search 354 s with ``RidgeClassifierCV`` (an eigendecomposition per fit), 61 s with a Cholesky factorisation per C
and set of columns, 37 s with the nested sets. The coefficients are scikit-learn's (``tests/test_ridge.py`` holds
them to ``RidgeClassifier``'s); the search and the final fit both take them from here.

Why a ridge for label sets: one factorisation serves every label, so a candidate's cost barely grows with the
labels, where one logistic regression per label multiplied the fit's time by the labels. Measured (films, MiniLM,
1,992 texts, 21 genres, 5 iteratively stratified folds, micro/macro-F1 with thresholds cross-fitted over the folds,
one BLAS thread; 2026-12-05): on the 384-neuron embedding one-vs-rest logistic regression at its best C of 0.0003-1
scored 0.435/0.302 in 13.2 s for 6 Cs, a ridge (penalty by leave-one-out) 0.431/0.298 in 2.1 s; on 300 FFN neurons
0.399/0.287 (9.9 s) vs 0.395/0.280 (1.1 s); on 3,084 features about 0.448/0.334 (about 100 s) vs 0.454/0.326
(9.6 s). A penalty per label was worse (0.412/0.290 on the embedding); a joint L-BFGS over every label was no
faster than one-vs-rest. The decisions are not log-odds: ``MultiLabelHead.calibrated`` maps each label's to a
probability (Platt's sigmoid on held-out decisions) and chooses its threshold.

Why the penalty is searched (``stc.head.MULTILABEL_CS``) and not chosen by leave-one-out (``RidgeClassifierCV``,
the head until 2026-12-05): leave-one-out needs an eigendecomposition per fit (0.8 s for 1,600 rows, against 0.05 s
for one Cholesky factorisation), and the search fits hundreds of candidates. The grid: on films the best alpha of
10^1-10^6 was 10^3.5-10^4 at 500, 2,000 and 6,000 texts for 384 to 8,448 standardised features
(``benchmarks/bench_multilabel_penalty.py``); a grid from 10^2.5 up failed a planted 90-text test (small data
wants weak penalties), hence 10^1 to 10^5.5. Stage 1 tries every other C (``stc.head.MULTILABEL_STAGE_ONE_CS``): at
one C (alpha 10^3.5) it named narrow leaders and the search lost 0.8 micro-F1 and 1.2 macro-F1 points to the
leave-one-out head; with the decades it gained 0.2 and 0.5 (films, 2,000 texts, 3 seeds; ``benchmarks/README.md``,
"Multi-label (films)").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from sklearn.preprocessing import StandardScaler

from .head import linear_decision, ridge_alpha

__all__ = ["RidgeFit", "ridge_fits", "ridge_decisions"]

#: Iterative-refinement steps a float32 factorisation's solution gets to reach float64's accuracy (``_solve``)
#: before the system is factorised again in float64.
REFINEMENT_STEPS = 10
#: Columns cast to float32 at a time for the dual's Gram matrix (a bound on the copy, not a tuning knob).
GRAM_BLOCK = 2048
#: Columns per block of the dual's refinement products (``_columns_product``): a block of 8,000 float64 rows fits
#: in cache (8,000 x 14,000, 21 labels: 32 or 64 columns 0.23 s a product, 256 0.29 s, no blocks 0.33 s).
PRODUCT_BLOCK = 64


@dataclass(frozen=True)
class RidgeFit:
    """Every label's ridge classifier on the first ``len(mean)`` columns: the standardisation (``StandardScaler``'s
    ``mean_`` and ``scale_`` on the training rows), the weights on the standardised columns (n_labels, n_columns)
    and the intercepts (n_labels,)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray


def ridge_fits(X: np.ndarray, Y: np.ndarray, members: Sequence[tuple[int, float]]) -> list[RidgeFit]:
    """For each member (m, C), a ridge classifier for every label of ``Y`` on the first m columns of ``X``,
    standardised, at penalty ``stc.head.ridge_alpha(C)`` = 1 / (2 C): what ``make_final_classifier(C,
    multilabel=True)`` fitted on ``X[:, :m]`` would hold, computed once for all members (module docstring).

    Parameters
    ----------
    X : array of shape (n_rows, n_columns)
        The training rows (any float dtype; computed in float64).
    Y : array of shape (n_rows, n_labels)
        The 0/1 indicator of each row's labels; a label constant over the rows gets a constant decision (its
        intercept), as in scikit-learn.
    members : sequence of (int, float)
        Each fit's number of leading columns (1 to n_columns) and C (> 0).

    Returns
    -------
    list of RidgeFit
        One per member, in order.
    """
    scaler, Z, centre, T, offset = _prepared(X, Y)
    # a set no wider than the rows in the primal (its system is the features' Gram matrix), a wider one in the dual
    coefs = {**_primal(Z, T, [(m, C) for m, C in members if m <= len(Z)]),
             **_dual(Z, T, [(m, C) for m, C in members if m > len(Z)])}
    return [RidgeFit(scaler.mean_[:m], scaler.scale_[:m], np.ascontiguousarray(coefs[m, C]),
                     offset - coefs[m, C] @ centre[:m]) for m, C in members]


def ridge_decisions(X: np.ndarray, Y: np.ndarray, X_held: np.ndarray,
                    members: Sequence[tuple[int, float]]) -> list[np.ndarray]:
    """Each member's decisions (n_held, n_labels) on ``X_held``: those of the head ``ridge_fits`` gives it
    (``MultiLabelHead.decision`` of ``X_held[:, :m]``), without forming a wider-than-rows member's weights: its
    decisions come from the held-out rows' products with the training rows, grown beside their Gram matrix (what
    the search needs of a candidate, for a quarter of the arithmetic of its weights). Parameters as ``ridge_fits``,
    and ``X_held`` (n_held, n_columns), the rows to decide."""
    scaler, Z, centre, T, offset = _prepared(X, Y)
    Z_held = (np.asarray(X_held, dtype=np.float64) - scaler.mean_) / scaler.scale_ - centre
    decisions = {**_primal(Z, T, [(m, C) for m, C in members if m <= len(Z)], Z_held),
                 **_dual(Z, T, [(m, C) for m, C in members if m > len(Z)], Z_held)}
    return [decisions[m, C] + offset for m, C in members]


def _prepared(X: np.ndarray, Y: np.ndarray):
    """(the scaler, the standardised and centred rows, their centre, the centred +-1 targets, the targets' means)."""
    scaler = StandardScaler().fit(X)
    # column-major: a column block is contiguous (the dual's Gram blocks, ``_columns_product``'s blocks)
    Z = np.empty(np.shape(X), order="F")
    np.subtract(X, scaler.mean_, out=Z)
    Z /= scaler.scale_
    centre = Z.mean(axis=0)  # zero already, up to rounding: the ridge's own centring, as scikit-learn's fit_intercept
    Z -= centre
    T = np.where(np.asarray(Y) > 0, 1.0, -1.0)
    offset = T.mean(axis=0)
    T -= offset
    return scaler, Z, centre, T, offset


def _primal(Z: np.ndarray, T: np.ndarray, members: list[tuple[int, float]],
            Z_held: np.ndarray | None = None) -> dict[tuple[int, float], np.ndarray]:
    """(m, C) -> weights (n_labels, m), or with ``Z_held`` its decisions less the offset: one Gram matrix of the
    widest columns, one factorisation per C, and each narrower set solved with the leading block of its C's
    factor."""
    if not members:
        return {}
    widest = max(m for m, _ in members)
    gram = Z[:, :widest].T @ Z[:, :widest]
    single = gram.astype(np.float32)  # what the factorisations start from (``_factor``)
    right = Z[:, :widest].T @ T
    coefs = {}
    for C in sorted({C for _, C in members}):
        size = max(m for m, c in members if c == C)
        alpha = ridge_alpha(C)
        factor = _factor(single[:size, :size], alpha)
        for m in sorted({m for m, c in members if c == C}):  # a prefix's factor is the leading block
            block = (None if factor[0] is None else factor[0][:m, :m], True)
            system = gram[:m, :m]
            coef = _solve(system.__matmul__, lambda: system, alpha, block, right[:m]).T
            coefs[m, C] = coef if Z_held is None else linear_decision(Z_held[:, :m], coef, 0.0)
    return coefs


def _dual(Z: np.ndarray, T: np.ndarray, members: list[tuple[int, float]],
          Z_held: np.ndarray | None = None) -> dict[tuple[int, float], np.ndarray]:
    """(m, C) -> weights (n_labels, m), or with ``Z_held`` its decisions less the offset: the rows' Gram matrix grown
    column block by column block in float32, one factorisation per (m, C), each solution refined against the float64
    columns themselves (``_solve``; a float32 product does twice the arithmetic a second, and a float64 Gram matrix
    is formed only where the refinement fails). The held-out decisions come from the held-out rows' products with the
    training rows, grown beside the Gram matrix, where that is less arithmetic than each member's weights (many
    members of few rows), else from the weights."""
    if not members:
        return {}
    n_rows, n_labels, widest = len(Z), T.shape[1], max(m for m, _ in members)
    single, done, coefs = np.zeros((n_rows, n_rows), dtype=np.float32), 0, {}
    held = None
    if Z_held is not None and (len(Z_held) * n_rows * (widest + len(members) * n_labels)
                               < sum((n_rows + len(Z_held)) * m * n_labels for m, _ in members)):
        held = np.zeros((len(Z_held), n_rows))
    for m in sorted({m for m, _ in members}):
        for start in range(done, m, GRAM_BLOCK):  # what the factorisations start from (``_factor``)
            added = Z[:, start:min(start + GRAM_BLOCK, m)].astype(np.float32)
            single += added @ added.T
        if held is not None:
            held += Z_held[:, done:m] @ Z[:, done:m].T
        done = m
        columns = Z[:, :m]
        for C in sorted({c for k, c in members if k == m}):
            dual = _solve(lambda x: _columns_product(columns, x), lambda: columns @ columns.T, ridge_alpha(C),
                          _factor(single, ridge_alpha(C)), T)
            if held is not None:
                coefs[m, C] = held @ dual
            else:
                coef = (Z[:, :m].T @ dual).T
                coefs[m, C] = coef if Z_held is None else linear_decision(Z_held[:, :m], coef, 0.0)
    return coefs


def _columns_product(columns: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``columns @ (columns.T @ x)`` (the dual's Gram matrix times x, in float64) one block of ``PRODUCT_BLOCK``
    columns at a time: each block's two thin products run while it is in cache, so the columns (column-major) are
    read from memory once, not twice (8,000 rows x 14,000 columns, 21 labels: 0.23 s against 0.36 s)."""
    out = np.zeros(x.shape)
    for start in range(0, columns.shape[1], PRODUCT_BLOCK):
        block = columns[:, start:start + PRODUCT_BLOCK]
        out += block @ (block.T @ x)
    return out


def _factor(single: np.ndarray, alpha: float) -> tuple[np.ndarray | None, bool]:
    """The lower Cholesky factor of ``single + alpha I`` (a Gram matrix in float32; LAPACK's single precision
    factorises 8,000 rows in 1.7 s against 2.9 s in double, and the factorisations are most of a large search), or
    (None, True) where float32's rounding leaves the matrix not positive definite."""
    system = single.copy()
    system.flat[::len(system) + 1] += np.float32(alpha)
    try:
        return cho_factor(system, lower=True, overwrite_a=True, check_finite=False)
    except LinAlgError:
        return None, True


def _solve(product: Callable[[np.ndarray], np.ndarray], gram: Callable[[], np.ndarray], alpha: float,
           factor: tuple[np.ndarray | None, bool], right: np.ndarray) -> np.ndarray:
    """The float64 solution of (G + ``alpha`` I) x = ``right``, for the Gram matrix G whose product with x is
    ``product(x)`` (in float64) and which ``gram()`` forms, from the float32 factor (``_factor``, or its leading
    block) refined in float64: each step solves for the residual, computed in float64, with the float32 factor,
    until the error left is 1e-10 of x's norm (float64's accuracy for a condition number up to 1e6). A step shrinks
    the error by a steady factor, about float32's precision times the condition number, so the error left after a
    step is about the next one: the first step's size, then each step's size times its ratio to the one before
    (which spares the step that would only confirm it: a residual is two passes over the columns in the dual).
    Where that does not happen in ``REFINEMENT_STEPS`` (or the float32 factor failed), a float64 factorisation of
    ``gram()`` solves it."""
    def residual(x: np.ndarray) -> np.ndarray:
        return right - product(x) - alpha * x

    if factor[0] is not None:
        x = cho_solve(factor, right.astype(np.float32), check_finite=False).astype(np.float64)
        previous = None
        for _ in range(REFINEMENT_STEPS):
            step = cho_solve(factor, residual(x).astype(np.float32), check_finite=False)
            x += step
            size = float(np.linalg.norm(step))
            # the error left is about the next step: this one shrunk by the steps' rate, once there is one to see
            left = size if previous is None else size * size / previous
            if left <= 1e-10 * np.linalg.norm(x):
                return x
            previous = size
    system = np.array(gram(), dtype=np.float64)
    system.flat[::len(system) + 1] += alpha
    return cho_solve(cho_factor(system, overwrite_a=True, check_finite=False), right, check_finite=False)
