"""Cross-layer assembly of the kept neurons, and the evaluation of candidate readouts on held-out rows.

A *candidate* is one way to read the backbone: sparse (the neurons the probes keep at η, over the chosen
representations and poolings, of layers up to an exit layer), dense (every neuron of one layer's pooled hidden
state; the last layer's mean is the sentence-embedding baseline itself) or hybrid (the best dense layer plus the
best sparse neurons: the embedding, told what it misses by named neurons of other layers), and the C of the final
logistic regression (or, a candidate of the search's third stage, an MLP head on the same columns:
``Candidate.head``). ``evaluate_candidates`` fits each candidate on the training rows of every split and predicts that
split's held-out rows; ``CandidateEvaluator`` binds it to a store and its splits. Which candidates are tried, and
which wins, is decided above this module: the two-stage search (``stc.search``) and the selection rule
(``stc.selection``).
"""

from __future__ import annotations

import itertools
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
from ._multilabel import cross_fitted_predictions
from .head import make_final_classifier
from ._ridge import ridge_decisions
from .heads import fit_head_estimator, head_from_pipeline, mlp_possible
from .probe import ProbeResult
from .sparsify import select_neurons

__all__ = ["Candidate", "Configuration", "Evaluation", "Split", "kept_columns", "candidate_columns",
           "feature_names", "make_final_classifier", "final_fit_bytes", "evaluate_candidates", "CandidateEvaluator",
           "StoreColumns", "DEFAULT_FINAL_CS", "READOUT_KINDS"]

#: The final head's C grid (on standardised features). Down to 0.001: a dense readout (every unit of a layer, 384 on
#: MiniLM) with a few hundred texts or fewer scored best at C <= 0.003 on MR; from 0.001 to 1 within 0.5 points on
#: BBC News at 32-128 per class (``benchmarks/bench_embedding_c.py``; ``benchmarks/README.md``, "Few labels").
DEFAULT_FINAL_CS = (0.001, 0.01, 0.1, 1.0, 10.0)
#: Rows x columns of a label-set chain's matrix from which its products run with every core (``evaluate_candidates``).
LARGE_CHAIN = 30_000_000
#: The kinds of readout a candidate (and so a fitted model) is: ``Candidate.kind`` holds one.
READOUT_KINDS = ("sparse", "dense", "hybrid")


@dataclass(frozen=True)
class Candidate:
    """One readout to try, of one ``kind``: sparse (kept neurons at η up to ``exit_layer``), dense (every neuron of
    ``dense_key``) or hybrid (both)."""

    kind: str
    representations: tuple[str, ...]
    poolings: tuple[str, ...]
    eta: float | None
    exit_layer: int
    C: float | None  # the head's inverse penalty: the logistic regression's, or the ridge's (stc.head.ridge_alpha)
    stage: int
    dense_key: str | None = None
    head: str = "linear"  # the head family fitted on the columns: "linear" or "mlp" (stc.heads.HEAD_FAMILIES)


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
    mean_n_features: float  # over splits: the probes of each split keep their own neurons
    predictions: np.ndarray
    decisions: np.ndarray


@dataclass(frozen=True)
class Configuration:
    """One point of the search and its held-out score (a validation score, or a cross-validation mean)."""

    representations: tuple[str, ...]
    poolings: tuple[str, ...]
    eta: float | None
    exit_layer: int
    C: float | None  # None only in models saved before label sets searched the ridge's C (leave-one-out)
    n_features: float
    val_score: float
    stage: int
    kind: str = "sparse"  # the readout kind; saved rows name it "readout" (the file format's field)
    dense_key: str | None = None
    score_se: float | None = None
    block_scores: tuple[float, ...] = field(default=())
    head: str = "linear"

    def as_row(self) -> dict:
        row = asdict(self)
        row["readout"] = row.pop("kind")
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
    if candidate.kind == "dense":
        return {candidate.dense_key: np.arange(dims[candidate.dense_key], dtype=np.int64)}
    columns = kept_columns(probes, candidate.representations, candidate.poolings, candidate.eta, candidate.exit_layer)
    if candidate.kind == "hybrid" and columns:
        columns[candidate.dense_key] = np.arange(dims[candidate.dense_key], dtype=np.int64)
        columns = {key: columns[key] for key in sorted(columns, key=parse_key)}
    return columns


def final_fit_bytes(n_rows: int, n_features: int, n_classes: int, *, multilabel: bool = False) -> int:
    """An upper bound of the bytes one final-classifier fit allocates: its matrix, the training rows, their
    standardised copy and the decision values (float32 or float64), lbfgs' gradients and its ten-step history;
    for a multi-label (ridge) fit, the centred rows, the Gram matrix of the rows or of the features (the smaller)
    and its factorised copy, and per label the +-1 targets, dual or primal coefficients and decision values."""
    if multilabel:
        small = min(n_rows, n_features)
        return 8 * n_rows * n_features * 3 + 8 * small * small * 2 + 8 * n_rows * n_classes * 4
    rows = 1 if n_classes == 2 else n_classes
    return 8 * n_rows * n_features * 3 + 8 * n_rows * rows * 4 + 8 * rows * (n_features + 1) * 24


def _distinct_jobs(candidates: Sequence[Candidate], splits: Sequence[Split],
                   dims: Mapping[str, int]) -> list[tuple[Candidate, list[dict[str, np.ndarray]]]]:
    """(candidate, its columns on each split) of the candidates that keep a neuron on every split, leaving out any
    that reads exactly the same columns with the same C and head as an earlier one."""
    jobs, seen, columns_of = [], set(), {}
    for candidate in candidates:
        readout = replace(candidate, C=None, stage=0, head="linear")  # what its columns depend on
        if readout not in columns_of:  # the same readout at several Cs: its columns found once
            columns_of[readout] = [candidate_columns(candidate, split.probes, dims) for split in splits]
        per_split = columns_of[readout]
        if not all(per_split):
            continue
        signature = (tuple(tuple((k, v.tobytes()) for k, v in cols.items()) for cols in per_split), candidate.C,
                     candidate.head)
        if signature not in seen:
            seen.add(signature)
            jobs.append((candidate, per_split))
    return jobs


def _nested_chains(jobs: Sequence[tuple[Candidate, list[dict[str, np.ndarray]]]],
                   s: int) -> list[tuple[list[tuple[str, int]], list[tuple[int, int]]]]:
    """The jobs' columns on split ``s`` in chains of nested sets (``stc._ridge``): per chain, its columns (key,
    index) ordered so that each set of the chain is a prefix, and per job of it (job index, prefix length). Jobs that
    read the same columns (at other Cs) share a prefix; a set joins the first chain whose narrowest set holds it."""
    sets: dict[tuple, tuple[set, list[int]]] = {}
    for j, (_, per_split) in enumerate(jobs):
        columns = per_split[s]
        signature = tuple((key, indices.tobytes()) for key, indices in columns.items())
        if signature not in sets:
            sets[signature] = ({(key, int(i)) for key, indices in columns.items() for i in indices}, [])
        sets[signature][1].append(j)
    chains: list[list[tuple[set, list[int]]]] = []
    for member in sorted(sets.values(), key=lambda item: -len(item[0])):
        chain = next((chain for chain in chains if member[0] <= chain[-1][0]), None)
        if chain is None:
            chains.append([member])
        else:
            chain.append(member)
    out = []
    for chain in chains:
        order, placed = [], set()
        for column_set, _ in reversed(chain):  # the narrowest set first, then what each wider one adds
            order += sorted(column_set - placed, key=lambda column: (parse_key(column[0]), column[1]))
            placed |= column_set
        out.append((order, [(j, len(column_set)) for column_set, members in chain for j in members]))
    return out


def _wanted_columns(jobs: Sequence[tuple[Candidate, list[dict[str, np.ndarray]]]]) -> dict[str, np.ndarray]:
    """Per key (in key order), every column some job reads on some split, sorted."""
    wanted: dict[str, set] = {}
    for _, per_split in jobs:
        for columns in per_split:
            for key, indices in columns.items():
                wanted.setdefault(key, set()).update(indices.tolist())
    return {key: np.array(sorted(wanted[key]), dtype=np.int64) for key in sorted(wanted, key=parse_key)}


def _run_tasks(tasks: list[tuple[int, tuple]], workers: int, multilabel: bool, desc: str,
               show_progress_bar: bool) -> dict[tuple[int, int], tuple[np.ndarray | None, np.ndarray]]:
    """Run ``evaluate_candidates``' tasks ((size, joblib delayed call) pairs): ((job, split), (predicted codes or
    None, decisions)) of each of their fits."""
    # Largest fits first, so that no worker is left with a big one while the others idle at the end.
    tasks.sort(key=lambda task: -task[0])
    # A label-set chain whose matrix holds LARGE_CHAIN values or more is one of a few big products (all of films:
    # 8,000 rows x 13,000 columns): those run one at a time with every worker's core in BLAS, where side by side the
    # last of them left the other core idle (a quarter of a 31-minute search). Everything else runs side by side,
    # one BLAS thread per fit, also with one worker: these fits are products too small for threaded BLAS, which
    # slows them down (stage-1 fits on full MR 3.9x slower, 2 cores: benchmarks/bench_search_blas.py).
    large = [task for size, task in tasks if multilabel and size >= LARGE_CHAIN]
    rest = [task for size, task in tasks if not (multilabel and size >= LARGE_CHAIN)]

    def results():
        for function, args, kwargs in large:
            with threadpool_limits(limits=workers, user_api="blas"):
                yield function(*args, **kwargs)
        with threadpool_limits(limits=1, user_api="blas"):
            yield from Parallel(n_jobs=workers, prefer="threads", return_as="generator")(rest)

    # catch_warnings is process-wide and not thread-safe: one block here serves every worker.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a candidate's largest C may stop at max_iter
        # Folds of a few texts per class hold more classes than half their rows: expected, not a regression target.
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        outputs = {}
        for result in tqdm(results(), total=len(tasks), desc=desc, unit="fit", disable=not show_progress_bar):
            outputs.update(result)  # ((job, split), (predicted codes or None, decisions)) of each fit of a task
    return outputs


def evaluate_candidates(
    candidates: Sequence[Candidate], splits: Sequence[Split], load: Callable[[str, np.ndarray], np.ndarray],
    y: np.ndarray, dims: Mapping[str, int], *, n_jobs: int | None = 1, seed: int = 0,
    class_weight: str | None = None, show_progress_bar: bool = False, desc: str = "search",
    blocks: Sequence[np.ndarray] | None = None,
) -> list[Evaluation]:
    """Fit every candidate on each split's training rows and predict its validation rows.

    ``load(key, columns)`` gives those columns of every stored row. Candidates that keep no neuron on some split,
    or read exactly the same columns with the same C as an earlier one, are dropped. ``y`` holds class codes, or
    is a multi-label indicator matrix: then the predictions are each label's decision thresholded by
    ``stc._multilabel.cross_fitted_predictions`` over ``blocks`` (positions in the held-out rows, in split order),
    so that no block is scored with a threshold chosen on it; their candidates are fitted in chains of nested column
    sets, one Gram matrix per chain and split (``_nested_chains``, ``stc._ridge``), each candidate's decisions still
    those of a head fitted on its own columns. MLP-head candidates are dropped too where ``stc.heads.mlp_possible``
    says the training rows are too few (and for multi-label ``y``)."""
    multilabel = y.ndim == 2
    if not mlp_possible(y, [split.train_rows for split in splits]):
        candidates = [candidate for candidate in candidates if candidate.head != "mlp"]
    jobs = _distinct_jobs(candidates, splits, dims)
    if not jobs:
        return []
    wanted = _wanted_columns(jobs)
    n_classes = y.shape[1] if multilabel else int(y.max()) + 1
    widest = max(sum(len(v) for v in columns.values()) for _, per_split in jobs for columns in per_split)
    workers = workers_within(final_fit_bytes(len(y), widest, n_classes, multilabel=multilabel),
                             min(effective_n_jobs(n_jobs),
                             len(jobs) * len(splits)), shared=4 * len(y) * sum(map(len, wanted.values())),
                             stage=f"{desc}: the candidates' {sum(map(len, wanted.values())):,} columns of "
                                   f"{len(y):,} texts and their fits",
                             knob="search fewer arrays (poolings, representations) or fit on fewer texts")
    # One read per key serves every candidate. Held as (columns, rows): a candidate's columns are then contiguous
    # rows, 25x cheaper to gather.
    cache = {key: (held, np.ascontiguousarray(load(key, held).T)) for key, held in wanted.items()}

    def gather(columns: list[tuple[str, np.ndarray]]) -> np.ndarray:
        """The (rows, columns) matrix of these (key, indices) blocks, built inside a job, so that only n_jobs of
        them exist at once."""
        return np.concatenate([cache[key][1][np.searchsorted(cache[key][0], indices)]
                               for key, indices in columns]).T

    def run_one(j: int, s: int) -> list[tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]]]:
        candidate, split = jobs[j][0], splits[s]
        X = gather(list(jobs[j][1][s].items()))
        model = fit_head_estimator(candidate.head, candidate.C, seed, class_weight, X[split.train_rows],
                                   y[split.train_rows])
        # held-out rows through the head a fitted model would hold: the same arithmetic as predict_proba
        head, held_out = head_from_pipeline(model, model.classes_), X[split.val_rows]
        return [((j, s), (head.labels(held_out), head.decision(held_out).reshape(len(split.val_rows), -1)))]

    def run_chain(order: list[tuple[str, int]], members: list[tuple[int, int]],
                  s: int) -> list[tuple[tuple[int, int], tuple[None, np.ndarray]]]:
        # every C and nested set of columns of the chain from one Gram matrix (stc._ridge), each member's held-out
        # decisions those of the head a fit of its columns would hold (ridge_decisions; tests/test_ridge.py)
        split = splits[s]
        blocks = [(key, np.array([index for _, index in run], dtype=np.int64))
                  for key, run in itertools.groupby(order, key=lambda column: column[0])]
        X = gather(blocks)
        decisions = ridge_decisions(X[split.train_rows], y[split.train_rows], X[split.val_rows],
                                    [(m, jobs[j][0].C) for j, m in members])
        return [((j, s), (None, decision)) for (j, _), decision in zip(members, decisions)]

    if multilabel:
        tasks = [(len(y) * len(order), delayed(run_chain)(order, members, s))
                 for s in range(len(splits)) for order, members in _nested_chains(jobs, s)]
    else:
        tasks = [(sum(len(v) for v in jobs[j][1][s].values()), delayed(run_one)(j, s))
                 for j in range(len(jobs)) for s in range(len(splits))]
    outputs = _run_tasks(tasks, workers, multilabel, desc, show_progress_bar)
    y_eval = np.concatenate([y[split.val_rows] for split in splits])
    evaluations = []
    for j, (candidate, per_split) in enumerate(jobs):
        decisions = np.concatenate([outputs[j, s][1] for s in range(len(splits))])
        predictions = (cross_fitted_predictions(decisions, y_eval, blocks or [np.arange(len(y_eval))]) if multilabel
                       else np.concatenate([outputs[j, s][0] for s in range(len(splits))]))
        evaluations.append(Evaluation(candidate, float(np.mean([sum(len(v) for v in cols.values())
                                                                for cols in per_split])), predictions, decisions))
    return evaluations


class StoreColumns(Protocol):
    """What the evaluation reads from an activation store (``stc.store.ActivationStore`` has it)."""

    def load(self, key: str, columns: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class CandidateEvaluator:
    """``evaluate_candidates`` bound to a store, its splits and its labels: called with candidates (and a progress
    bar's name), it gives their evaluations, as the search asks for them stage by stage."""

    splits: Sequence[Split]
    store: StoreColumns
    y: np.ndarray
    dims: Mapping[str, int]
    n_jobs: int | None = 1
    seed: int | None = 0
    class_weight: str | None = None
    show_progress_bar: bool = False
    blocks: Sequence[np.ndarray] | None = None  # multi-label: the held-out blocks thresholds are cross-fitted over

    def __call__(self, candidates: Sequence[Candidate], desc: str = "search") -> list[Evaluation]:
        return evaluate_candidates(candidates, self.splits, self.load, self.y, self.dims, n_jobs=self.n_jobs,
                                   seed=self.seed, class_weight=self.class_weight,
                                   show_progress_bar=self.show_progress_bar, desc=desc, blocks=self.blocks)

    def load(self, key: str, columns: np.ndarray) -> np.ndarray:
        """Those columns of every stored row."""
        return self.store.load(key, columns=columns)
