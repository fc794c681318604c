"""The two ways a fit chooses its setting, behind one interface: one validation split (``OneSplit``) or k folds
(``KFolds``); ``make_protocol`` picks one from the estimator's ``cv``.

A protocol works on row indices of the pool: the store's rows, in order (the training texts, then any given
validation texts). It says which rows train and which are held out, fits the probes for its splits, makes the
selection rule that scores candidates on the held-out rows (``stc.selection.Selector``), runs the two-stage search
and its estimate (``stc.search.TwoStageSearch``), and gives the rows and the probes the final model is fitted from,
with the records a fitted model keeps (``validation_``, ``selection_``). ``Protocol.run`` does all of it.

* ``OneSplit``: the probes' C and every choice on the validation rows; the final model is trained on the training
  rows with those probes. ``cv=None`` is the paper's protocol: the best validation score, sparse readouts only.
  ``cv="auto"`` above ``stc.folds.AUTO_CV_LIMIT`` texts is also one split, but keeps the one-standard-error
  rule (over 5 blocks of the validation rows) and the dense and hybrid readouts.
* ``KFolds``: the probes refitted inside each fold (the folds of several seeded partitions when ``cv_repeats``
  asks for them: ``stc.folds.resolve_repeats``); each probe's C by its mean over the folds; the one-standard-error
  rule over the folds. The final model's probes are refitted on every text, each with its chosen C (their
  reported scores are the cross-validation means), and the final classifier is trained on every text.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .aggregate import READOUT_KINDS, CandidateEvaluator, Configuration, Evaluation, Split
from .folds import estimate_blocks, make_repeated_folds, resolve_cv, resolve_repeats, split_rows
from .heads import DEFAULT_MLP_CS
from .probe import ProbeResult, fit_probe_paths, fit_probes
from .search import SearchSpace, TwoStageSearch
from .selection import Selector, configuration_rows, with_sampling_floor

__all__ = ["PhaseTimer", "FitOptions", "ProtocolResult", "Protocol", "OneSplit", "KFolds", "make_protocol",
           "searched_kinds"]


class PhaseTimer:
    """A fit's seconds by phase: each ``lap`` records the time since the previous one."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.phases: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        self.phases[phase] = time.perf_counter() - self.started - sum(self.phases.values())

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


@dataclass(frozen=True)
class FitOptions:
    """The estimator's settings that reach the probes and the search's fits."""

    metric: str = "accuracy"
    probe_Cs: Sequence[float] | None = None
    probe_solver: str = "auto"
    n_jobs: int | None = 1
    seed: int | None = 0
    class_weight: str | None = None
    show_progress_bar: bool = False

    def probe_options(self) -> dict:
        """Keyword arguments of ``stc.probe.fit_probe_paths``."""
        return dict(Cs=self.probe_Cs, metric=self.metric, solver=self.probe_solver, n_jobs=self.n_jobs,
                    seed=self.seed, class_weight=self.class_weight, show_progress_bar=self.show_progress_bar)

    def evaluator(self, splits: Sequence[Split], store, y: np.ndarray, dims: Mapping[str, int],
                  blocks: Sequence[np.ndarray] | None = None) -> CandidateEvaluator:
        return CandidateEvaluator(splits, store, y, dims, n_jobs=self.n_jobs, seed=self.seed,
                                  class_weight=self.class_weight, show_progress_bar=self.show_progress_bar,
                                  blocks=blocks)


@dataclass(frozen=True)
class ProtocolResult:
    """What a protocol chose, and what the final model is fitted from."""

    configurations: list[Configuration]  # every candidate scored, with its ranking score: search_results_
    chosen: int  # the chosen candidate's index among them
    evaluation: Evaluation  # its held-out predictions and decision values
    y_eval: np.ndarray  # the held-out labels, in the evaluation's order
    expected: tuple[float, float]  # the expected test score and its standard error
    probes: dict[str, ProbeResult]  # the final model's probes
    fit_rows: np.ndarray  # the rows the final classifier is fitted on
    validation: dict  # validation_
    selection: dict  # selection_

    @property
    def configuration(self) -> Configuration:
        return self.configurations[self.chosen]


class Protocol(ABC):
    """What both protocols share: ``run``. A protocol fills in the rows (``rows``, ``held_out``, ``fit_rows``), the
    probes (``fit_splits``, ``final_probes``) and its record (``validation_record``); ``rule`` is the selection rule
    ("one_se" or "best") and ``kinds`` the readout kinds the search builds. Rows are indices of ``codes``, the
    pool's class codes: row i of the store is the text labelled ``codes[i]`` (for multi-label data ``codes`` is the
    (n_texts, n_labels) indicator matrix, and the folds, splits and blocks are iteratively stratified)."""

    name = ""  # selection_["protocol"]
    folds: int | None = None
    repeats = 1  # how many seeded partitions into the folds (stc.folds.resolve_repeats)
    probe_phase = "probes"  # fit_timings_'s name of the probe fits
    refit_phase: str | None = None  # and of refitting them for the final model, where they are

    def __init__(self, codes: np.ndarray, *, seed: int | None, rule: str, given: bool, kinds: Sequence[str],
                 floor: bool = False):
        if rule not in ("one_se", "best"):
            raise ValueError(f"rule must be 'one_se' or 'best', got {rule!r}")
        self.codes, self.seed, self.rule, self.given, self.kinds = codes, seed, rule, given, tuple(kinds)
        self.floor = floor  # the embedding floor (stc.selection.embedding_floor) after the rule's choice

    def mlp_Cs(self, wanted: bool) -> tuple[float, ...]:
        """The Cs of the MLP heads the search's third stage tries (``stc.heads.DEFAULT_MLP_CS``): none unless
        ``wanted``, and none for label sets or under the "best" rule, which could not refuse an MLP that wins by
        noise."""
        return DEFAULT_MLP_CS if wanted and self.rule == "one_se" and self.codes.ndim == 1 else ()

    @property
    @abstractmethod
    def rows(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(training rows, held-out rows) of each split: the split, or each fold."""

    @property
    @abstractmethod
    def fit_rows(self) -> np.ndarray:
        """The rows the final classifier is fitted on."""

    @abstractmethod
    def held_out(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """(labels of the held-out rows in evaluation order, the blocks the estimate leaves out one by one)."""

    @abstractmethod
    def fit_splits(self, store, keys: Sequence[str], options: FitOptions) -> list[Split]:
        """Each split's rows with the probes fitted on its training rows."""

    @abstractmethod
    def final_probes(self, store, keys: Sequence[str], options: FitOptions,
                     splits: Sequence[Split]) -> dict[str, ProbeResult]:
        """The final model's probes."""

    @abstractmethod
    def validation_record(self) -> dict:
        """``validation_``: given, n_train, n_val, cv."""

    def run(self, store, keys: Sequence[str], space: SearchSpace, options: FitOptions, classes: np.ndarray,
            timer: PhaseTimer) -> ProtocolResult:
        """Probes, search, final probes and estimate on ``store`` (row i labelled ``codes[i]``), reading ``keys``."""
        splits = self.fit_splits(store, keys, options)
        timer.lap(self.probe_phase)
        y_eval, blocks = self.held_out()
        selector = Selector(y_eval, blocks, options.metric, self.rule, self.repeats)
        search = TwoStageSearch(space, options.evaluator(splits, store, self.codes, {k: store.dim(k) for k in keys},
                                                         blocks), selector)
        outcome = search.run()
        timer.lap("search")
        probes = self.final_probes(store, keys, options, splits)
        if self.refit_phase:
            timer.lap(self.refit_phase)
        expected = search.expected_score()
        test = search.floor() if self.floor else None
        floor = test.embedding if test is not None and test.holds else None
        if floor is not None:  # the embedding readout: the neurons did not beat it beyond noise
            outcome = replace(outcome, chosen=floor)
            expected = search.block_estimate(floor)
        if self.codes.ndim == 1:  # no fewer texts' error than the binomial one (label sets: see the function)
            expected = with_sampling_floor(expected, len(y_eval) // self.repeats)
        timer.lap("estimate")
        if self.codes.ndim == 2:  # multi-label: labels no held-out text carries
            unscored = np.flatnonzero((self.codes.sum(axis=0) > 0) & (y_eval.sum(axis=0) == 0))
        else:
            unscored = np.setdiff1d(np.unique(self.codes), np.unique(y_eval))
        selection = {"protocol": self.name, "folds": self.folds, "repeats": self.repeats, "rule": self.rule,
                     "floor": None if floor is None else outcome.table[floor].candidate.dense_key,
                     # the search's choice minus the embedding readout, per block (honest scores): mean and se
                     "floor_margin": None if test is None else [test.margin, test.margin_se],
                     "n_blocks": len(blocks),
                     "n_candidates": len(outcome.table), "n_held_out": len(y_eval),
                     "unscored_classes": np.asarray(classes)[unscored].tolist()}
        return ProtocolResult(configuration_rows(selector, outcome.table), outcome.chosen, outcome.best, y_eval,
                              expected, probes, self.fit_rows, self.validation_record(), selection)


class OneSplit(Protocol):
    """Train rows and validation rows: the probes' C and every choice on the latter; the final model trained on
    the former with the same probes."""

    name = "split"

    def __init__(self, codes: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray, **settings):
        super().__init__(codes, **settings)
        self.train_rows, self.val_rows = train_rows, val_rows

    @property
    def rows(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self.train_rows, self.val_rows)]

    @property
    def fit_rows(self) -> np.ndarray:
        return self.train_rows

    def held_out(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """The validation rows; the blocks are ``stc.folds.estimate_blocks`` of them."""
        y_eval = self.codes[self.val_rows]
        return y_eval, estimate_blocks(y_eval, self.seed)

    def fit_splits(self, store, keys: Sequence[str], options: FitOptions) -> list[Split]:
        probes = fit_probes(store, keys, self.codes, self.train_rows, self.val_rows, **options.probe_options())
        return [Split(self.train_rows, self.val_rows, probes)]

    def final_probes(self, store, keys: Sequence[str], options: FitOptions,
                     splits: Sequence[Split]) -> dict[str, ProbeResult]:
        return dict(splits[0].probes)

    def validation_record(self) -> dict:
        return {"given": self.given, "n_train": len(self.train_rows), "n_val": len(self.val_rows), "cv": None}


class KFolds(Protocol):
    """Stratified, seeded folds over every row (``stc.folds.make_folds``), over ``repeats`` seeded partitions
    (``stc.folds.make_repeated_folds``): probes refitted in each fold, the final model (probes and classifier)
    refitted on every row."""

    name = "cv"
    probe_phase = "fold probes"
    refit_phase = "final probes"

    def __init__(self, codes: np.ndarray, folds: int, repeats: int = 1, **settings):
        super().__init__(codes, **settings)
        self.folds, self.repeats = folds, repeats
        self.fold_rows = make_repeated_folds(codes, folds, self.seed, repeats)

    @property
    def rows(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.fold_rows

    @property
    def fit_rows(self) -> np.ndarray:
        return np.arange(len(self.codes))

    def held_out(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Every fold's held-out rows, fold after fold (partition after partition); the blocks are the folds."""
        y_eval = np.concatenate([self.codes[val] for _, val in self.fold_rows])
        edges = np.cumsum([0] + [len(val) for _, val in self.fold_rows])
        return y_eval, [np.arange(edges[i], edges[i + 1]) for i in range(len(self.fold_rows))]

    def fit_splits(self, store, keys: Sequence[str], options: FitOptions) -> list[Split]:
        """Probe paths in every fold; each probe at the C of its grid with the best mean over the folds."""
        fold_paths = [fit_probe_paths(store, keys, self.codes, train, val,
                                      desc=f"probes, fold {i}/{len(self.fold_rows)}", **options.probe_options())
                      for i, (train, val) in enumerate(self.fold_rows, 1)]
        # Each probe's C is a setting like any other: the grid point with the best mean over folds.
        index = {key: int(np.argmax(_mean_over_folds([paths[key].val_scores for paths in fold_paths])))
                 for key in keys}
        return [Split(train, val, {key: paths[key].at(index[key]) for key in keys})
                for (train, val), paths in zip(self.fold_rows, fold_paths)]

    def final_probes(self, store, keys: Sequence[str], options: FitOptions,
                     splits: Sequence[Split]) -> dict[str, ProbeResult]:
        """Every probe refitted on every row at the C the folds chose, reporting its cross-validated scores. Each
        path stops at that C: the larger ones, the costliest to solve, would be thrown away."""
        means = {key: _mean_over_folds([split.probes[key].scores_by_C for split in splits]) for key in keys}
        index = {key: int(np.argmax(means[key])) for key in keys}
        final_paths = fit_probe_paths(store, keys, self.codes, self.fit_rows, np.arange(0), desc="probes, all texts",
                                      last_C_index=index, **options.probe_options())
        return {key: replace(final_paths[key].at(index[key]), val_score=float(means[key][index[key]]),
                             scores_by_C=[float(m) for m in means[key]])
                for key in keys}

    def validation_record(self) -> dict:
        return {"given": self.given, "n_train": len(self.codes), "n_val": 0, "cv": self.folds}


def _mean_over_folds(scores_by_C: Sequence[Sequence[float]]) -> np.ndarray:
    """A probe's held-out score at each C of its grid, averaged over the folds."""
    return np.mean(scores_by_C, axis=0)


def searched_kinds(readout_kinds: Sequence[str], representations: Sequence[str], *, paper: bool) -> tuple[str, ...]:
    """The readout kinds the search builds: ``readout_kinds`` but for dense and hybrid ones with the paper's
    protocol (``cv=None``) or without a hidden state to read; a ValueError when that leaves none."""
    dense_possible = not paper and "hidden" in representations
    kinds = tuple(kind for kind in readout_kinds if kind == "sparse" or dense_possible)
    if not kinds:
        why = ("cv=None (the paper's protocol) searches sparse readouts only" if paper else
               f"dense and hybrid readouts read a hidden state, and representations={tuple(representations)!r} "
               f"holds none")
        raise ValueError(f"readout_kinds={tuple(readout_kinds)!r} leaves nothing to search: {why}; add 'sparse'")
    return kinds


def make_protocol(codes: np.ndarray, classes: np.ndarray, validation_rows: np.ndarray | None = None, *, cv,
                  cv_repeats: int | str = 1, validation_size: float = 0.2, seed: int | None = 0, rule: str = "auto",
                  readout_kinds: Sequence[str] = READOUT_KINDS,
                  representations: Sequence[str] = ("hidden", "ffn")) -> Protocol:
    """The protocol ``cv`` means for a pool labelled ``codes`` (see ``stc.folds.resolve_cv``), with any given
    validation rows (they join the folds, or are the split's validation rows; else a seeded stratified split of
    ``validation_size``), the folds repeated over ``cv_repeats`` partitions (``stc.folds.resolve_repeats``).
    ``rule`` "auto" is the one-standard-error rule and the embedding floor, but with
    ``cv=None`` the best score (the paper's protocol); "one_se" is the rule without the floor."""
    settings = dict(seed=seed, given=validation_rows is not None,
                    kinds=searched_kinds(readout_kinds, representations, paper=cv is None),
                    floor=rule == "auto" and cv is not None)
    folds = resolve_cv(cv, codes, classes)
    repeats = resolve_repeats(cv_repeats, codes, folds)
    if folds is not None:
        return KFolds(codes, folds, repeats, rule="one_se" if rule == "auto" else rule, **settings)
    if validation_rows is None:
        train_rows, val_rows = split_rows(codes, validation_size, seed)
    else:
        val_rows = np.asarray(validation_rows)
        train_rows = np.setdiff1d(np.arange(len(codes)), val_rows)
    rule = ("best" if cv is None else "one_se") if rule == "auto" else rule
    return OneSplit(codes, train_rows, val_rows, rule=rule, **settings)
