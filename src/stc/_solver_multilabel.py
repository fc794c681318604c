"""L1-regularised logistic regression for many labels on one array: every label's binary path over a grid of C.

For every label (column of a 0/1 indicator matrix ``Y``) and every ``C`` this minimises the same objective as
``stc._solver.l1_logistic_path`` does for that label alone, scikit-learn's ``LogisticRegression(C=C,
l1_ratio=1.0)``::

    ||w||_1 + C * sum_i loss_i          (intercept unpenalised)

sought internally as ``mean_i loss_i + lam * ||w||_1`` with ``lam = 1 / (C * n)``.  It is a proximal-Newton path
solver like ``_solver``'s, warm-started along the C values from the smallest up, with the same stopping rule
(iterations at a C end once the gain still expected, estimated from the observed rate of decrease, is below ``tol``
times the objective) and the same Armijo line search on the exact objective.

How, and why (films, 21 genres, MiniLM arrays of its first 1,600 training texts; the final comparison is
``benchmarks/bench_multilabel_probes.py``; single-threaded BLAS, as the probes run side by side; 2026-12-05):

* The idea tried first, and dropped: share the curvature between labels.  The logistic loss's Hessian is bounded
  by ``X'X / 4`` (Boehning), so one Gram matrix per array could serve every label's Newton model
  (majorise-minimise, no line search).  On ``hidden.L6.mean`` that took Drama (52 % of the texts) 3/5/7/11
  iterations at the four C values against Newton's 2/3/3/3, Animation (2.8 %) 12/66/171/537 against 2/4/4/4 (the
  bound overstates its curvature ``p (1 - p)`` some 25-fold; 9.8 s against 0.6 s for the per-label solver), Music
  (0.2 %) 405 and over 1,000.  The Gram matrix scaled per label (by the mean ``p (1 - p)``, or exact on its
  diagonal) with a line search stalled or stopped early (objectives 2e-4 to 1.6 relative above the optimum on
  ``ffn.L3.mean``), and used only for the steps whose working set is truncated (below) it took 369 Newton steps
  instead of 309 on ``ffn.L6.max``, and more time.  Each label keeps its exact Hessian.
* What the time went to instead (one ``_solver.l1_logistic_path`` per label on ``ffn.L3.mean``, 4.3 s, profiled):
  Hessians 1.6 s, the L1 quadratic models 2.4 s.  The working set of a Newton step there is every weight that is
  nonzero or violates its optimality condition; with a C grid three-fold apart most neurons violate it at the first
  steps of a new C, and the squared working-set sizes summed to 65 M (every violator admitted) against 9.5 M for
  the nonzero weights.  Here a step admits at most ``max(_MIN_ADDED, _GROWTH * nonzeros)`` violators, the largest
  gradients first (a truncated step never ends a C): 16 M, Hessians 0.44 s.  Admitting half as many took more
  steps in the same time; twice as many, 30 M and a fifth more time (``ffn.L6.max``).
* The quadratic model (weights on the working set, intercept eliminated exactly) is solved by a few sweeps of
  compiled coordinate descent (scikit-learn's ``enet_path`` on the precomputed matrix) to find the nonzero
  weights, then one Newton solve on those with their signs fixed (a Cholesky factorisation), backtracked to the
  orthant so the model's value never rises.  On these collinear activations (condition numbers ~1e6) coordinate
  descent alone gained less in 1,000 sweeps than one such solve; two rounds at most were as good as running to
  convergence (``ffn.L6.max``: 309 Newton steps either way; the models' time 0.60 -> 0.38 s).
* The Hessian is ``Z'Z`` with ``Z = sqrt(p (1 - p) / n) (X_W - mean)`` (the rows centred by their curvature-weighted
  mean), one BLAS-3 product (float32 for float32 activations) that gives the intercept-eliminated model directly.
* Labels run in lockstep within a C: one matrix product gives the gradients of all labels still iterating.

Against one ``l1_logistic_path`` per label (the benchmark, fastest of 3 rounds, two runs on a shared 2-core
machine): ``hidden.L6.mean`` 1.7-1.8x faster, ``ffn.L3.mean`` 4.5-4.6x (4.4 -> 0.96 s), ``ffn.L6.max`` 2.6-2.8x
(3.7 -> 1.46 s).  Over the 3 x 84 label/C problems no objective was above the per-label solver's by more than 3e-5
relative; 12 were below it by more than 1e-4 (up to 6e-2: that solver's loose inner solves stop some paths early).
Where the time goes now (``ffn.L6.max``): the exact per-label Hessians half of it, the quadratic models (Cholesky,
coordinate descent) a third; reusing a label's Hessian from its previous step (extended by the new columns)
removed a third of the Hessian products but saved ~10 % of the time and let an objective end 1e-4 above the
per-label solver's, so it is not done.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.special import expit
from sklearn import config_context
from sklearn.linear_model import enet_path

from ._quiet import quiet_cd_chunks

__all__ = ["l1_logistic_label_paths"]

_ARMIJO = 1e-4
_MAX_HALVINGS = 40  # of the outer line search, as in _solver
_QP_HALVINGS = 30  # of the backtracking of a sign-fixed Newton solve inside the quadratic model
_RATE_FLOOR = 0.2  # as in _solver: never trust an observed rate of decrease below it
_SWEEPS = 8  # coordinate-descent sweeps per chunk
_INNER_PROGRESS = 3e-2  # the model's second round ends it once a round gains less than this share of the gain so far
_MIN_ADDED = 30  # violators a Newton step may add to the working set, at least ...
_GROWTH = 0.5  # ... or this share of the nonzero weights, whichever is more
_UNSCREENED_Y = 1e15  # the dummy target of the coordinate descent: see _solver._solve_l1_qp


def _validate(X, Y, Cs, tol, max_iter):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_samples, n_features); got shape {X.shape}")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"Y must be an indicator matrix with one row per row of X ({X.shape[0]}); got {Y.shape}")
    targets = Y.astype(np.float64)
    if not np.all((targets == 0) | (targets == 1)):
        raise ValueError("Y must hold only 0 and 1")
    constant = np.flatnonzero(targets.min(axis=0) == targets.max(axis=0))
    if constant.size:
        raise ValueError(f"labels {constant.tolist()} are constant in these rows: a binary path needs both values")
    Cs = np.asarray(Cs, dtype=np.float64).ravel()
    if Cs.size == 0:
        raise ValueError("Cs is empty: give at least one C > 0")
    if not np.all(np.isfinite(Cs)) or np.any(Cs <= 0):
        raise ValueError(f"every C must be finite and > 0; got Cs={Cs.tolist()}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0; got {tol}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}")
    return np.asfortranarray(X), targets, Cs


def _mean_loss(scores, y):
    return float(np.mean(np.logaddexp(0.0, scores) - y * scores))


def _block(Q, rows):
    """``Q[rows][:, rows]`` (a view when ``rows`` is a prefix, as the nonzero weights are at first)."""
    m = rows.size
    if m and rows[-1] == m - 1:
        return Q[:m, :m]
    return Q.take(rows, axis=0).take(rows, axis=1)


def _model_value(Q, q, u, lam):
    return 0.5 * float(u @ (Q @ u)) - float(q @ u) + lam * float(np.abs(u).sum())


def _sweeps(Q, q, u, lam):
    """A chunk of cyclic coordinate descent on ``u'Qu/2 - q.u + lam*|u|_1`` from u (see _solver._solve_l1_qp)."""
    with quiet_cd_chunks(), config_context(skip_parameter_validation=True):
        return enet_path(np.zeros((1, len(u))), np.array([_UNSCREENED_Y]), l1_ratio=1.0, alphas=[lam],
                         precompute=Q, Xy=q, coef_init=u, max_iter=_SWEEPS, tol=0.0, check_input=False)[1][:, 0]


def _newton_on_support(Q, q, u, lam):
    """Minimise the model over the nonzero weights of u with their signs fixed (one Cholesky solve), backtracking
    towards u and setting to zero the weights whose sign would flip, until the model's value is no higher.

    Returns (u, its model value, whether the full solve was taken: then u is optimal on its support)."""
    support = np.flatnonzero(u)
    if not support.size:
        return u, 0.0, True
    Q_s, q_s, start, signs = _block(Q, support), q[support], u[support], np.sign(u[support])
    before = _model_value(Q_s, q_s, start, lam)
    try:
        factor = cho_factor(Q_s, check_finite=False)
    except LinAlgError:  # not numerically positive definite: keep coordinate descent's point
        return u, before, False
    step = cho_solve(factor, q_s - lam * signs, check_finite=False) - start
    scale = 1.0
    for halving in range(_QP_HALVINGS):
        trial = start + scale * step
        flipped = np.sign(trial) != signs
        trial[flipped] = 0.0
        value = _model_value(Q_s, q_s, trial, lam)
        if value <= before:
            u = u.copy()
            u[support] = trial
            return u, value, halving == 0 and not flipped.any()
        scale *= 0.5
    return u, before, False


def _solve_model(Q, q, u, lam, enough, violators):
    """Approximately minimise ``u'Qu/2 - q.u + lam*|u|_1`` from u, in two rounds at most: a sign-fixed Newton solve
    on the nonzero weights (skipped in the first round when some violators may enter), then, unless that was
    optimal or the round gained less than ``enough`` or a small share of the gain so far, a chunk of coordinate
    descent to find which weights are nonzero."""
    support = np.flatnonzero(u)
    start = last = _model_value(_block(Q, support), q[support], u[support], lam)
    for round_ in range(2):
        if round_ == 0 and violators:
            value, exact = start, False
        else:
            u, value, exact = _newton_on_support(Q, q, u, lam)
        if exact and not np.any((u == 0) & (np.abs(Q @ u - q) > lam * (1 + 1e-9))):
            break  # optimal: no zero weight violates its condition either
        if round_ and last - value <= max(_INNER_PROGRESS * (start - value), enough):
            break
        u = _sweeps(Q, q, u, lam)
        last = value
    return u


def _working_set(w, g, lam):
    """The nonzero weights, then the violators (``|g_j| > lam`` at a zero weight), at most ``max(_MIN_ADDED,
    _GROWTH * nonzeros)`` of them, the largest gradients first; and whether some were left out."""
    support = np.flatnonzero(w)
    outside = np.abs(g) > lam
    outside[support] = False
    violators = np.flatnonzero(outside)
    cap = max(_MIN_ADDED, int(_GROWTH * support.size))
    truncated = violators.size > cap
    if truncated:
        violators = np.sort(violators[np.argsort(-np.abs(g[violators]), kind="stable")[:cap]])
    return np.concatenate([support, violators]), violators.size, truncated


def _curvature(X_work, p):
    """(v, h, Q) of the mean loss's Hessian: the intercept's column on the working set, its corner, and the weights'
    block with the intercept eliminated, ``X_W' D X_W / n - v v' / h``, computed as ``Z'Z`` with
    ``Z = (X_W - v' / h) sqrt(D / n)`` (``D = p (1 - p)``): the rows centred by their curvature-weighted mean."""
    n = len(p)
    curvature = p * (1.0 - p)
    h = float(curvature.sum()) / n
    weights = curvature.astype(X_work.dtype)
    v = (X_work.T @ weights).astype(np.float64) / n
    Z = X_work - (v / max(h, 1e-300)).astype(X_work.dtype)
    Z *= np.sqrt(weights / n)[:, None]
    Q = (Z.T @ Z).astype(np.float64)  # symmetric rank-n product: BLAS syrk
    # A whisper of ridge keeps the pivots positive when probabilities saturate or columns repeat (as in _solver).
    ridge = 1e-12 * max((float(np.trace(Q)) + h) / (len(Q) + 1), 1e-300)
    Q.flat[::len(Q) + 1] += ridge
    return v, h + ridge, Q


def _newton_step(X, y, w, b, scores, g, g_b, lam, enough, f_old):
    """One proximal-Newton step of one label; returns (w, b, scores, decrease, truncated), the inputs unchanged
    when no step decreases the objective."""
    work, violators, truncated = _working_set(w, g, lam)
    if not work.size and abs(g_b) <= 1e-12:
        return w, b, scores, 0.0, False  # the null model is already optimal: the weights stay exactly zero
    X_work = X[:, work]  # a cheap gather of whole columns: X is column-major
    v, h, Q = _curvature(X_work, expit(scores))
    w_work = w[work]
    # The model in the weights u with the intercept at its best given u: (g - v g_b / h).(u - w) + (u - w)'Q(u - w)/2
    q = Q @ w_work - (g[work] - v * (g_b / h))
    u = _solve_model(Q, q, w_work.copy(), lam, enough, violators) if work.size else w_work
    d_w = u - w_work
    d_b = -(g_b + float(v @ d_w)) / h
    d_scores = (X_work @ d_w.astype(X.dtype)).astype(np.float64) + d_b
    penalty_old = lam * float(np.abs(w_work).sum())
    others = lam * float(np.abs(w).sum()) - penalty_old
    slope = float(g[work] @ d_w) + g_b * d_b + lam * float(np.abs(u).sum()) - penalty_old
    alpha = 1.0
    for _ in range(_MAX_HALVINGS):
        new_scores = scores + alpha * d_scores
        f_new = _mean_loss(new_scores, y) + others + lam * float(np.abs(w_work + alpha * d_w).sum())
        if f_new <= f_old + _ARMIJO * alpha * min(slope, 0.0):
            break
        alpha *= 0.5
    else:
        return w, b, scores, 0.0, truncated  # no decrease left at this precision
    w = w.copy()
    w[work] = w_work + alpha * d_w
    return w, b + alpha * d_b, new_scores, f_old - f_new, truncated


def _solve_at(X, targets, W, b, lam, tol, max_iter):
    """Every label's problem at one C, from W and b (changed in place): Newton steps in lockstep, one gradient
    product for all the labels still iterating."""
    n = X.shape[0]
    # Fresh scores at each C: incremental float32 updates would otherwise drift along the path.
    scores = (X @ W.T.astype(X.dtype)).astype(np.float64) + b
    previous = np.zeros(len(b))
    running = np.arange(len(b))
    for _ in range(max_iter):
        if not running.size:
            break
        residual = expit(scores[:, running]) - targets[:, running]
        gradients = (X.T @ residual.astype(X.dtype)).astype(np.float64) / n
        still = []
        for i, label in enumerate(running):
            y = targets[:, label]
            f_old = _mean_loss(scores[:, label], y) + lam * float(np.abs(W[label]).sum())
            target_gap = tol * f_old
            W[label], b[label], scores[:, label], decrease, truncated = _newton_step(
                X, y, W[label], b[label], scores[:, label], gradients[:, i], float(residual[:, i].mean()), lam,
                0.1 * target_gap, f_old)
            # As in _solver: with the rate seen so far, what is still to gain?  A truncated step never ends a C.
            rate = max(min(decrease / previous[label], 0.99), _RATE_FLOOR) if previous[label] > 0 else 0.5
            if decrease > 0 and (truncated or decrease * rate / (1.0 - rate) > target_gap):
                still.append(label)
            previous[label] = decrease
        running = np.array(still, dtype=np.int64)


def l1_logistic_label_paths(X: np.ndarray, Y: np.ndarray, Cs: Sequence[float], *, tol: float = 1e-4,
                            max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Fit one binary L1-regularised logistic regression per label (column of the 0/1 matrix ``Y``) for every C;
    returns (coef (n_C, n_labels, d), intercept (n_C, n_labels)), each label's weights as ``l1_logistic_path``
    gives them for that label alone (up to its tolerance).

    Every label must take both values in these rows (a constant label has no binary problem: the caller decides
    what it predicts).  The C values are solved from the smallest up, each warm-started from the previous solution;
    Newton iterations of a label end at a C once the gain still expected is below ``tol`` times its objective;
    ``max_iter`` caps them.  Weights that the L1 penalty removes are exact zeros.  Same input, same output, bit for
    bit (under the same BLAS thread count).
    """
    X, targets, Cs = _validate(X, Y, Cs, tol, max_iter)
    n, d = X.shape
    frequency = targets.mean(axis=0)
    W = np.zeros((targets.shape[1], d))
    b = np.log(frequency / (1.0 - frequency))  # the best model without features
    coef = np.zeros((len(Cs), targets.shape[1], d))
    intercept = np.zeros((len(Cs), targets.shape[1]))
    for j in np.argsort(Cs, kind="stable"):
        _solve_at(X, targets, W, b, 1.0 / (Cs[j] * n), tol, int(max_iter))
        coef[j], intercept[j] = W, b
    return coef, intercept
