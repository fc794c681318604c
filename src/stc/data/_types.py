"""The two containers every loader returns, and the checks that keep their contents clean.

A dataset is single-label (each label a str or int, one class per text) or multi-label: then every label is a
*label set*, a tuple of label names (strings), sorted and without repeats, possibly empty (a text that carries no
label). A list of such tuples is what ``sklearn.preprocessing.MultiLabelBinarizer`` takes. Which one a dataset is
follows from its labels (``TextDataset.multilabel``), so no single-label loader has anything to say.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["Split", "TextDataset", "checked_text", "checked_label", "is_missing_label", "checked_label_set",
           "is_label_sets", "label_set", "METRICS", "MULTILABEL_METRICS"]

METRICS = ("accuracy", "macro_f1")
#: A multi-label dataset is scored over every (text, label) decision: micro-F1 pools them all, so frequent labels
#: weigh most; macro-F1 averages the F1 of each label.
MULTILABEL_METRICS = ("micro_f1", "macro_f1")

LabelSet = tuple[str, ...]


def is_label_sets(labels: Sequence) -> bool:
    """Whether ``labels`` are label sets: at least one label, and every one a tuple."""
    return len(labels) > 0 and all(isinstance(label, tuple) for label in labels)


def label_set(names) -> LabelSet:
    """The canonical label set of some label names: stripped, without blanks or repeats, sorted."""
    return tuple(sorted({name.strip() for name in names if name.strip()}))


@dataclass
class Split:
    """One split of labelled text: ``texts[i]`` carries ``labels[i]`` (a str or int label, or a label set)."""

    texts: list[str]
    labels: list

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"a Split needs one label per text, got {len(self.texts)} texts "
                             f"and {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def label_counts(self) -> dict:
        """How many texts carry each label, labels in sorted order (with label sets: each label of each set)."""
        counts = Counter(name for names in self.labels for name in names) if is_label_sets(self.labels) \
            else Counter(self.labels)
        return {label: counts[label] for label in sorted(counts, key=label_sort_key)}

    def __repr__(self) -> str:  # the default would print every text
        return f"Split(n={len(self)}, labels={self.label_counts()})"


@dataclass
class TextDataset:
    """A named classification dataset: its splits, the metric it is scored with, and where it came from.

    Single-label or multi-label (every label of every split a label set, see the module's docstring); a dataset
    whose splits mix the two, or a label set that is not a sorted tuple of distinct non-blank strings, is refused.
    """

    name: str
    train: Split
    validation: Split | None  # None: the caller makes its own split
    test: Split | None
    metric: str  # single-label: "accuracy" or "macro_f1"; multi-label: "micro_f1" or "macro_f1"
    description: str  # one line, including the source and the split rule

    def __post_init__(self) -> None:
        kinds = {part: _label_kind(split, part) for part, split in self._splits()}
        if {"label sets", "plain labels"} <= set(kinds.values()):
            described = ", ".join(f"{part}: {kind}" for part, kind in kinds.items() if kind)
            raise ValueError(f"dataset {self.name!r} mixes label sets and plain labels across its splits "
                             f"({described})")
        metrics = MULTILABEL_METRICS if self.multilabel else METRICS
        if self.metric not in metrics:
            kind = "a multi-label" if self.multilabel else "a single-label"
            raise ValueError(f"metric must be one of {metrics} for {kind} dataset, got {self.metric!r}")

    def _splits(self) -> list[tuple[str, Split]]:
        return [(part, split) for part, split in (("train", self.train), ("validation", self.validation),
                                                  ("test", self.test)) if split is not None]

    @property
    def multilabel(self) -> bool:
        """Whether each text carries a label set (a tuple of label names) rather than one label."""
        return any(is_label_sets(split.labels) for _, split in self._splits())

    @property
    def classes(self) -> list:
        """The labels seen in any split, sorted (with label sets: every label name in any set)."""
        if self.multilabel:
            return sorted({name for _, split in self._splits() for names in split.labels for name in names})
        seen = {label for split in (self.train, self.validation, self.test) if split for label in split.labels}
        return sorted(seen, key=label_sort_key)


def _label_kind(split: Split, part: str) -> str | None:
    """"label sets", "plain labels" or None (no texts); a ValueError for a split that mixes the two or holds a
    label set that is not canonical (``label_set``)."""
    sets = [index for index, label in enumerate(split.labels) if isinstance(label, tuple)]
    if not sets:
        return "plain labels" if len(split) else None
    if len(sets) < len(split):
        plain = next(index for index, label in enumerate(split.labels) if not isinstance(label, tuple))
        raise ValueError(f"{part} mixes label sets and plain labels: labels[{sets[0]}] is "
                         f"{split.labels[sets[0]]!r}, labels[{plain}] is {split.labels[plain]!r}")
    for index in sets:
        names = split.labels[index]
        if not all(isinstance(name, str) for name in names) or names != label_set(names):
            raise ValueError(f"{part} labels[{index}] is {names!r}; a label set is a tuple of distinct, non-blank, "
                             f"stripped strings in sorted order")
    return "label sets"


def label_sort_key(label: Hashable) -> tuple[str, str]:
    """A sort key that orders labels of mixed types the same way on every machine."""
    return (type(label).__name__, str(label))


def checked_text(value: object, where: str) -> str:
    """Return ``value`` if it is a non-blank string, else raise a ValueError naming ``where``."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{where}: the text is empty")
        return value
    if value is None:
        raise ValueError(f"{where}: the text is missing (None)")
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{where}: the text is missing (NaN)")
    raise ValueError(f"{where}: the text is not a string (got {type(value).__name__} {value!r})")


def is_missing_label(value: object) -> bool:
    """Whether ``value`` is no label at all: None, NaN or a blank string (``checked_label`` names which)."""
    return (value is None or (isinstance(value, float) and math.isnan(value))
            or (isinstance(value, str) and not value.strip()))


def checked_label(value: object, where: str) -> Hashable:
    """Return ``value`` if it is a usable label (hashable, not missing, not blank), else raise a ValueError."""
    if value is None:
        raise ValueError(f"{where}: the label is missing (None)")
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{where}: the label is missing (NaN)")
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"{where}: the label is empty")
    if not isinstance(value, Hashable):
        raise ValueError(f"{where}: the label must be a str or int, got {type(value).__name__} {value!r}")
    return value


def checked_label_set(value: object, where: str) -> LabelSet:
    """The label set of a list of label names (a JSON list), else a ValueError naming ``where``.

    An empty list is the empty label set (a text that carries no label); blank names are an error, not dropped,
    since a list is written on purpose.
    """
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: a label set must be a list of strings, got {type(value).__name__} {value!r}")
    for name in value:
        if not isinstance(name, str):
            raise ValueError(f"{where}: a label set holds strings only, got {type(name).__name__} {name!r} "
                             f"in {value!r}")
        if not name.strip():
            raise ValueError(f"{where}: the label set {value!r} holds an empty label")
    return label_set(value)
