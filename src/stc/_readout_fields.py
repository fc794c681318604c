"""The field checks of ``stc.readout``, the read-only values a readout holds, and its labels as saved.

Every check raises ValueError naming the field and what was found; ``Readout.from_files`` adds the directory. The
same checks run on a readout built by ``fit``, by hand or from damaged files.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np

from .extract import parse_key
from .store import ExtractionSettings

__all__ = ["Frozen", "frozen", "thawed", "read_only", "require", "number_or_none", "check_positive",
           "check_extraction", "check_kept_columns", "check_head", "encode_labels", "decode_labels"]

_LABEL_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


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


def check_head(arrays: Mapping[str, np.ndarray | None], n_features: int, n_rows: int) -> dict[str, np.ndarray]:
    """The head's arrays (named as in the file), each finite float32/float64 of the shape the kept neurons and
    the classes give, and the scale positive."""
    expected = {"scale.mean": (n_features,), "scale.scale": (n_features,), "logreg.coef": (n_rows, n_features),
                "logreg.intercept": (n_rows,)}
    checked = {}
    for name, shape in expected.items():
        array = arrays.get(name)
        array = None if array is None else np.asarray(array)
        require(array is not None and array.shape == shape and array.dtype in (np.float32, np.float64)
                and bool(np.isfinite(array).all()),
                f"array {name} must be finite float32/float64 of shape {shape}, found "
                f"{None if array is None else (array.dtype.name, array.shape)}")
        checked[name] = array
    require(bool((checked["scale.scale"] > 0).all()), "scale.scale must be positive")
    return checked


def read_only(array) -> np.ndarray:
    """A read-only copy of ``array``."""
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


def encode_labels(classes: np.ndarray) -> dict:
    """Labels as saved: their type (str, int, float or bool, one for all) and values."""
    values = classes.tolist()
    kinds = {type(v).__name__ for v in values}
    if len(kinds) != 1 or next(iter(kinds)) not in _LABEL_TYPES:
        raise TypeError(f"labels of type {sorted(kinds)} cannot be saved; use str, int, float or bool labels")
    return {"type": next(iter(kinds)), "values": values}


def decode_labels(labels: dict) -> np.ndarray:
    """``encode_labels``' inverse, checked."""
    require(labels.get("type") in _LABEL_TYPES and isinstance(labels.get("values"), list)
            and len(labels["values"]) >= 2, "'classes' must list at least two labels of one type")
    kind = _LABEL_TYPES[labels["type"]]
    require(all(type(v) is kind or (kind is float and type(v) is int) for v in labels["values"]),
            f"'classes' values are not all {labels['type']}")
    return np.asarray([kind(v) for v in labels["values"]])
