"""Input checks, in one place, with messages that name the argument and the problem."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .extract import POOLINGS, REPRESENTATIONS

__all__ = ["check_inputs", "check_texts", "check_labels", "check_grid", "check_choices", "check_integers"]


def check_inputs(X, name: str = "X", *, pairs: bool | None = None) -> list:
    """The inputs of a classifier: a list of texts (``check_texts``), or of text pairs, each a (text_a, text_b)
    tuple (or list) of two texts checked as texts are. ``pairs`` True or False requires one kind (a fitted model
    reads the kind it was fitted on); None takes either, but not a mix."""
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of texts, not a single {type(X).__name__}")
    if hasattr(X, "tolist") and not isinstance(X, list):
        X = X.tolist()
    items = list(X) if not isinstance(X, list) else X
    given = bool(items) and isinstance(items[0], (tuple, list))
    if pairs is not None and items and given != pairs:
        raise ValueError(f"{name} holds {'text pairs' if given else 'single texts'} but the model reads "
                         f"{'text pairs: give (text_a, text_b) tuples' if pairs else 'single texts'}")
    if not given:
        return check_texts(items, name)
    for index, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"{name}[{index}] is {item!r}; every item must be a (text_a, text_b) pair, as {name}[0] "
                            f"is (pairs and single texts cannot be mixed)")
    firsts = check_texts([item[0] for item in items], f"{name}[:][0]")
    seconds = check_texts([item[1] for item in items], f"{name}[:][1]")
    return list(zip(firsts, seconds))


def check_texts(texts, name: str = "X") -> list[str]:
    """A list of non-empty strings. Empty or whitespace-only texts carry no signal and are refused."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of texts, not a single {type(texts).__name__}")
    if hasattr(texts, "tolist") and not isinstance(texts, list):
        texts = texts.tolist()
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of texts, got {type(texts).__name__}") from None
    if not texts:
        raise ValueError(f"{name} is empty: at least one text is needed")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            kind = "NaN" if isinstance(text, float) and math.isnan(text) else type(text).__name__
            raise TypeError(f"{name}[{index}] is {kind}, not a string")
        if not text.strip():
            raise ValueError(f"{name}[{index}] is empty or whitespace only; remove such texts")
        try:  # tokenizers accept only valid Unicode; a lone surrogate would fail deep inside them
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"{name}[{index}] holds a lone surrogate ({text[error.start]!r} at character "
                             f"{error.start}), which is not valid Unicode; decode the source text properly") from None
    return texts


def check_labels(labels, n_texts: int, name: str = "y") -> np.ndarray:
    """A 1-D array of hashable labels, as many as texts, none missing."""
    if isinstance(labels, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of labels, not a single {type(labels).__name__}")
    values = list(labels.tolist() if hasattr(labels, "tolist") else labels)
    if len(values) != n_texts:
        raise ValueError(f"{name} has {len(values)} labels but there are {n_texts} texts")
    for index, value in enumerate(values):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise ValueError(f"{name}[{index}] is missing (None or NaN)")
        if isinstance(value, (list, dict, set)):
            raise TypeError(f"{name}[{index}] is a {type(value).__name__}; labels must be hashable scalars")
    kinds = {type(value) for value in values}
    if len(kinds) > 1 and not kinds <= {int, float, bool}:
        raise TypeError(f"{name} mixes label types {sorted(k.__name__ for k in kinds)}; use one type")
    return np.asarray(values)


def check_grid(values: Sequence[float], name: str, *, upper: float | None = None) -> tuple[float, ...]:
    """A non-empty grid of positive numbers (at most ``upper``)."""
    if isinstance(values, (int, float)):
        values = (values,)
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one value")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
                or value <= 0 or (upper is not None and value > upper):
            bound = f"in (0, {upper}]" if upper is not None else "> 0"
            raise ValueError(f"{name} must hold numbers {bound}, got {value!r}")
    return tuple(float(v) for v in values)


def check_integers(owner, names: Sequence[str], *, at_least: int = 1, none_allowed: bool = False) -> None:
    """Each attribute ``names`` of ``owner`` (an estimator's parameters) is an integer >= ``at_least`` (or None
    where allowed); a ValueError names the first that is not."""
    for name in names:
        value = getattr(owner, name)
        if value is None and none_allowed:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < at_least:
            kind = {1: "a positive integer", 0: "a non-negative integer"}.get(at_least, f"an integer >= {at_least}")
            raise ValueError(f"{name} must be {'None or ' if none_allowed else ''}{kind}, got {value!r}")


def check_choices(values, allowed: Sequence[str], name: str) -> tuple[str, ...]:
    """A non-empty tuple of distinct names from ``allowed``."""
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} is empty: choose from {tuple(allowed)}")
    for value in values:
        if value not in allowed:
            raise ValueError(f"unknown {name[:-1] if name.endswith('s') else name} {value!r}; choose from "
                             f"{tuple(allowed)}")
    return tuple(dict.fromkeys(values))


def check_representations(values) -> tuple[str, ...]:
    return check_choices(values, REPRESENTATIONS, "representations")


def check_poolings(values) -> tuple[str, ...]:
    return check_choices(values, POOLINGS, "poolings")
