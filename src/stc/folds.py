"""Which rows are held out: the folds (``make_folds``, repeated: ``make_repeated_folds``), one validation split
(``split_rows``) and the blocks of validation rows the estimate leaves out (``estimate_blocks``); how many folds and
partitions a fit's ``cv`` and ``cv_repeats`` mean (``resolve_cv``, ``resolve_repeats``). Why these numbers: the
module docstring of ``stc.selection``, which applies them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from ._stratify import iterative_stratification

__all__ = ["AUTO_CV_LIMIT", "DEFAULT_FOLDS", "FEWER_FOLDS_FROM", "LARGE_DATA_FOLDS", "ESTIMATE_BLOCKS",
           "REPEATED_CV_BELOW", "MAX_REPEATS", "resolve_cv", "resolve_repeats", "make_folds", "make_repeated_folds",
           "split_rows", "estimate_blocks", "unscored_classes"]

AUTO_CV_LIMIT = 20_000
DEFAULT_FOLDS = 5
FEWER_FOLDS_FROM = 5_000
LARGE_DATA_FOLDS = 3
ESTIMATE_BLOCKS = 5
#: ``cv_repeats="auto"`` repeats the folds below this many texts, so that every candidate is scored on about this many
#: held-out predictions (``resolve_repeats``).
REPEATED_CV_BELOW = 200
MAX_REPEATS = 5


def resolve_cv(cv, codes: np.ndarray, classes: np.ndarray) -> int | None:
    """The number of folds ``cv`` means for these labels (None: one validation split); refuses impossible values.

    Rare classes never change it (see ``make_folds`` for how their texts are placed): ``"auto"`` gives one split
    only above ``AUTO_CV_LIMIT`` texts. Multi-label ``codes`` (an indicator matrix) need as many texts as folds."""
    if cv is None:
        return None
    if codes.ndim == 2:
        return _multilabel_folds(cv, len(codes))
    counts = np.bincount(codes, minlength=len(classes))
    # Every fold holds out at least one text of a class with 2 or more (never a class's only text), and
    # StratifiedKFold needs one class with at least k texts.
    most_folds = int(min(counts[counts >= 2].sum(), counts.max()))
    if isinstance(cv, str):
        if cv != "auto":
            raise ValueError(f"cv must be 'auto', None or an integer >= 2, got {cv!r}")
        if len(codes) > AUTO_CV_LIMIT:
            return None
        folds = DEFAULT_FOLDS if len(codes) < FEWER_FOLDS_FROM else LARGE_DATA_FOLDS
        return int(min(folds, most_folds)) if most_folds >= 2 else None
    elif isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ValueError(f"cv must be 'auto', None or an integer >= 2, got {cv!r}")
    if most_folds < cv:
        largest = classes[int(counts.argmax())].item()
        raise ValueError(f"cv={int(cv)} folds need a class with at least {int(cv)} texts, but the largest, "
                         f"{largest!r}, has {int(counts.max())}: pass a smaller cv (>= 2), or cv=None to choose on "
                         f"one validation split")
    return int(cv)


def resolve_repeats(cv_repeats, codes: np.ndarray, folds: int | None) -> int:
    """How many seeded partitions into ``folds`` folds ``cv_repeats`` means for these labels; refuses repeats
    without folds or for label sets (their thresholds are cross-fitted over blocks that hold each text once).

    ``"auto"``: 1 from ``REPEATED_CV_BELOW`` texts, without folds, and for label sets; else enough repeats that
    every candidate is scored on about that many held-out predictions, at most ``MAX_REPEATS`` (16 texts: 5
    repeats, 64: 4, 128: 2).

    Why one might: with a few dozen texts a fold holds a handful of them, so one text moves a fold's score by 5-20
    points and which texts share a fold decides the ranking as much as the candidates do. Averaging over several seeded
    partitions (repeated stratified k-fold: Kim 2009, Comput. Stat. Data Anal. 53; Kohavi 1995) removes that part
    of the noise; it cannot remove the noise of having few texts, so the standard errors stay those of one
    partition (see ``stc.selection.Selector``). The cost is one more set of fold fits per repeat and as many
    replays of the search for the estimate: about 10x the fit time at 5 repeats, measured (MR and BBC News, 8 and
    32 texts per class) with no gain in test score, which is why ``STCClassifier``'s default is 1."""
    if cv_repeats != "auto":
        if isinstance(cv_repeats, bool) or not isinstance(cv_repeats, (int, np.integer)) or cv_repeats < 1:
            raise ValueError(f"cv_repeats must be 'auto' or a positive integer, got {cv_repeats!r}")
        if cv_repeats > 1 and folds is None:
            raise ValueError(f"cv_repeats={int(cv_repeats)} repeats cross-validation folds, but this fit chooses on "
                             f"one validation split (cv=None, or cv='auto' above {AUTO_CV_LIMIT:,} texts): pass "
                             f"cv_repeats=1, or an integer cv")
        if cv_repeats > 1 and codes.ndim == 2:
            raise ValueError(f"cv_repeats={int(cv_repeats)}: label sets are cross-validated once (each label's "
                             f"threshold is cross-fitted over folds that hold each text once): pass cv_repeats=1")
        return int(cv_repeats)
    if folds is None or codes.ndim == 2 or len(codes) >= REPEATED_CV_BELOW:
        return 1
    return int(min(MAX_REPEATS, math.ceil(REPEATED_CV_BELOW / max(len(codes), 1))))


def _multilabel_folds(cv, n_texts: int) -> int | None:
    if isinstance(cv, str):
        if cv != "auto":
            raise ValueError(f"cv must be 'auto', None or an integer >= 2, got {cv!r}")
        if n_texts > AUTO_CV_LIMIT:
            return None
        return int(min(DEFAULT_FOLDS if n_texts < FEWER_FOLDS_FROM else LARGE_DATA_FOLDS, n_texts))
    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ValueError(f"cv must be 'auto', None or an integer >= 2, got {cv!r}")
    if cv > n_texts:
        raise ValueError(f"cv={int(cv)} folds need at least {int(cv)} texts, there are {n_texts}")
    return int(cv)


def _iterative_parts(Y: np.ndarray, k: int, seed: int | None) -> list[np.ndarray]:
    """Rows of k parts of a multi-label pool, each label's share kept in each (iterative stratification)."""
    part_of = iterative_stratification(Y, [1.0 / k] * k, 0 if seed is None else seed)
    return [np.flatnonzero(part_of == part) for part in range(k)]


def unscored_classes(codes: np.ndarray) -> np.ndarray:
    """Codes of the classes too rare to be scored by cross-validation: those with a single text."""
    return np.flatnonzero(np.bincount(codes) == 1)


def make_folds(codes: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled, seeded (train rows, validation rows) of k folds: the same for the same labels.

    Rare classes: a class with fewer texts than folds (but at least 2) has each of its texts held out in a
    different fold, so every fold still trains on one of them at least; a class with a single text is in the
    training rows of every fold and held out in none (``unscored_classes``): scored, it would be a class its fold
    never saw. Without such classes the folds are exactly scikit-learn's ``StratifiedKFold``. Multi-label
    ``codes`` (an indicator matrix) are split by iterative stratification (Sechidis et al. 2011, ``stc._stratify``)."""
    rows = np.arange(len(codes))
    if codes.ndim == 2:
        parts = _iterative_parts(codes, k, seed)
        return [(np.setdiff1d(rows, part), part) for part in parts]
    single = np.isin(codes, unscored_classes(codes))
    scored, always_trained = rows[~single], rows[single]
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # fewer members than folds is this rule's case, not a mistake
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        split = list(folds.split(np.zeros(len(scored)), codes[scored]))
    return [(np.sort(np.concatenate([scored[train], always_trained])), np.sort(scored[val])) for train, val in split]


def make_repeated_folds(codes: np.ndarray, k: int, seed: int | None,
                        repeats: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """``repeats`` sets of ``make_folds``' k folds, repeat after repeat, each partition seeded by ``seed + r`` (the
    first is ``make_folds(codes, k, seed)`` itself)."""
    return [fold for r in range(repeats) for fold in make_folds(codes, k, None if seed is None else seed + r)]


def split_rows(codes: np.ndarray, validation_size: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of one seeded, stratified validation split: ``validation_size`` of the rows
    held out, a class of a single text kept in training (it cannot be on both sides)."""
    if not isinstance(validation_size, float) or not 0.0 < validation_size < 1.0:
        raise ValueError(f"validation_size must be a float in (0, 1), got {validation_size!r}")
    if codes.ndim == 2:  # multi-label: iterative stratification
        part_of = iterative_stratification(codes, (1.0 - validation_size, validation_size), 0 if seed is None else seed)
        train_rows, val_rows = np.flatnonzero(part_of == 0), np.flatnonzero(part_of == 1)
        if not len(train_rows) or not len(val_rows):
            raise ValueError(f"a validation split of {validation_size:.0%} of {len(codes)} texts leaves one side "
                             f"empty: pass a larger validation_size, or X_val, y_val")
        return train_rows, val_rows
    counts = np.bincount(codes)
    single = counts[codes] == 1
    rows = np.flatnonzero(~single)
    n_val = int(np.ceil(validation_size * len(rows)))
    n_split_classes = int(np.count_nonzero(counts >= 2))
    if n_split_classes < 1 or n_val < n_split_classes or len(rows) - n_val < n_split_classes:
        raise ValueError(f"a stratified validation split of {validation_size:.0%} of {len(codes)} texts needs one "
                         f"text of each of its {n_split_classes} classes with 2 or more texts on each side; "
                         f"{len(rows)} texts are too few (pass a larger validation_size, or X_val, y_val)")
    train_rows, val_rows = train_test_split(rows, test_size=validation_size, stratify=codes[rows], random_state=seed)
    return np.concatenate([train_rows, np.flatnonzero(single)]), val_rows


def estimate_blocks(codes: np.ndarray, seed: int) -> list[np.ndarray]:
    """Positions of ``ESTIMATE_BLOCKS`` stratified blocks of validation rows (fewer when a class is too rare;
    iteratively stratified for multi-label ``codes``)."""
    if codes.ndim == 2:
        return [part for part in _iterative_parts(codes, int(min(ESTIMATE_BLOCKS, len(codes))), seed) if len(part)]
    per_class = np.bincount(codes)
    per_class = per_class[per_class > 0]
    if per_class.min() >= 2:
        k = int(min(ESTIMATE_BLOCKS, per_class.min()))
        blocks = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(codes)), codes)
    else:
        blocks = KFold(n_splits=int(min(ESTIMATE_BLOCKS, len(codes))), shuffle=True,
                       random_state=seed).split(np.zeros(len(codes)))
    return [np.sort(block) for _, block in blocks]
