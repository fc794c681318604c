"""The field checks of ``stc.readout``, the read-only values a readout holds, and what its
chosen configuration reads (``ChosenReadout``: sparse, dense or hybrid, the one reading every face shares).

Every check raises ValueError naming the field and what was found; ``Readout.from_files`` adds the directory. The
same checks run on a readout built by ``fit``, by hand or from damaged files.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from .aggregate import READOUT_KINDS
from .extract import parse_key
from .store import ExtractionSettings

__all__ = ["Frozen", "frozen", "thawed", "require", "number_or_none", "check_positive",
           "check_extraction", "check_kept_columns", "ChosenReadout",
           "chosen_readout"]


class Frozen(Mapping):
    """A read-only dict. Unlike ``types.MappingProxyType`` it can be pickled and deep-copied, so a fitted
    estimator holding one still can (joblib, ``copy.deepcopy``)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping | None = None):
        object.__setattr__(self, "_items", dict(items or {}))

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self) -> Iterator:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __reduce__(self):
        return type(self), (self._items,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


def frozen(value):
    """A JSON-like value made read-only: mappings become ``Frozen``, lists tuples, all the way down."""
    if isinstance(value, Mapping):
        return Frozen({key: frozen(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(frozen(item) for item in value)
    return value


def thawed(value):
    """``frozen``'s inverse: plain dicts and lists, what JSON writes and the fitted attributes show."""
    if isinstance(value, Mapping):
        return {key: thawed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [thawed(item) for item in value]
    return value


def require(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))


def number_or_none(value, what: str) -> float | None:
    """``value`` as a float, or None; anything else is refused."""
    require(value is None or _is_number(value), f"{what} must be a number or null, found {value!r}")
    return None if value is None else float(value)


def check_positive(value, what: str) -> float:
    """``value`` as a float if it is a finite positive number; refused otherwise."""
    require(_is_number(value) and math.isfinite(value) and value > 0,
            f"{what} must be a positive number, found {value!r}")
    return float(value)


def _whole(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_extraction(settings: ExtractionSettings) -> None:
    """What prediction reads of the tokenisation: a resolved ``max_length``, ``windows``, ``window_overlap``."""
    require(_whole(settings.max_length, 2), "extraction 'max_length' must be an integer >= 2")
    require(isinstance(settings.windows, bool), "extraction 'windows' must be true or false")
    require(_whole(settings.window_overlap, 0), "extraction 'window_overlap' must be a non-negative integer")
    for name in ("representations", "poolings"):
        value = getattr(settings, name)
        require(isinstance(value, tuple) and all(isinstance(v, str) for v in value),
                f"extraction '{name}' must be a tuple of names")


def check_kept_columns(kept_columns: Mapping, num_layers: int) -> Frozen:
    """The kept neuron indices per key, as read-only int64 arrays: keys are feature keys of layers the backbone
    has, indices non-negative integers."""
    require(isinstance(kept_columns, Mapping) and len(kept_columns) > 0, "kept_columns must name at least one key")
    checked = {}
    for key, columns in kept_columns.items():
        require(isinstance(key, str), "kept_columns must be names")
        representation, layer, _ = parse_key(key)
        require(layer <= num_layers, f"{key} reads layer {layer} of a backbone with {num_layers} layers")
        columns = np.asarray(columns) if columns is not None else None
        require(columns is not None and columns.ndim == 1 and np.issubdtype(columns.dtype, np.integer)
                and bool((columns >= 0).all()), f"the column indices of {key} are missing or not non-negative int64")
        columns = columns.astype(np.int64, copy=True)
        columns.setflags(write=False)
        checked[key] = columns
    return Frozen(checked)


@dataclass(frozen=True)
class ChosenReadout:
    """What the chosen configuration reads, of whichever kind: ``sparse`` (the neurons kept at ``eta`` of the
    ``representations`` x ``poolings`` arrays of layers up to ``exit_layer``), ``dense`` (every neuron of
    ``dense_key``, one layer's pooled hidden state; no η) or ``hybrid`` (every neuron of ``dense_key`` plus the
    neurons kept at ``eta`` of the other arrays). The faces (summary, report, model card, metadata) read the
    configuration through this, so none of them assumes an η or a dense key."""

    kind: str
    eta: float | None
    dense_key: str | None
    exit_layer: int
    representations: str
    poolings: str

    def describe(self) -> str:
        """One line in words, e.g. ``dense readout: every neuron of hidden.L5.mean``."""
        sparse = (f"the neurons kept at η = {self.eta:g} of {self.representations} · {self.poolings}, layers up to "
                  f"{self.exit_layer}") if self.eta is not None else ""
        if self.kind == "sparse":
            return f"sparse readout: {sparse}"
        dense = f"every neuron of {self.dense_key}"
        return f"dense readout: {dense}" if self.kind == "dense" else f"hybrid readout: {dense} plus {sparse}"

    def short(self) -> str:
        """A few words for a title: ``η = 0.2``, ``dense: every neuron of hidden.L5.mean`` or ``hybrid: ...``."""
        if self.kind == "sparse":
            return f"η = {self.eta:g}"
        dense = f"every neuron of {self.dense_key}"
        return f"dense: {dense}" if self.kind == "dense" else f"hybrid: {dense} + η = {self.eta:g}"

    def record(self) -> dict:
        """As JSON (``GET /metadata``'s ``readout``)."""
        return {**asdict(self), "description": self.describe()}


def chosen_readout(configuration: Mapping) -> ChosenReadout:
    """The readout a configuration (a row of the search, ``STCClassifier.configuration_``) chose; a ValueError
    naming the field when the row is not one of the three kinds. Rows without ``readout`` (models saved before
    dense readouts) are sparse."""
    kind = configuration.get("readout") or "sparse"
    require(kind in READOUT_KINDS, f"configuration 'readout' must be one of {READOUT_KINDS}, found {kind!r}")
    eta, dense_key = configuration.get("eta"), configuration.get("dense_key")
    if kind == "dense":
        require(eta is None, f"configuration 'eta' of a dense readout must be null, found {eta!r}")
    else:
        require(_is_number(eta) and 0 < eta <= 1, f"configuration 'eta' of a {kind} readout must be a number in "
                                                  f"(0, 1], found {eta!r}")
    if kind == "sparse":
        dense_key = None
    else:
        require(isinstance(dense_key, str), f"configuration 'dense_key' of a {kind} readout must name an array, "
                                            f"found {dense_key!r}")
        parse_key(dense_key)
    exit_layer = configuration.get("exit_layer")
    require(_whole(exit_layer, 1), "configuration 'exit_layer' must be an integer >= 1")

    def names(value) -> str:
        return "+".join(value) if isinstance(value, (list, tuple)) else str(value)

    return ChosenReadout(kind, None if eta is None else float(eta), dense_key, int(exit_layer),
                         names(configuration.get("representations")), names(configuration.get("poolings")))
