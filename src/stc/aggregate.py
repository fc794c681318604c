"""Cross-layer assembly of the kept neurons, and the evaluation of candidate readouts on held-out rows.

A *candidate* is one way to read the backbone: sparse (the neurons the probes keep at η, over the chosen
representations and poolings, of layers up to an exit layer), dense (every neuron of one layer's pooled hidden
state; the last layer's mean is the sentence-embedding baseline itself) or hybrid (the best dense layer plus the
best sparse neurons: the embedding, told what it misses by named neurons of other layers), and the C of the final
logistic regression. ``evaluate_candidates`` fits each candidate on the training rows of every split and predicts that
split's held-out rows; ``search`` runs the two-stage search over candidates. Which candidate wins is decided by a
selector given by the caller (``stc.selection``): the paper's best validation score, or a one-standard-error rule
over cross-validation folds.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm
from sklearn.exceptions import ConvergenceWarning

from ._memory import workers_within
from .extract import parse_key
from .head import make_final_classifier
from .probe import ProbeResult
from .sparsify import select_neurons

__all__ = ["Candidate", "Configuration", "Evaluation", "Split", "kept_columns", "candidate_columns",
           "feature_names", "make_final_classifier", "final_fit_bytes", "evaluate_candidates", "search",
           "SearchResult", "stage_two_candidates", "DEFAULT_FINAL_CS", "READOUT_KINDS", "SelectionRule"]

DEFAULT_FINAL_CS = (0.01, 0.1, 1.0, 10.0)
#: The kinds of readout a candidate (and so a fitted model) is: ``Candidate.readout`` holds one.
READOUT_KINDS = ("sparse", "dense", "hybrid")


@dataclass(frozen=True)
class Candidate:
    """One readout to try: sparse (kept neurons at η up to ``exit_layer``), dense (every neuron of ``dense_key``)
    or hybrid (both)."""

    readout: str
    representations: tuple[str, ...]
    poolings: tuple[str, ...]
    eta: float | None
    exit_layer: int
    C: float
    stage: int
    dense_key: str | None = None


@dataclass(frozen=True)
class Split:
    """Rows to fit on, rows to predict, and the probes fitted on the former (so no neuron saw the latter)."""

    train_rows: np.ndarray
    val_rows: np.ndarray
    probes: Mapping[str, ProbeResult]


@dataclass(frozen=True)
class Evaluation:
    """A candidate's held-out predictions (class codes) and decision values (n, 1 or n_classes), on every split's
    validation rows in split order."""

    candidate: Candidate
    n_features: float  # mean over splits: the probes of each split keep their own neurons
    predictions: np.ndarray
    decisions: np.ndarray


@dataclass(frozen=True)
class Configuration:
    """One point of the search and its held-out score (a validation score, or a cross-validation mean)."""

    representations: tuple[str, ...]
    poolings: tuple[str, ...]
    eta: float | None
    exit_layer: int
    C: float
    n_features: float
    val_score: float
    stage: int
    readout: str = "sparse"
    dense_key: str | None = None
    score_se: float | None = None
    block_scores: tuple[float, ...] = field(default=())

    def as_row(self) -> dict:
        row = asdict(self)
        row["representations"], row["poolings"] = "+".join(self.representations), "+".join(self.poolings)
        row["block_scores"] = list(self.block_scores)
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


def candidate_columns(candidate: Candidate, probes: Mapping[str, ProbeResult],
                      dims: Mapping[str, int]) -> dict[str, np.ndarray]:
    """The stored columns a candidate reads, per key (empty when its probes keep no neuron)."""
    if candidate.readout == "dense":
        return {candidate.dense_key: np.arange(dims[candidate.dense_key], dtype=np.int64)}
    columns = kept_columns(probes, candidate.representations, candidate.poolings, candidate.eta, candidate.exit_layer)
    if candidate.readout == "hybrid" and columns:
        columns[candidate.dense_key] = np.arange(dims[candidate.dense_key], dtype=np.int64)
        columns = {key: columns[key] for key in sorted(columns, key=parse_key)}
    return columns


def final_fit_bytes(n_rows: int, n_features: int, n_classes: int) -> int:
    """An upper bound of the bytes one final-classifier fit allocates: its matrix, the training rows, their
    standardised copy and the decision values (float32 or float64), lbfgs' gradients and its ten-step history."""
    rows = 1 if n_classes == 2 else n_classes
    return 8 * n_rows * n_features * 3 + 8 * n_rows * rows * 4 + 8 * rows * (n_features + 1) * 24


def evaluate_candidates(
    candidates: Sequence[Candidate], splits: Sequence[Split], load: Callable[[str, np.ndarray], np.ndarray],
    y: np.ndarray, dims: Mapping[str, int], *, n_jobs: int | None = 1, seed: int = 0,
    class_weight: str | None = None, show_progress_bar: bool = False, desc: str = "search",
) -> list[Evaluation]:
    """Fit every candidate on each split's training rows and predict its validation rows.

    ``load(key, columns)`` gives those columns of every stored row. Candidates that keep no neuron on some split,
    or read exactly the same columns with the same C as an earlier one, are dropped."""
    jobs, seen = [], set()
    for candidate in candidates:
        per_split = [candidate_columns(candidate, split.probes, dims) for split in splits]
        if not all(per_split):
            continue
        signature = (tuple(tuple((k, v.tobytes()) for k, v in cols.items()) for cols in per_split), candidate.C)
        if signature not in seen:
            seen.add(signature)
            jobs.append((candidate, per_split))
    if not jobs:
        return []
    wanted: dict[str, set] = {}
    for _, per_split in jobs:
        for columns in per_split:
            for key, indices in columns.items():
                wanted.setdefault(key, set()).update(indices.tolist())
    n_classes = int(y.max()) + 1
    widest = max(sum(len(v) for v in columns.values()) for _, per_split in jobs for columns in per_split)
    workers = workers_within(final_fit_bytes(len(y), widest, n_classes), min(effective_n_jobs(n_jobs),
                             len(jobs) * len(splits)), shared=4 * len(y) * sum(map(len, wanted.values())),
                             stage=f"{desc}: the candidates' {sum(map(len, wanted.values())):,} columns of "
                                   f"{len(y):,} texts and their fits",
                             knob="search fewer arrays (poolings, representations) or fit on fewer texts")
    cache = {}
    for key in sorted(wanted, key=parse_key):  # one read per key serves every candidate
        held = np.array(sorted(wanted[key]), dtype=np.int64)
        # Held as (columns, rows): a candidate's columns are then contiguous rows, 25x cheaper to gather.
        cache[key] = (held, np.ascontiguousarray(load(key, held).T))

    def run(columns: Mapping[str, np.ndarray], split: Split, C: float) -> tuple[np.ndarray, np.ndarray]:
        # Matrices are built inside the job, so only n_jobs of them exist at once.
        parts = [cache[key][1][np.searchsorted(cache[key][0], indices)] for key, indices in columns.items()]
        X = np.concatenate(parts).T
        model = make_final_classifier(C, seed, class_weight).fit(X[split.train_rows], y[split.train_rows])
        decisions = model.decision_function(X[split.val_rows])
        return model.predict(X[split.val_rows]), decisions.reshape(len(split.val_rows), -1)

    tasks = [(j, s) for j in range(len(jobs)) for s in range(len(splits))]
    # One BLAS thread per fit, also with one worker: these fits are products too small for threaded BLAS, which
    # slows them down (stage-1 fits on full MR 3.9x slower, 2 cores: benchmarks/bench_search_blas.py). Whole fits
    # side by side use the cores instead. catch_warnings is process-wide and not thread-safe: one block here
    # serves every worker.
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)  # a candidate's largest C may stop at max_iter
        # Largest fits first, so that no worker is left with a big one while the others idle at the end.
        order = sorted(range(len(tasks)), key=lambda t: -sum(len(v) for v in jobs[tasks[t][0]][1][tasks[t][1]].values()))
        results = Parallel(n_jobs=workers, prefer="threads", return_as="generator")(
            delayed(run)(jobs[tasks[t][0]][1][tasks[t][1]], splits[tasks[t][1]], jobs[tasks[t][0]][0].C)
            for t in order)
        outputs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for t, result in zip(order, tqdm(results, total=len(tasks), desc=desc, unit="fit",
                                          disable=not show_progress_bar)):
            outputs[tasks[t]] = result
    return [Evaluation(candidate, float(np.mean([sum(len(v) for v in cols.values()) for cols in per_split])),
                       np.concatenate([outputs[j, s][0] for s in range(len(splits))]),
                       np.concatenate([outputs[j, s][1] for s in range(len(splits))]))
            for j, (candidate, per_split) in enumerate(jobs)]


class SelectionRule(Protocol):
    """What ``search`` needs from a selection rule: ``stc.selection.Selector`` is the one implementation."""

    def leader(self, evaluations: Sequence[Evaluation]) -> int: ...
    def choose(self, evaluations: Sequence[Evaluation]) -> int: ...


@dataclass(frozen=True)
class SearchResult:
    """The search's choice, every evaluation, and a way to run its second stage around other leaders (what an
    honest estimate needs: the leaders chosen without a block of held-out rows may differ)."""

    chosen: int
    table: list[Evaluation]
    stage_two: Callable[[Candidate | None, Candidate | None], list[Evaluation]]


def stage_two_candidates(sparse_leader: Candidate | None, dense_leader: Candidate | None,
                         exit_layers: Sequence[int], Cs: Sequence[float]) -> list[Candidate]:
    """Stage 2 around the stage-1 leaders: every exit layer × C of the sparse leader, every other C of the dense
    leader, and every C of the two together (hybrid)."""
    second = []
    if sparse_leader:
        second = [Candidate("sparse", sparse_leader.representations, sparse_leader.poolings, sparse_leader.eta, k, C,
                            2) for k in exit_layers for C in Cs]
    if dense_leader:
        second += [replace(dense_leader, C=C, stage=2) for C in Cs if C != dense_leader.C]
    if sparse_leader and dense_leader:  # the embedding plus the neurons that add most to it
        second += [Candidate("hybrid", sparse_leader.representations, sparse_leader.poolings, sparse_leader.eta,
                             max(sparse_leader.exit_layer, dense_leader.exit_layer), C, 2, dense_leader.dense_key)
                   for C in Cs]
    return second


def search(
    splits: Sequence[Split], load: Callable[[str, np.ndarray], np.ndarray], y: np.ndarray, dims: Mapping[str, int],
    selector: SelectionRule, *, representation_sets: Sequence[tuple[str, ...]],
    pooling_sets: Sequence[tuple[str, ...]],
    etas: Sequence[float], exit_layers: Sequence[int], Cs: Sequence[float], dense_keys: Sequence[str] = (),
    n_jobs: int | None = 1, seed: int = 0, class_weight: str | None = None, show_progress_bar: bool = False,
) -> SearchResult:
    """The two-stage search: the chosen evaluation's index, every evaluation, and its stage 2 as a function.

    The full product (representations × poolings × η × exit layer × C) is thousands of fits, so stage 1 tries
    every representation set × pooling set × η at full depth with one C (and every dense key, when given), then
    stage 2 (``stage_two_candidates``) tries every exit layer × every C for the sparse leader, every C for the dense
    leader, and every C for the two together (hybrid). The selector names the leaders and the final choice among
    every candidate of both stages."""
    # Stage 1 compares feature sets of very different sizes at one C; a weak penalty (large C) would favour the
    # small ones and converge slowest, so it takes the lower middle of the grid (0.1 of the default grid).
    middle_C = sorted(Cs)[(len(Cs) - 1) // 2]
    deepest = max(exit_layers)
    options = dict(n_jobs=n_jobs, seed=seed, class_weight=class_weight, show_progress_bar=show_progress_bar)
    sparse = [Candidate("sparse", r, p, eta, deepest, middle_C, 1)
              for r in representation_sets for p in pooling_sets for eta in etas]
    dense = [Candidate("dense", (representation,), (pooling,), None, layer, middle_C, 1, key)
             for key, (representation, layer, pooling) in zip(dense_keys, map(parse_key, dense_keys))]
    first = evaluate_candidates(sparse, splits, load, y, dims, desc="search stage 1", **options)
    first_dense = evaluate_candidates(dense, splits, load, y, dims, desc="search stage 1 (dense)", **options)
    if not first and not first_dense:
        raise ValueError("every probe kept no neuron at every eta: the labels look unrelated to the activations "
                         "(or the probe C grid is too small)")
    sparse_leader = first[selector.leader(first)].candidate if first else None
    dense_leader = first_dense[selector.leader(first_dense)].candidate if first_dense else None
    second = evaluate_candidates(stage_two_candidates(sparse_leader, dense_leader, exit_layers, Cs), splits, load, y,
                                 dims, desc="search stage 2", **options)
    table = first + first_dense + second
    evaluated = {e.candidate: e for e in second}
    tried: set[Candidate] = set(evaluated)

    def stage_two(sparse: Candidate | None, dense: Candidate | None) -> list[Evaluation]:
        wanted = stage_two_candidates(sparse, dense, exit_layers, Cs)
        missing = [c for c in wanted if c not in tried]
        if missing:
            tried.update(missing)
            evaluated.update((e.candidate, e) for e in evaluate_candidates(
                missing, splits, load, y, dims, desc="estimate: stage 2 around other leaders", **options))
        return [evaluated[c] for c in wanted if c in evaluated]

    return SearchResult(selector.choose(table), table, stage_two)
