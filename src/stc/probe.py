"""Per-layer probes: an L1-regularised logistic regression on each stored array, C chosen on validation."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ._memory import workers_within
from ._metrics import score
from ._quiet import quiet_solver_warnings
from ._solver import fits_one_vs_rest, l1_logistic_path
from ._solver_multilabel import l1_logistic_label_paths
from .head import codes_from_decision, linear_decision
from .store import ActivationStore

__all__ = ["ProbeResult", "ProbePath", "fit_probes", "fit_probe_paths", "balanced_weights", "standardize",
           "PROBE_SOLVERS", "CLASS_WEIGHTS"]

#: With no C grid given, each probe's grid is these multiples of its C_min, the C below which it keeps no neuron:
#: from a handful of neurons to a lightly regularised probe, whatever N and the activations' scale (glmnet's idea).
#: Larger C (weaker L1) costs the most solver time and, on the MR/MiniLM probes, already overfits.
RELATIVE_PROBE_CS = (3.0, 10.0, 30.0, 100.0)
PROBE_SOLVERS = ("auto", "liblinear", "saga")
CLASS_WEIGHTS = (None, "balanced")


@dataclass(frozen=True)
class ProbeResult:
    """One probe at one C: its weights and the standardisation of the rows it was fitted on."""

    key: str
    C: float
    coef: np.ndarray  # (1 or n_classes, dim)
    intercept: np.ndarray
    val_score: float | None
    scores_by_C: list[float]
    Cs: list[float]

    @property
    def importance(self) -> np.ndarray:
        """Each neuron's importance: its squared weights summed over classes."""
        return (self.coef.astype(np.float64) ** 2).sum(axis=0)

    @property
    def n_nonzero(self) -> int:
        return int(np.count_nonzero(self.importance))


@dataclass(frozen=True)
class ProbePath:
    """The L1 probes of one array along its C grid, and their validation scores (None without validation rows)."""

    key: str
    Cs: list[float]  # the whole grid, ascending
    coefs: np.ndarray  # (n_solved, 1 or n_classes, dim): the grid's first n_solved Cs (all but where told)
    intercepts: np.ndarray  # (n_solved, 1 or n_classes)
    val_scores: list[float] | None

    def at(self, index: int) -> ProbeResult:
        """The probe at the ``index``-th C of the grid (an IndexError past the Cs solved)."""
        if not 0 <= index < len(self.coefs):
            raise IndexError(f"probe {self.key}: C index {index} not solved ({len(self.coefs)} of {len(self.Cs)} Cs)")
        return ProbeResult(key=self.key, C=self.Cs[index], coef=self.coefs[index], intercept=self.intercepts[index],
                           val_score=None if self.val_scores is None else self.val_scores[index],
                           scores_by_C=list(self.val_scores or []), Cs=list(self.Cs))

    def best(self) -> ProbeResult:
        """The probe with the best validation score; among equals the smallest C, i.e. the sparsest probe."""
        if self.val_scores is None:
            raise ValueError(f"probe {self.key} has no validation scores to choose its C by")
        return self.at(int(np.argmax(self.val_scores)))


#: A neuron whose spread over the texts is below this fraction of its array's median spread counts as constant.
#: Such neurons exist (MiniLM's FFN at the first token: values ~1e-6 varying by ~1e-10, 1e-7 of their layer's median
#: spread); standardised, their last float32 bits become as large as any neuron's, so a probe may keep them, and
#: then a prediction changes with the other texts of its batch (padding changes the rounding).
RELATIVE_SPREAD_FLOOR = 1e-4


def standardize(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of each column; (near-)constant columns get scale 1 so they stay at (near) zero.

    Near-constant: a spread below ``RELATIVE_SPREAD_FLOOR`` times the median spread of the columns, or 1e-12."""
    mean = X.mean(axis=0, dtype=np.float64)
    scale = X.std(axis=0, dtype=np.float64)
    floor = max(1e-12, RELATIVE_SPREAD_FLOOR * float(np.median(scale))) if scale.size else 1e-12
    scale[scale < floor] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)


def balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-row weights n / (K * n_class), scikit-learn's ``class_weight="balanced"``: every class weighs the same."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(n_classes)
    per_class[present] = len(y) / (present.sum() * counts[present])
    return per_class[y]


def smallest_useful_C(X: np.ndarray, y: np.ndarray, n_classes: int, sample_weight: np.ndarray | None = None) -> float:
    """C_min: for C below it the L1 probe (intercept only) keeps no neuron; the largest gradient at zero weights
    (over every label's binary problem when y is a multi-label indicator matrix)."""
    if y.ndim == 2:
        targets = y.astype(np.float64)
    else:
        targets = np.eye(n_classes)[y] if n_classes > 2 else y[:, None].astype(np.float64)
    if sample_weight is None:
        residual = targets - targets.mean(axis=0)
    else:
        w = np.asarray(sample_weight, dtype=np.float64)[:, None]
        residual = w * (targets - (w * targets).sum(axis=0) / w.sum())
    gradient = np.abs(X.T.astype(np.float64) @ residual).max()
    return 1.0 / gradient if gradient > 0 else 1.0


def _sklearn_path(X: np.ndarray, y: np.ndarray, Cs: Sequence[float], solver: str, seed: int,
                  sample_weight: np.ndarray | None = None):
    """Reference path with scikit-learn, one fit per C (liblinear is one-vs-rest for several classes)."""
    from sklearn.linear_model import LogisticRegression

    weights = {} if sample_weight is None else {"sample_weight": sample_weight}
    if y.ndim == 2:  # multi-label: each label's binary path (a label constant in these rows keeps no weight)
        per_label = [_sklearn_path(X, y[:, j].astype(np.int64), Cs, solver, seed, sample_weight)
                     if y[:, j].min() != y[:, j].max() else _constant_path(len(Cs), X.shape[1], y[0, j])
                     for j in range(y.shape[1])]
        return np.concatenate([c for c, _ in per_label], axis=1), np.concatenate([b for _, b in per_label], axis=1)
    classes = np.unique(y)
    coefs, intercepts = [], []
    for C in Cs:  # fit_probe_paths silences ConvergenceWarning: the grid's largest C may not fully converge
        def fit(target):
            return LogisticRegression(C=C, l1_ratio=1.0, solver=solver, max_iter=1000, tol=1e-4,
                                      random_state=seed).fit(X, target, **weights)
        if solver == "liblinear" and len(classes) > 2:
            # liblinear is binary only: one-vs-rest, one binary fit per class (as OneVsRestClassifier does, which
            # does not pass sample weights on without metadata routing)
            models = [fit((y == k).astype(np.int64)) for k in classes]
            coef = np.vstack([m.coef_ for m in models])
            intercept = np.concatenate([m.intercept_ for m in models])
        else:
            model = fit(y)
            coef, intercept = model.coef_, model.intercept_
        coefs.append(coef.astype(np.float32))
        intercepts.append(intercept.astype(np.float32))
    return np.stack(coefs), np.stack(intercepts)


def _constant_path(n_C: int, dim: int, value: int) -> tuple[np.ndarray, np.ndarray]:
    """The path of a label constant in the training rows: no weight, an intercept that always says ``value``."""
    return (np.zeros((n_C, 1, dim), dtype=np.float32),
            np.full((n_C, 1), 30.0 if value else -30.0, dtype=np.float32))


def _label_paths(X: np.ndarray, Y: np.ndarray, Cs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Multi-label: one binary L1 path per label (column of the indicator ``Y``) on the same standardised X, stacked
    as the classes of a one-vs-rest probe are, (n_C, n_labels, dim): each label against its absence is the
    one-vs-rest case with other targets. A label constant in these rows keeps no weight. The labels that vary are
    fitted together (``l1_logistic_label_paths``: each label's objective as ``l1_logistic_path`` would minimise it
    alone, 1.7-4.6x faster than one such path per label on films' MiniLM arrays: bench_multilabel_probes.py)."""
    varying = np.flatnonzero(Y.min(axis=0) != Y.max(axis=0))
    coef = np.zeros((len(Cs), Y.shape[1], X.shape[1]))
    intercept = np.zeros((len(Cs), Y.shape[1]))
    if varying.size:
        coef[:, varying], intercept[:, varying] = l1_logistic_label_paths(X, Y[:, varying], Cs)
    for j in np.setdiff1d(np.arange(Y.shape[1]), varying):
        coef[:, j:j + 1], intercept[:, j:j + 1] = _constant_path(len(Cs), X.shape[1], int(Y[0, j]))
    return coef, intercept


def _held_out_predictions(decision: np.ndarray, y: np.ndarray) -> np.ndarray:
    """What a probe predicts from its decision values: class codes, or (multi-label y) the labels whose decision
    is positive."""
    return (decision > 0).astype(np.uint8) if y.ndim == 2 else codes_from_decision(decision)


def _resolved_solver(solver: str, n_train: int, dim: int) -> str:
    """The solver a probe really gets: with more neurons than texts, "auto" hands over to liblinear, whose
    coordinate descent is cheap on so few rows. With many classes (one-vs-rest) stc's solver, its inner duality gap
    fixed on 12-06, was no faster there: 34 Reuters classes x 8 texts, probe stage 213 s against liblinear's 230 s,
    the same model (``benchmarks/README.md``, "Many classes")."""
    return "liblinear" if solver == "auto" and n_train < dim else solver


def probe_bytes(n_rows: int, n_train: int, dim: int, n_classes: int, solver: str) -> int:
    """An upper bound of the bytes one probe allocates: its rows as loaded and standardised (float32), the
    solver's copy, and for stc's solver the working-set Hessian at its largest (every neuron; one class block for
    binary and one-vs-rest probes, the classes squared for multinomial ones), three times (it, its Schur
    complement, a product), and the working columns."""
    data = 4 * n_rows * dim * 2
    if _resolved_solver(solver, n_train, dim) != "auto":
        return data + 8 * n_train * dim * 2  # scikit-learn's float64 copy, and liblinear's own
    work = min(dim, n_train)
    blocks = 1 if n_classes == 2 or fits_one_vs_rest(n_classes) else n_classes
    return data + 4 * n_train * dim + 3 * 8 * (blocks * work) ** 2 + 2 * 4 * n_train * work


def _fit_path(store: ActivationStore, key: str, y: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray,
              Cs: Sequence[float] | None, metric: str, solver: str, seed: int, class_weight: str | None,
              last_index: int | None = None) -> ProbePath:
    X = store.load(key, rows=np.concatenate([train_rows, val_rows]))
    X_train, X_val = X[:len(train_rows)], X[len(train_rows):]
    mean, scale = standardize(X_train)
    X_train = (X_train - mean) / scale
    X_val = (X_val - mean) / scale
    y_train, y_val = y[train_rows], y[val_rows]
    n_classes = y.shape[1] if y.ndim == 2 else int(y.max()) + 1
    weights = balanced_weights(y_train, n_classes) if class_weight == "balanced" else None
    if Cs is None:
        C_min = smallest_useful_C(X_train, y_train, n_classes, weights)
        Cs = [C_min * multiple for multiple in RELATIVE_PROBE_CS]
    # The path is solved from the smallest C up, each C from the last one's solution (scikit-learn's: each alone),
    # so its first Cs come out the same, bit for bit, when the larger, costlier ones are left out.
    solved = list(Cs) if last_index is None else list(Cs)[:last_index + 1]
    solver = _resolved_solver(solver, X_train.shape[0], X_train.shape[1])
    if solver == "auto" and y.ndim == 2:
        coefs, intercepts = _label_paths(X_train, y_train, solved)
    elif solver == "auto":
        coefs, intercepts = l1_logistic_path(X_train, y_train, solved, n_classes=n_classes, sample_weight=weights)
    else:
        coefs, intercepts = _sklearn_path(X_train, y_train, solved, solver, seed, weights)
    # The probe reads standardised activations; its importances are those of the standardised neurons.
    scores = ([score(y_val, _held_out_predictions(linear_decision(X_val, c, b), y_val), metric)
               for c, b in zip(coefs, intercepts)]
              if len(val_rows) else None)
    return ProbePath(key=key, Cs=[float(C) for C in Cs], coefs=np.asarray(coefs, dtype=np.float32),
                     intercepts=np.asarray(intercepts, dtype=np.float32), val_scores=scores)


def _fit_path_quietly(*arguments) -> ProbePath:
    """``_fit_path`` in a worker process, where the caller's warning filters do not reach."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # scikit-learn's solvers at the grid's largest C
        return _fit_path(*arguments)


def fit_probe_paths(store: ActivationStore, keys: Sequence[str], y: np.ndarray, train_rows: np.ndarray,
                    val_rows: np.ndarray, *, Cs: Sequence[float] | None = None, metric: str = "accuracy",
                    solver: str = "auto", n_jobs: int | None = 1, seed: int = 0, class_weight: str | None = None,
                    show_progress_bar: bool = False, desc: str = "probes",
                    last_C_index: Mapping[str, int] | None = None) -> dict[str, ProbePath]:
    """Fit one probe path (every C of the grid) per key on ``train_rows``; y holds class codes 0..K-1
    or a multi-label 0/1 indicator matrix (n, n_labels): one binary path per label, stacked as the classes are.

    ``Cs`` None gives each probe its own grid, ``RELATIVE_PROBE_CS`` times its ``smallest_useful_C``. Each path
    is scored on ``val_rows`` (none: no scores). ``last_C_index`` maps keys to the index of the last C of their
    (ascending) grid to solve, when only the grid's first probes are wanted: those come out as in the whole path.
    With ``n_jobs`` > 1 (-1: every core) the probes of stc's solver run side by side on threads, each with
    single-threaded BLAS: most of a fit (coordinate descent, line searches, small products) runs on one core
    anyway, so this uses the cores better than threaded BLAS inside one probe."""
    if solver not in PROBE_SOLVERS:
        raise ValueError(f"probe solver must be one of {PROBE_SOLVERS}, got {solver!r}")
    if class_weight not in CLASS_WEIGHTS:
        raise ValueError(f"class_weight must be one of {CLASS_WEIGHTS}, got {class_weight!r}")
    Cs = None if Cs is None else sorted(float(C) for C in Cs)
    # scikit-learn's liblinear draws from one process-wide random state: fitted on threads side by side, its
    # probes would depend on timing. Those run side by side in processes (each seeds its own state, so the result
    # is the same as one after another); only stc's own solver runs on threads.
    threaded = [key for key in keys if _resolved_solver(solver, len(train_rows), store.dim(key)) == "auto"]
    threaded.sort(key=lambda key: -store.dim(key))  # widest (slowest) first: no worker is left alone at the end
    on_threads = set(threaded)
    serial = [key for key in keys if key not in on_threads]
    n_classes = 2 if y.ndim == 2 else int(y.max()) + 1  # multi-label: binary paths, one label at a time
    n_rows = len(train_rows) + len(val_rows)

    def side_by_side(wanted: int, group: Sequence[str]) -> int:
        if not group:
            return wanted
        widest = max(probe_bytes(n_rows, len(train_rows), store.dim(key), n_classes, solver) for key in group)
        return workers_within(widest, wanted, stage=f"one probe of {n_rows:,} texts x {max(map(store.dim, group)):,}"
                              f" neurons", knob="probe fewer or narrower arrays (representations=('hidden',)), "
                              "or fit on fewer texts")

    workers = side_by_side(min(effective_n_jobs(n_jobs), max(len(threaded), 1)), threaded)
    bar = tqdm(total=len(keys), desc=desc, unit="probe", disable=not show_progress_bar)
    fitted = {}
    arguments = (y, train_rows, val_rows, Cs, metric, solver, seed, class_weight)
    last = dict(last_C_index or {})
    n_grid = len(RELATIVE_PROBE_CS) if Cs is None else len(Cs)
    if any(not 0 <= index < n_grid for index in last.values()):
        raise ValueError(f"last_C_index must be indices of the {n_grid} Cs of the grid; got {last}")
    with ExitStack() as context:
        context.enter_context(quiet_solver_warnings())
        warnings.simplefilter("ignore", ConvergenceWarning)  # scikit-learn's solvers at the grid's largest C
        processes = side_by_side(min(effective_n_jobs(n_jobs), len(serial)), serial)
        if processes > 1:
            for result in Parallel(n_jobs=processes, prefer="processes", return_as="generator")(
                    delayed(_fit_path_quietly)(store, key, *arguments, last.get(key)) for key in serial):
                fitted[result.key] = result
                bar.update()
        else:
            for key in serial:
                fitted[key] = _fit_path(store, key, *arguments, last.get(key))
                bar.update()
        if workers > 1:
            context.enter_context(threadpool_limits(limits=1, user_api="blas"))
        for result in Parallel(n_jobs=workers, prefer="threads", return_as="generator")(
                delayed(_fit_path)(store, key, *arguments, last.get(key)) for key in threaded):
            fitted[result.key] = result
            bar.update()
    bar.close()
    return {key: fitted[key] for key in keys}


def fit_probes(store: ActivationStore, keys: Sequence[str], y: np.ndarray, train_rows: np.ndarray,
               val_rows: np.ndarray, **options) -> dict[str, ProbeResult]:
    """One probe per key, its C chosen on ``val_rows`` (the paper's selection); options as ``fit_probe_paths``."""
    paths = fit_probe_paths(store, keys, y, train_rows, val_rows, **options)
    return {key: path.best() for key, path in paths.items()}
