"""Seeded, stratified splitting and subsampling that give the same answer on every machine.

Determinism comes from never relying on input order: within each class the texts are first sorted (by text,
then by original position) and only then shuffled with ``numpy.random.default_rng(seed)``; classes are visited
in a sorted order. The same texts and labels therefore give the same splits wherever they come from.

Label sets (multi-label data, see ``_types``) are split by iterative stratification (``stc._stratify``), which
keeps each label's share in every part; the texts are sorted first there too, so the input order never matters.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

from .._stratify import iterative_stratification
from ._types import Split, is_label_sets, label_sort_key

__all__ = ["stratified_split", "stratified_subsample", "drop_duplicate_texts", "complete_splits", "default_metric"]

#: Share of train carved out for each missing held-out split.
CARVED_FRACTION = 0.1


def _indices_by_class(texts: Sequence[str], labels: Sequence[Hashable]) -> list[list[int]]:
    """Indices of each class (classes in sorted order), each list in a stable order (text, then position)."""
    by_class: dict[Hashable, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    return [sorted(by_class[label], key=lambda i: (texts[i], i)) for label in sorted(by_class, key=label_sort_key)]


def _check_pairs(texts: Sequence[str], labels: Sequence[Hashable]) -> None:
    if len(texts) != len(labels):
        raise ValueError(f"texts and labels differ in length: {len(texts)} texts, {len(labels)} labels")
    if len(texts) == 0:
        raise ValueError("cannot split an empty set of texts")


def stratified_split(texts: Sequence[str], labels: Sequence[Hashable], fractions: tuple[float, ...],
                     seed: int) -> list[Split]:
    """Split texts into ``len(fractions)`` parts that keep each class's share, the same way for the same seed.

    Each class is cut at the rounded cumulative fractions, so every part holds its fraction of every class
    (to within one text per class). ``fractions`` must be positive and sum to 1. Label sets are split by
    iterative stratification: each label's share is kept (within one text for the rarest labels, see
    ``stc._stratify``) and part sizes come out near their fractions.
    """
    _check_pairs(texts, labels)
    fractions = tuple(float(f) for f in fractions)
    if not fractions or any(not f > 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    if is_label_sets(labels):
        return _label_set_split(texts, labels, fractions, seed)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    cumulative = np.cumsum(fractions)
    for class_indices in _indices_by_class(texts, labels):
        n = len(class_indices)
        shuffled = [class_indices[i] for i in rng.permutation(n)]
        bounds = [0] + [math.floor(n * c + 0.5) for c in cumulative[:-1]] + [n]
        for part, start, stop in zip(parts, bounds[:-1], bounds[1:]):
            part.extend(shuffled[start:stop])
    splits = []
    for part in parts:
        order = [part[i] for i in rng.permutation(len(part))]  # interleave the classes
        splits.append(Split([texts[i] for i in order], [labels[i] for i in order]))
    return splits


def stratified_subsample(split: Split, limit: int, seed: int) -> Split:
    """At most ``limit`` texts of ``split`` with its class shares kept, chosen the same way for the same seed.

    Texts keep their order in ``split``. Each class gets its share of ``limit`` rounded by largest remainder.
    Label sets: an iteratively stratified part of ``limit / len(split)``, brought to exactly ``limit`` texts by
    adding (or removing) the texts that keep the label counts nearest their shares.
    """
    if len(split) <= limit:
        return split
    if is_label_sets(split.labels):
        return _label_set_subsample(split, limit, seed)
    groups = _indices_by_class(split.texts, split.labels)
    quotas = [len(group) * limit / len(split) for group in groups]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(groups)), key=lambda g: (-(quotas[g] - counts[g]), g))
    for g in by_remainder[: limit - sum(counts)]:
        counts[g] += 1
    rng = np.random.default_rng(seed)
    kept: list[int] = []
    for group, count in zip(groups, counts):
        kept.extend(group[i] for i in rng.permutation(len(group))[:count])
    kept.sort()
    return Split([split.texts[i] for i in kept], [split.labels[i] for i in kept])


def _label_set_split(texts: Sequence[str], label_sets: Sequence[tuple[str, ...]], fractions: tuple[float, ...],
                     seed: int) -> list[Split]:
    order = _stable_order(texts)
    part_of = iterative_stratification(_indicator([label_sets[i] for i in order]), fractions, seed)
    rng = np.random.default_rng(seed)
    splits = []
    for part in range(len(fractions)):
        members = [order[i] for i in np.flatnonzero(part_of == part)]
        members = [members[i] for i in rng.permutation(len(members))]  # not in text order
        splits.append(Split([texts[i] for i in members], [label_sets[i] for i in members]))
    return splits


def _label_set_subsample(split: Split, limit: int, seed: int) -> Split:
    order = _stable_order(split.texts)
    labels = _indicator([split.labels[i] for i in order]).astype(float)
    share = limit / len(split)
    chosen = iterative_stratification(labels, (share, 1 - share), seed) == 0
    wanted = share * labels.sum(axis=0)
    rng = np.random.default_rng(seed)
    # Iterative stratification gets each label's count right, not the number of texts (94 for 100 in a test):
    # add or remove one text at a time, each time the one that leaves the label counts nearest their shares.
    while chosen.sum() != limit:
        adding = chosen.sum() < limit
        candidates = np.flatnonzero(chosen != adding)
        candidates = candidates[rng.permutation(len(candidates))]  # ties go to a random one
        counts_after = labels[chosen].sum(axis=0) + (1 if adding else -1) * labels[candidates]
        chosen[candidates[np.argmin(((counts_after - wanted) ** 2).sum(axis=1))]] = adding
    kept = sorted(order[i] for i in np.flatnonzero(chosen))
    return Split([split.texts[i] for i in kept], [split.labels[i] for i in kept])


def _stable_order(texts: Sequence[str]) -> list[int]:
    """Positions sorted by text, then position: the order splits start from, whatever order the rows came in."""
    return sorted(range(len(texts)), key=lambda i: (texts[i], i))


def _indicator(label_sets: Sequence[tuple[str, ...]]) -> np.ndarray:
    """The (texts, labels) bool matrix of some label sets, labels in sorted order."""
    names = sorted({name for names in label_sets for name in names})
    column = {name: index for index, name in enumerate(names)}
    matrix = np.zeros((len(label_sets), len(names)), dtype=bool)
    for row, names_of_text in enumerate(label_sets):
        matrix[row, [column[name] for name in names_of_text]] = True
    return matrix


def drop_duplicate_texts(texts: Sequence[str], labels: Sequence[Hashable]) -> tuple[Split, int, int]:
    """Keep the first copy of each exact duplicate text; drop texts whose copies disagree on the label.

    Returns the kept split, the number of redundant copies dropped, and the number of distinct texts dropped
    because their copies carried different labels.
    """
    labels_of: dict[str, set] = {}
    for text, label in zip(texts, labels):
        labels_of.setdefault(text, set()).add(label)
    seen: set[str] = set()
    kept = Split([], [])
    for text, label in zip(texts, labels):
        if text in seen or len(labels_of[text]) > 1:
            continue
        seen.add(text)
        kept.texts.append(text)
        kept.labels.append(label)
    conflicting = sum(len(found) > 1 for found in labels_of.values())
    redundant = len(texts) - len(labels_of)
    return kept, redundant, conflicting


def complete_splits(train: Split, validation: Split | None, test: Split | None,
                    seed: int) -> tuple[Split, Split | None, Split | None, str]:
    """Carve any missing validation/test split out of train (stratified, seeded); say how in a short phrase.

    A carved part that gets no text (every class too small to give it one) is ``None``, and the phrase says so."""
    percent = round(CARVED_FRACTION * 100)
    stratified, article = ("iteratively stratified", "an") if is_label_sets(train.labels) else ("stratified", "a")
    if validation is not None and test is not None:
        return train, validation, test, "the given train/validation/test splits"
    if validation is None and test is None:
        rest = 1 - 2 * CARVED_FRACTION
        train, validation, test = stratified_split(train.texts, train.labels,
                                                   (rest, CARVED_FRACTION, CARVED_FRACTION), seed)
        rule = (f"{article} {stratified} {round(rest * 100)}/{percent}/{percent} train/validation/test split "
                f"(seed {seed})")
        return (train, *_none_if_empty(validation, test), rule + _empty_parts_note(validation=validation, test=test))
    kept, carved = stratified_split(train.texts, train.labels, (1 - CARVED_FRACTION, CARVED_FRACTION), seed)
    carved_from = f"{percent} % of train ({stratified}, seed {seed})"
    if validation is None:
        return (kept, *_none_if_empty(carved), test,
                f"the given train/test splits, validation = {carved_from}" + _empty_parts_note(validation=carved))
    return (kept, validation, *_none_if_empty(carved),
            f"the given train/validation splits, test = {carved_from}" + _empty_parts_note(test=carved))


def _none_if_empty(*parts: Split) -> tuple[Split | None, ...]:
    """A carved part that got no text is no split at all (``None``): nothing would score or fit on it."""
    return tuple(part if len(part) else None for part in parts)


def _empty_parts_note(**parts: Split) -> str:
    """What the rule's phrase adds when a carved part got no text (every class too small to give it one)."""
    empty = [name for name, part in parts.items() if not len(part)]
    if not empty:
        return ""
    return (f"; no {' or '.join(empty)} split: no class has enough texts to give it {round(CARVED_FRACTION * 100)} "
            f"% of them")


def default_metric(labels: Sequence[Hashable]) -> str:
    """``"macro_f1"`` when the classes are imbalanced (smallest < half the largest), else ``"accuracy"``; label
    sets: ``"micro_f1"``."""
    if is_label_sets(labels):
        return "micro_f1"
    counts = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return "macro_f1" if min(counts.values()) < 0.5 * max(counts.values()) else "accuracy"
