"""The two containers every loader returns, and the checks that keep their contents clean."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["Split", "TextDataset", "checked_text", "checked_label"]

METRICS = ("accuracy", "macro_f1")


@dataclass
class Split:
    """One split of labelled text: ``texts[i]`` carries ``labels[i]`` (any hashable label, str or int)."""

    texts: list[str]
    labels: list

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"a Split needs one label per text, got {len(self.texts)} texts "
                             f"and {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def label_counts(self) -> dict:
        """How many texts carry each label, labels in sorted order."""
        counts = Counter(self.labels)
        return {label: counts[label] for label in sorted(counts, key=label_sort_key)}

    def __repr__(self) -> str:  # the default would print every text
        return f"Split(n={len(self)}, labels={self.label_counts()})"


@dataclass
class TextDataset:
    """A named classification dataset: its splits, the metric it is scored with, and where it came from."""

    name: str
    train: Split
    validation: Split | None  # None: the caller makes its own split
    test: Split | None
    metric: str  # "accuracy" or "macro_f1"
    description: str  # one line, including the source and the split rule

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")

    @property
    def classes(self) -> list:
        """The labels seen in any split, sorted."""
        seen = {label for split in (self.train, self.validation, self.test) if split for label in split.labels}
        return sorted(seen, key=label_sort_key)


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
