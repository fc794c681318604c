"""L1-regularised logistic regression over a grid of C values: a warm-started proximal-Newton path solver.

For every ``C`` this minimises exactly scikit-learn's objective for ``LogisticRegression(C=C, l1_ratio=1.0)``::

    ||W||_1 + C * sum_i loss_i          (intercept unpenalised)

with the logistic loss for two classes (one weight vector, that of class 1, as in scikit-learn's ``coef_``), the
multinomial loss for up to ``MULTINOMIAL_MAX_CLASSES`` classes, and beyond that the sum of each class's logistic
loss against the rest (one-vs-rest; see below).  Internally the same minimiser is sought in the form
``mean_i loss_i + lam * ||W||_1`` with ``lam = 1 / (C * n)`` (scikit-learn's saga solver uses this scaling too).

How, and why (timings: ``benchmarks/bench_probe_solver.py``):

* Standardised transformer activations are strongly collinear (MiniLM FFN probes: Hessian condition numbers ~1e6),
  so first-order methods (FISTA over all C at once, saga) stall for thousands of passes over X, and orthant-wise
  or active-set Newton steps on the L1 subproblem zig-zag; a proximal Newton method needs 2-4 iterations per C when
  the C values are solved from the smallest up, each warm-started from the last.
* Each Newton iteration builds the Hessian only on the working set (nonzero weights plus KKT violators) with one
  BLAS-3 product ``X_W' D X_W``, then solves the L1 quadratic model on that k x k matrix with compiled coordinate
  descent (scikit-learn's ``enet_path`` on a precomputed Gram matrix) -- about k^2 work per sweep instead of the
  n*k of coordinate descent on the data, which is what liblinear does.
* A step is accepted by an Armijo line search on the exact objective, so the quadratic model may be solved loosely.
* ``enet_path`` stops on its duality gap, which needs ``||y||^2`` of a least-squares problem that only exists as
  ``(Q, q)`` here. A huge stand-in keeps the gap a valid bound, but where every gradient is within the penalty the
  gap is computed as ``1e30 - 1e30``, reads 0, and the solve returns unmoved: the path then stopped at that C short
  of its optimum (217 x 1,536 one-vs-rest probes: 20 % above liblinear's objective at one C, every cold start
  stuck). Steps pass a true bound from the model's IRLS form (``_least_squares_norm``; binary and one-vs-rest since
  2026-12-06, multinomial later that day; none exists past a saturated mistake); ``bench_solver_gap.py`` compares.
* Up to ``MULTINOMIAL_MAX_CLASSES`` classes the multinomial loss takes joint Newton steps over all classes (one
  class block per pair of classes in the Hessian); cycling over the classes one block at a time, tried first,
  crawled at large C.  That Hessian is (classes x working set)^2 -- 20 classes x 1,536 FFN neurons would be a
  30,720^2 float64 matrix, 7.5 GB -- and its cost grows faster than the classes.  Beyond that many classes each
  class gets its own binary path against the rest (one-vs-rest, as liblinear does): memory is one working-set
  Hessian at a time whatever the number of classes, time grows linearly with it, and each binary problem is the
  well-measured fast case.  The neuron importance that sparsification reads (squared weights summed over classes)
  and the argmax decision are defined for both.  Measured side by side (``benchmarks/bench_many_classes.py
  --solver-only``, planted 2,000 x 300 problems, 3 C values, 2026-12-02): joint steps 10 s with 5 classes and 68 s
  (832 MiB traced) with 20; one-vs-rest 2.6 s and 4.4 s (7 MiB); scikit-learn's liblinear one-vs-rest 1.1 s and
  7.4 s, saga 8 s and 72 s.  On real probes (MiniLM, 2,000 Reuters texts of 5 classes) one-vs-rest took the probe
  stage from 370 s to 45 s and the fit's peak RSS from 3.0 to 1.0 GB (one seed; test macro-F1 95.7 against 95.6).
  One-vs-rest was faster from 3 classes on too; the joint loss is kept up to 4 because the 3-class benchmarks
  (tweets) were measured with it -- lowering ``MULTINOMIAL_MAX_CLASSES`` waits for them to be measured again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import logsumexp
from sklearn.linear_model import enet_path

from ._quiet import quiet_cd_chunks

__all__ = ["l1_logistic_path", "fits_one_vs_rest", "MULTINOMIAL_MAX_CLASSES", "MULTI_CLASS"]

_ARMIJO = 1e-4
_MAX_HALVINGS = 40
_FIRST_SWEEPS = 8  # coordinate-descent sweeps in the first chunk of an inner solve; chunks double after that
_MAX_SWEEPS = 1000
_RATE_FLOOR = 0.2  # inexact steps can shrink the decrease faster than the gap: never trust a rate below it
_INNER_PROGRESS = 3e-2  # stop the inner solve once a chunk gains less than this share of the gain so far
_ABSENT_INTERCEPT = float(np.log(np.finfo(np.float64).tiny))  # ~ -708: a class absent from y, never predicted
_UNSCREENED_Y = 1e15  # the inner solve's ||y|| where no bound is known (a saturated probability): module docstring
#: The most classes fitted jointly (multinomial); more are fitted one-vs-rest (see the module docstring).
MULTINOMIAL_MAX_CLASSES = 4
MULTI_CLASS = ("auto", "multinomial", "ovr")

def _validate(X, y, Cs, n_classes):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_samples, n_features); got shape {X.shape}")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    y = np.asarray(y)
    if y.dtype == bool:
        y = y.astype(np.int64)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"X and y disagree: X has {X.shape[0]} rows, y has shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.number) and np.all(np.mod(y, 1) == 0)):
            raise ValueError(f"y must hold integer class codes 0..K-1; got dtype {y.dtype}")
        y = y.astype(np.int64)
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    Cs = np.asarray(Cs, dtype=np.float64).ravel()
    if Cs.size == 0:
        raise ValueError("Cs is empty: give at least one C > 0")
    if not np.all(np.isfinite(Cs)) or np.any(Cs <= 0):
        raise ValueError(f"every C must be finite and > 0; got Cs={Cs.tolist()}")
    if y.size and y.min() < 0:
        raise ValueError(f"y must hold class codes 0..K-1; found {y.min()}")
    present = np.unique(y)
    K = (int(y.max()) + 1 if y.size else 0) if n_classes is None else int(n_classes)
    if y.size and y.max() >= K:
        raise ValueError(f"y holds class code {y.max()} but n_classes={K}")
    if present.size < 2:
        raise ValueError(f"need at least 2 classes in y; found {present.size}")
    return np.ascontiguousarray(X), y, Cs, K


def _pseudo_gradient(g, w, lam):
    """Minimum-norm subgradient of ``g.w + lam*|w|_1`` at w (zero exactly where w is optimal)."""
    shrunk = np.sign(g) * np.maximum(np.abs(g) - lam, 0.0)
    return np.where(w != 0, g + lam * np.sign(w), shrunk)


def _solve_l1_qp(H, c, u, lam, enough, n_free, y_norm2=None):
    """Approximately minimise ``c.u + u'Hu/2 + lam*|u[:-n_free]|_1`` (the last ``n_free`` coordinates, intercepts,
    unpenalised), starting from u.

    The intercepts are eliminated exactly (Schur complement); compiled coordinate descent then runs on the Gram
    matrix: ``enet_path`` minimises ``(1/2)||y - Xw||^2 + alpha*|w|_1`` for one sample row, given ``Q = X'X`` and
    ``q = X'y``; that is ``w'Qw/2 - q.w + alpha*|w|_1`` plus the constant ``||y||^2 / 2``.  Sweeps run in chunks of
    doubling length until a chunk gains less than ``enough`` or a small share of the gain so far.  ``y_norm2``, an
    upper bound of ``||y||^2 = q'Q^+q`` (``_least_squares_norm``), makes enet_path's duality gap exact where its
    dual point is feasible and a valid bound elsewhere; None stands in a huge one (see ``_UNSCREENED_Y``).
    """
    m = len(u) - n_free
    B, free_factor = H[:m, m:], cho_factor(H[m:, m:])
    w = u[:m].copy()
    if m:
        Q = np.ascontiguousarray(H[:m, :m] - B @ cho_solve(free_factor, B.T))
        q = B @ cho_solve(free_factor, c[m:]) - c[:m]
        # ||y|| enters only enet_path's duality gap (its screening, and its stop at a gap of 0). The exact q'Q^+q
        # costs a factorisation of Q (singular when a neuron is in every class's working set), which measured cost
        # more than screening saved (4 three-class tweet probes 94 -> 33 s without), so a bound stands in.
        dummy_X = np.zeros((1, m))
        dummy_y = np.array([_UNSCREENED_Y if y_norm2 is None else math.sqrt(y_norm2)])

        def value(w):
            return 0.5 * float(w @ (Q @ w)) - float(q @ w) + lam * float(np.abs(w).sum())

        start = last = value(w)
        sweeps, chunk = 0, _FIRST_SWEEPS
        while sweeps < _MAX_SWEEPS:
            with quiet_cd_chunks():
                w = enet_path(dummy_X, dummy_y, l1_ratio=1.0, alphas=[lam], precompute=Q, Xy=q, coef_init=w,
                              max_iter=chunk, tol=0.0, check_input=False)[1][:, 0]
            sweeps += chunk
            chunk *= 2
            current = value(w)
            if last - current <= max(_INNER_PROGRESS * (start - current), enough):
                break
            last = current
    return np.concatenate([w, -cho_solve(free_factor, c[m:] + B.T @ w)])  # the best intercepts given w


def _probabilities(scores):
    """Class probabilities from scores (n, rows): the sigmoid for one row (binary), the softmax otherwise."""
    if scores.shape[1] == 1:
        return np.exp(-np.logaddexp(0.0, -scores))
    return np.exp(scores - logsumexp(scores, axis=1, keepdims=True))


def _mean_loss(scores, targets, weights=None):
    """The mean logistic loss, each row weighted by ``weights`` (mean 1) when given."""
    if scores.shape[1] == 1:
        losses = np.logaddexp(0.0, scores[:, 0]) - targets[:, 0] * scores[:, 0]
    else:
        losses = logsumexp(scores, axis=1) - (targets * scores).sum(axis=1)
    return float(np.mean(losses if weights is None else weights * losses))


def _hessian(X_work, P, free, weights=None):
    """Hessian of the mean loss in (weights on the working set, class-major; then the free intercepts).

    Block (a, b) of the weights is ``X_W' diag(P_a (delta_ab - P_b)) X_W / n`` (for one row: ``p (1 - p)``), each
    row's curvature times its sample weight when weights are given.
    """
    n, k = X_work.shape
    rows = P.shape[1]
    curvature = {}
    for a in range(rows):
        for b in range(a, rows):
            curvature[a, b] = P[:, a] * (1.0 - P[:, a]) if a == b else -P[:, a] * P[:, b]
            if weights is not None:
                curvature[a, b] = curvature[a, b] * weights
    H = np.empty((rows * k + len(free),) * 2)
    for (a, b), weight in curvature.items():
        if a == b:
            weighted = X_work * np.sqrt(weight).astype(X_work.dtype)[:, None]
            block = weighted.T @ weighted  # symmetric rank-n product: BLAS syrk, half a GEMM
        else:
            block = X_work.T @ (X_work * weight.astype(X_work.dtype)[:, None])
        H[a * k:(a + 1) * k, b * k:(b + 1) * k] = block
        H[b * k:(b + 1) * k, a * k:(a + 1) * k] = block.T
    for i, c in enumerate(free):
        for a in range(rows):
            column = X_work.T @ curvature[min(a, c), max(a, c)].astype(X_work.dtype)
            H[a * k:(a + 1) * k, rows * k + i] = H[rows * k + i, a * k:(a + 1) * k] = column
        for j, e in enumerate(free):
            H[rows * k + i, rows * k + j] = curvature[min(c, e), max(c, e)].sum()
    H /= n
    # A whisper of ridge keeps the pivots positive when probabilities saturate or columns repeat.
    H[np.diag_indices(len(H))] += 1e-12 * max(float(np.trace(H)) / len(H), 1e-300)
    return H


def _newton_step(X, targets, W, b, scores, lam, enough, weights=None):
    """One proximal-Newton step on all weights and intercepts; W and b change in place; X is column-major.

    ``enough`` is a decrease of the objective too small to chase inside the step.  Returns the new scores
    ``X W' + b`` (n, rows) and the decrease of the objective.
    """
    n, rows = scores.shape
    free = [0] if rows == 1 else list(range(1, rows))  # class 0's intercept is the softmax's gauge
    P = _probabilities(scores)
    residual = P - targets
    if weights is not None:
        residual = residual * weights[:, None]
    G = (X.T @ residual.astype(X.dtype)).astype(np.float64).T / n
    g_free = residual.mean(axis=0)[free]
    work = np.flatnonzero(((W != 0) | (_pseudo_gradient(G, W, lam) != 0)).any(axis=0))
    if not work.size and np.abs(g_free).max() <= 1e-12:
        return scores, 0.0  # the null model is already optimal: the weights stay exactly zero
    k = work.size
    X_work = X[:, work]  # a cheap gather of whole columns: X is column-major
    H = _hessian(X_work, P, free, weights)
    u_old = np.concatenate([W[:, work].ravel(), b[free]])
    gradient = np.concatenate([G[:, work].ravel(), g_free])
    offset = scores.copy()
    if rows > 1:
        offset[:, 0] -= b[0]  # class 0's intercept is fixed: the least-squares rows hold only what u moves
    y_norm2 = _least_squares_norm(offset, P, residual, free, weights)
    delta = _solve_l1_qp(H, gradient - H @ u_old, u_old, lam, enough, len(free), y_norm2) - u_old
    d_W = delta[:rows * k].reshape(rows, k)
    d_b = np.zeros(rows)
    d_b[free] = delta[rows * k:]
    d_scores = (X_work @ d_W.T.astype(X.dtype)).astype(np.float64) + d_b
    old_W = W[:, work].copy()
    penalty_old = lam * float(np.abs(old_W).sum())
    f_old = _mean_loss(scores, targets, weights) + penalty_old
    slope = float(gradient @ delta) + lam * float(np.abs(old_W + d_W).sum()) - penalty_old
    alpha = 1.0
    for _ in range(_MAX_HALVINGS):
        new_scores = scores + alpha * d_scores
        f_new = _mean_loss(new_scores, targets, weights) + lam * float(np.abs(old_W + alpha * d_W).sum())
        if f_new <= f_old + _ARMIJO * alpha * min(slope, 0.0):
            break
        alpha *= 0.5
    else:
        return scores, 0.0  # no decrease left at this precision
    W[:, work] = old_W + alpha * d_W
    b += alpha * d_b
    return new_scores, f_old - f_new


def _least_squares_norm(offset, P, residual, free, weights=None):
    """An upper bound of ``||y||^2`` for the Newton model as ``_solve_l1_qp`` poses it, or None.

    The model is iteratively reweighted least squares: per text the curvature ``S = w p (1 - p)`` (binary) or
    ``w (diag p - p p')`` (softmax) and the gradient ``r = w (p - target)``, in S's range; in the scores it reads
    ``||S^(1/2) (s - z)||^2 / 2`` plus a constant, with ``z = s_old - x`` for any ``S x = r`` (``r / (w p)`` for
    the softmax, whose S maps constants to 0).  The rows ``S^(1/2) z``, less what no parameter moves (``offset``
    drops the softmax's fixed class-0 intercept), project on the weights' columns after the ``free`` intercepts'
    elimination with squared norm ``q'Q^+q``: at most their norm less their projection on the intercepts' columns,
    which is returned with a little room for rounding."""
    n, rows = P.shape
    w = np.ones((n, 1)) if weights is None else weights[:, None]
    # A saturated probability (p = 0 or 1 in float64) drops its curvature; the row then adds nothing to the model
    # when its gradient is 0 too (the text fitted exactly), and leaves no least-squares form when it is not.
    curvature = w * P * (1.0 - P) if rows == 1 else w * P  # the softmax's: the diagonal part of S
    flat = curvature <= 0
    if np.any(residual[flat] != 0):
        return None
    x = np.divide(residual, curvature, out=np.zeros_like(residual), where=~flat)
    z = offset - x
    if rows == 1:
        Sz, norm2 = curvature * z, float((curvature * z * z).sum())
        intercepts_gram = np.array([[curvature.sum()]])
    else:
        centred = z - (P * z).sum(axis=1, keepdims=True)
        Sz, norm2 = curvature * centred, float((curvature * centred * centred).sum())
        intercepts_gram = np.diag(curvature[:, free].sum(axis=0)) - curvature[:, free].T @ P[:, free]
    Zy = Sz[:, free].sum(axis=0)
    explained = float(Zy @ np.linalg.lstsq(intercepts_gram, Zy, rcond=None)[0])  # a projection: pinv, not inv
    bound = (1.0 + 1e-6) * max(norm2 - explained, 0.0) / n + 1e-12 * norm2 / n
    return bound if math.isfinite(bound) and bound > 0 else None


def _null_intercepts(targets, weights=None):
    """Intercepts of the best model without features (binary: log-odds; multinomial: log class frequencies)."""
    freq = targets.mean(axis=0) if weights is None else (weights[:, None] * targets).mean(axis=0)
    if targets.shape[1] == 1:
        return np.log(freq / (1.0 - freq))
    logs = np.log(np.maximum(freq, np.finfo(np.float64).tiny))  # a class absent from y gets ~ -708
    return logs - logs[freq > 0].mean()


def _start_points(warm_start, n_C, rows, d):
    if warm_start is None:
        return None
    coef, intercept = (np.asarray(part, dtype=np.float64) for part in warm_start)
    if coef.ndim == 2:
        coef, intercept = coef[None], intercept.reshape(1, -1)
    if coef.shape[0] not in (1, n_C) or coef.shape[1:] != (rows, d) or intercept.shape != (coef.shape[0], rows):
        raise ValueError(f"warm_start must be shaped like the output, ({n_C}, {rows}, {d}) and ({n_C}, {rows}), "
                         f"or ({rows}, {d}) and ({rows},); got {coef.shape} and {intercept.shape}")
    if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
        raise ValueError("warm_start contains NaN or infinite values")
    return coef, intercept


def fits_one_vs_rest(n_classes: int, multi_class: str = "auto") -> bool:
    """Whether ``l1_logistic_path`` fits these many classes one-vs-rest (else jointly, or binary for two)."""
    if multi_class not in MULTI_CLASS:
        raise ValueError(f"multi_class must be one of {MULTI_CLASS}; got {multi_class!r}")
    return n_classes > 2 and (multi_class == "ovr"
                              or (multi_class == "auto" and n_classes > MULTINOMIAL_MAX_CLASSES))


def l1_logistic_path(
    X: np.ndarray,
    y: np.ndarray,
    Cs: Sequence[float],
    *,
    n_classes: int | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
    warm_start: tuple | None = None,
    sample_weight: np.ndarray | None = None,
    multi_class: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Fit L1-regularised logistic regression for every C; returns (coef (n_C, K, d), intercept (n_C, K)).

    Two classes give one row per C (K = 1 in the shapes), the weights of class 1, as scikit-learn's ``coef_``.
    ``y`` holds class codes 0..K-1 (``n_classes`` fixes K when a class is absent from y).  The C values are solved
    from the smallest up, each warm-started from the previous solution; Newton iterations end at a C once the gain
    still expected from later iterations, estimated from the observed rate of decrease, is below ``tol`` times the
    objective; ``max_iter`` caps those iterations.
    ``warm_start`` is ``(coef, intercept)`` shaped like the output (one start per C) or ``(K, d)``, ``(K,)`` (a
    start for the smallest C).  ``sample_weight`` (positive, one per row) weights each row's loss as scikit-learn's
    ``fit(..., sample_weight=)`` does (class weights are sample weights of each row's class).  ``multi_class``:
    ``"auto"`` is multinomial up to ``MULTINOMIAL_MAX_CLASSES`` classes and one-vs-rest beyond (each row of the
    output then solves its class's binary problem against the rest; a class absent from y gets zero weights and
    an intercept of about -708); ``"multinomial"`` or ``"ovr"`` force either.  Weights that the L1 penalty removes
    are exact zeros.  Same input, same output, bit for bit (under the same BLAS thread count).
    """
    X, y, Cs, K = _validate(X, y, Cs, n_classes)
    if not tol > 0:
        raise ValueError(f"tol must be > 0; got {tol}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}")
    one_vs_rest = fits_one_vs_rest(K, multi_class)
    n, d = X.shape
    rows = 1 if K == 2 else K
    targets = ((y == 1)[:, None] if K == 2 else y[:, None] == np.arange(K)[None, :]).astype(np.float64)
    starts = _start_points(warm_start, len(Cs), rows, d)
    weights, scale = None, 1.0
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float64).ravel()
        if weights.shape != (n,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(f"sample_weight must hold {n} finite positive numbers; got shape {weights.shape}")
        # Scaled to mean 1, so that the loss is sum_i w_i loss_i * C as in scikit-learn with lam = 1 / (C n).
        scale = weights.mean()
        weights = weights / scale
    X = np.asfortranarray(X)
    if rows == 1 or not one_vs_rest:
        return _path(X, targets, Cs, starts, weights, scale, tol, max_iter)
    coef = np.zeros((len(Cs), K, d))
    intercept = np.full((len(Cs), K), _ABSENT_INTERCEPT)
    for c in range(K):  # each class against the rest; one binary working set in memory at a time
        target = targets[:, c:c + 1]
        if not target.any():
            continue  # a class absent from y: never predicted, no weight
        start = None if starts is None else (starts[0][:, c:c + 1], starts[1][:, c:c + 1])
        coef[:, c:c + 1], intercept[:, c:c + 1] = _path(X, target, Cs, start, weights, scale, tol, max_iter)
    return coef, intercept


def _path(X, targets, Cs, starts, weights, scale, tol, max_iter):
    """The warm-started path over Cs for one target matrix (n, rows): rows = 1, binary; else multinomial."""
    n, d = X.shape
    rows = targets.shape[1]
    W = np.zeros((rows, d))
    b = _null_intercepts(targets, weights)
    coef = np.zeros((len(Cs), rows, d))
    intercept = np.zeros((len(Cs), rows))
    for rank, j in enumerate(np.argsort(Cs, kind="stable")):
        if starts is not None and (starts[0].shape[0] == len(Cs) or rank == 0):
            start = j if starts[0].shape[0] == len(Cs) else 0
            W, b = starts[0][start].copy(), starts[1][start].copy()
        # Fresh scores at each C: incremental float32 updates would otherwise drift along the path.
        scores = (X @ W.T.astype(X.dtype)).astype(np.float64) + b
        lam = 1.0 / (Cs[j] * n) if weights is None else 1.0 / (Cs[j] * n * scale)
        previous = 0.0
        for _ in range(int(max_iter)):
            target_gap = tol * (_mean_loss(scores, targets, weights) + lam * float(np.abs(W).sum()))
            scores, decrease = _newton_step(X, targets, W, b, scores, lam, 0.1 * target_gap, weights)
            # Newton iterations converge at least linearly; with the rate seen so far, what is still to gain?
            rate = max(min(decrease / previous, 0.99), _RATE_FLOOR) if previous > 0 else 0.5
            if decrease * rate / (1.0 - rate) <= target_gap:
                break
            previous = decrease
        coef[j], intercept[j] = W, b
    return coef, intercept
