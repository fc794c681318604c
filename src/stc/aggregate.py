"""Cross-layer assembly of the kept neurons and the search for the final classifier's configuration.

The search runs in two stages, because the full product (representations × poolings × η × exit layer × C) is
thousands of fits: first every representation set × pooling set × η at full depth with one C (the lower middle of
the grid), then, for the winner, every exit layer × every C. Ties go to fewer features, then the shallower exit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ._metrics import score
from .extract import parse_key
from .probe import ProbeResult
from .sparsify import select_neurons

__all__ = ["Configuration", "kept_columns", "feature_names", "make_final_classifier", "search_configurations",
           "DEFAULT_FINAL_CS"]

DEFAULT_FINAL_CS = (0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class Configuration:
    """One point of the search and its validation score."""

    representations: tuple[str, ...]
    poolings: tuple[str, ...]
    eta: float
    exit_layer: int
    C: float
    n_features: int
    val_score: float
    stage: int

    def as_row(self) -> dict:
        row = asdict(self)
        row["representations"], row["poolings"] = "+".join(self.representations), "+".join(self.poolings)
        return row


def kept_columns(probes: Mapping[str, ProbeResult], representations: Sequence[str], poolings: Sequence[str],
                 eta: float, exit_layer: int) -> dict[str, np.ndarray]:
    """Per key (in a fixed order), the neurons η keeps, for the chosen representations, poolings and depth."""
    chosen = {}
    for key in sorted(probes, key=parse_key):
        representation, layer, pooling = parse_key(key)
        if representation in representations and pooling in poolings and layer <= exit_layer:
            columns = select_neurons(probes[key].importance, eta)
            if len(columns):
                chosen[key] = columns
    return chosen


def feature_names(columns: Mapping[str, np.ndarray]) -> list[str]:
    """Readable neuron names in feature order, e.g. ``ffn.L3.mean.1021``."""
    return [f"{key}.{int(index)}" for key, indices in columns.items() for index in indices]


def make_final_classifier(C: float, seed: int = 0) -> Pipeline:
    return Pipeline([("scale", StandardScaler()),
                     ("logreg", LogisticRegression(C=C, max_iter=2000, random_state=seed))])


def _fit_and_score(X_train, y_train, X_val, y_val, C, metric, seed) -> float:
    model = make_final_classifier(C, seed).fit(X_train, y_train)  # the caller silences ConvergenceWarning
    return score(y_val, model.predict(X_val), metric)


def search_configurations(
    probes: Mapping[str, ProbeResult],
    load: Callable[[str, np.ndarray], tuple[np.ndarray, np.ndarray]],
    y_train: np.ndarray, y_val: np.ndarray, *,
    representation_sets: Sequence[tuple[str, ...]], pooling_sets: Sequence[tuple[str, ...]],
    etas: Sequence[float], exit_layers: Sequence[int], Cs: Sequence[float], metric: str = "accuracy",
    n_jobs: int | None = 1, seed: int = 0, show_progress_bar: bool = False,
) -> tuple[Configuration, list[Configuration]]:
    """Find the best configuration on validation; ``load(key, columns)`` gives (train, validation) columns."""
    # Larger η keeps a superset, so one read per key at the largest η serves every candidate.
    superset = kept_columns(probes, sorted({r for s in representation_sets for r in s}),
                            sorted({p for s in pooling_sets for p in s}), max(etas), max(exit_layers))
    cache = {key: (columns, *load(key, columns)) for key, columns in superset.items()}

    def matrices(columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        train_parts, val_parts = [], []
        for key, wanted in columns.items():
            held, train, val = cache[key]
            position = np.searchsorted(held, wanted)
            train_parts.append(train[:, position])
            val_parts.append(val[:, position])
        return np.hstack(train_parts), np.hstack(val_parts)

    def evaluate(candidates: list[tuple]) -> list[Configuration]:
        jobs, seen = [], {}
        for representations, poolings, eta, exit_layer, C, stage in candidates:
            columns = kept_columns(probes, representations, poolings, eta, exit_layer)
            signature = (tuple((k, v.tobytes()) for k, v in columns.items()), C)
            if columns and signature not in seen:
                seen[signature] = len(jobs)
                jobs.append((representations, poolings, eta, exit_layer, C, stage, columns))

        def run(columns, C):  # matrices are built inside the job, so only n_jobs of them exist at once
            X_train, X_val = matrices(columns)
            return _fit_and_score(X_train, y_train, X_val, y_val, C, metric, seed)

        workers = min(effective_n_jobs(n_jobs), max(len(jobs), 1))
        # Whole fits side by side, each on one BLAS thread, use the cores better than threaded BLAS in one fit.
        # catch_warnings is process-wide and not thread-safe: one block here serves every worker.
        with warnings.catch_warnings(), (threadpool_limits(limits=1, user_api="blas") if workers > 1
                                         else nullcontext()):
            warnings.simplefilter("ignore", ConvergenceWarning)  # a candidate's largest C may stop at max_iter
            # Largest fits first, so that no worker is left with a big one while the others idle at the end.
            order = sorted(range(len(jobs)), key=lambda i: -sum(len(v) for v in jobs[i][6].values()))
            results = Parallel(n_jobs=workers, prefer="threads", return_as="generator")(
                delayed(run)(jobs[i][6], jobs[i][4]) for i in order)
            scores = [0.0] * len(jobs)
            for i, result in zip(order, tqdm(results, total=len(jobs), desc=f"search stage {candidates[0][-1]}",
                                             unit="fit", disable=not show_progress_bar)):
                scores[i] = result
        return [Configuration(r, p, e, k, C, sum(len(v) for v in cols.values()), s, stage)
                for (r, p, e, k, C, stage, cols), s in zip(jobs, scores)]

    # Stage 1 compares feature sets of very different sizes at one C; a weak penalty (large C) would favour the
    # small ones and converge slowest, so it takes the lower middle of the grid (0.1 of the default grid).
    middle_C = sorted(Cs)[(len(Cs) - 1) // 2]
    deepest = max(exit_layers)
    first = evaluate([(r, p, eta, deepest, middle_C, 1) for r in representation_sets for p in pooling_sets
                      for eta in etas])
    if not first:
        raise ValueError("every probe kept no neuron at every eta: the labels look unrelated to the activations "
                         "(or the probe C grid is too small)")
    leader = _best(first)
    second = evaluate([(leader.representations, leader.poolings, leader.eta, k, C, 2)
                       for k in exit_layers for C in Cs])
    table = first + second
    return _best(table), table


def _best(candidates: Sequence[Configuration]) -> Configuration:
    return min(candidates, key=lambda c: (-c.val_score, c.n_features, c.exit_layer, c.C))
