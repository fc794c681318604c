"""The head of a fitted model: the one place features become decision values, probabilities, labels and
per-neuron contributions.

A head is a value (``LinearHead``: a standardisation and a logistic regression, with the calibration temperature)
that every face calls: ``STCClassifier.predict_proba``/``predict``/``decision_function`` through the ``Readout``,
``stc predict``, ``stc serve`` (torch and ONNX runtimes), ``stc explain``, the report and the model card. Its
arithmetic is float64 throughout (the features are cast once, then standardised, then one product
``linear_decision``), so every face gives the same probabilities bit for bit from the same features.

``linear_decision`` and ``codes_from_decision`` are the arithmetic itself, shared with the per-layer probes (which
score already standardised activations). ``make_final_classifier`` is the scikit-learn estimator a head is fitted
as; ``LinearHead.from_pipeline`` reads one, ``to_pipeline`` rebuilds one (``STCClassifier.classifier_``).

Heads are written as ``<stem>.json`` (kind, classes, temperature) + ``<stem>.safetensors`` (the arrays) by
``to_files`` and read back, checked, by ``from_files``: no pickle. ``kind`` names the head's family in the file, so
that other heads (one binary head per label for multi-label data, a small MLP) are further kinds of the same
interface: ``decision``, ``probabilities``, ``labels``, ``contributions``, ``explain``, ``arrays``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from .calibration import probabilities

__all__ = ["LinearHead", "HEADS", "HEAD_KINDS", "require", "read_only", "HEAD_FORMAT", "linear_decision",
           "codes_from_decision",
           "make_final_classifier", "MULTILABEL_CS", "MULTILABEL_STAGE_ONE_CS", "ridge_alpha", "labels_to_json",
           "labels_from_json", "plain_label"]

HEAD_FORMAT = "stc-head"
HEAD_KINDS = ("linear", "multilabel", "mlp")
#: The head's arrays as they are named in safetensors files (a model's ``arrays.safetensors`` and ``head.safetensors``).
_ARRAY_NAMES = {"mean": "scale.mean", "scale": "scale.scale", "coef": "logreg.coef", "intercept": "logreg.intercept"}
_LABEL_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def linear_decision(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Decision values (n_rows, 1 or n_classes) of a linear model: ``X @ coef.T + intercept``."""
    return X @ coef.T + intercept


def codes_from_decision(decision: np.ndarray) -> np.ndarray:
    """Class codes from decision values: the sign of one column (or of a 1-D array: two classes), else the argmax."""
    decision = np.asarray(decision)
    if decision.ndim == 1 or decision.shape[1] == 1:
        return (decision.reshape(-1) > 0).astype(np.int64)
    return decision.argmax(axis=1)


#: The Cs a multi-label (ridge) head is searched over, as the logistic regression's are over ``final_Cs``: penalty
#: ``ridge_alpha(C)`` from 10^5.5 to 10^1 in half-decades (why these: ``stc._ridge``'s module docstring).
MULTILABEL_CS = tuple(float(0.5 / 10.0 ** e) for e in np.arange(5.5, 0.9, -0.5))
#: Stage 1 of a multi-label search: every other C, decades (``stc.search.SearchSpace.first_Cs``; ``stc._ridge``).
MULTILABEL_STAGE_ONE_CS = MULTILABEL_CS[::2]


def ridge_alpha(C: float) -> float:
    """The ridge penalty (scikit-learn's ``alpha``) of a multi-label head's C: 1 / (2 C), scikit-learn's
    correspondence between ``Ridge``'s alpha and ``LogisticRegression``'s C."""
    return 0.5 / C


def make_final_classifier(C: float | None, seed: int = 0, class_weight: str | None = None, *,
                          multilabel: bool = False) -> Pipeline:
    """The scikit-learn estimator a head is fitted as: standardisation, then a logistic regression at ``C``; for
    multi-label targets a ridge classifier on every label at once (``RidgeClassifier``: least squares on +-1
    targets, penalty ``ridge_alpha(C)``; the search chooses C among ``MULTILABEL_CS`` as it chooses the logistic
    regression's, on held-out folds). stc fits that ridge with ``stc._ridge.ridge_fits`` (its coefficients, for
    many Cs and nested column sets at once) and holds the result in this pipeline (``MultiLabelHead.to_pipeline``);
    why a ridge, and why its penalty is searched: ``stc._ridge``'s module docstring."""
    if multilabel:
        require(C is not None and C > 0, f"a multi-label head needs a positive C (stc.head.MULTILABEL_CS), not {C!r}")
        return Pipeline([("scale", StandardScaler()),
                         ("ridge", RidgeClassifier(alpha=ridge_alpha(C), solver="cholesky",
                                                   class_weight=class_weight))])
    logreg = LogisticRegression(C=C, max_iter=2000, random_state=seed, class_weight=class_weight)
    return Pipeline([("scale", StandardScaler()), ("logreg", logreg)])


def plain_label(value):
    """A label as a plain JSON value (numpy scalars become Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


def labels_to_json(classes: np.ndarray) -> dict:
    """Labels as saved: their type (str, int, float or bool, one for all) and values."""
    values = np.asarray(classes).tolist()
    kinds = {type(v).__name__ for v in values}
    if len(kinds) != 1 or next(iter(kinds)) not in _LABEL_TYPES:
        raise TypeError(f"labels of type {sorted(kinds)} cannot be saved; use str, int, float or bool labels")
    return {"type": next(iter(kinds)), "values": values}


def labels_from_json(labels) -> np.ndarray:
    """``labels_to_json``'s inverse, checked (ValueError naming what is wrong)."""
    require(isinstance(labels, Mapping) and labels.get("type") in _LABEL_TYPES
             and isinstance(labels.get("values"), list) and len(labels["values"]) >= 2,
             "'classes' must list at least two labels of one type")
    kind = _LABEL_TYPES[labels["type"]]
    require(all(type(v) is kind or (kind is float and type(v) is int) for v in labels["values"]),
             f"'classes' values are not all {labels['type']}")
    return np.asarray([kind(v) for v in labels["values"]])


def require(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)


def read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class LinearHead:
    """A standardisation and a logistic regression over ``n_features`` features, and a calibration temperature.

    ``decision`` = ``((features - mean) / scale) @ coef.T + intercept`` in float64; ``coef`` has one row for two
    classes (class 1's decision, as scikit-learn's binary ``LogisticRegression``) and one per class otherwise.
    ``probabilities`` divides the decision values by ``temperature`` before the sigmoid/softmax
    (``stc.calibration.probabilities``). Every array and value is checked when a head is made, so a hand-built
    head, a fitted one and one read from damaged files are refused by the same checks, with a message naming the
    array; the arrays are read-only (change a head with ``dataclasses.replace``, which checks again).

    Parameters
    ----------
    classes : array of shape (n_classes,)
        The labels; probability columns follow this order. At least two.
    mean, scale : arrays of shape (n_features,)
        The standardisation; ``scale`` positive.
    coef : array of shape (1 or n_classes, n_features)
    intercept : array of shape (1 or n_classes,)
    temperature : float, default 1.0
        Divides the decision values before the sigmoid/softmax (1: no calibration).

    Examples
    --------
    >>> import numpy as np
    >>> head = LinearHead(classes=np.array(["neg", "pos"]), mean=np.zeros(2), scale=np.ones(2),
    ...                   coef=np.array([[1.0, -1.0]]), intercept=np.zeros(1))
    >>> head.labels(np.array([[2.0, 1.0], [0.0, 3.0]])).tolist()
    ['pos', 'neg']
    """

    classes: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    temperature: float = 1.0
    kind: ClassVar[str] = "linear"
    #: each array field and its name in safetensors files
    _array_names: ClassVar[dict[str, str]] = _ARRAY_NAMES

    def __post_init__(self) -> None:
        classes = np.asarray(self.classes)
        require(classes.ndim == 1 and len(classes) >= 2, "'classes' must list at least two labels")
        object.__setattr__(self, "classes", read_only(classes))
        mean = None if self.mean is None else np.asarray(self.mean)
        n_features = mean.shape[0] if mean is not None and mean.ndim == 1 else -1
        expected = self._shapes(n_features, self._rows(len(classes)))
        for name, shape in expected.items():
            array = getattr(self, name)
            array = None if array is None else np.asarray(array)
            require(array is not None and array.shape == shape and array.dtype in (np.float32, np.float64)
                     and bool(np.isfinite(array).all()),
                     f"array {self._array_names[name]} must be finite float32/float64 of shape {shape}, found "
                     f"{None if array is None else (array.dtype.name, array.shape)}")
            object.__setattr__(self, name, read_only(array))
        require(bool((self.scale > 0).all()), "scale.scale must be positive")
        temperature = self.temperature
        require(isinstance(temperature, (int, float, np.floating, np.integer))
                 and not isinstance(temperature, (bool, np.bool_)) and math.isfinite(temperature) and temperature > 0,
                 f"'temperature' must be a positive number, found {temperature!r}")
        object.__setattr__(self, "temperature", float(temperature))

    def _shapes(self, n_features: int, n_rows: int) -> dict[str, tuple[int, ...]]:
        """Each array field's expected shape (a head kind with other arrays says so here)."""
        return {"mean": (n_features,), "scale": (n_features,), "coef": (n_rows, n_features), "intercept": (n_rows,)}

    @staticmethod
    def _rows(n_classes: int) -> int:
        """Decision rows of a head of ``n_classes`` classes: one (class 1's) for two, else one per class."""
        return 1 if n_classes == 2 else n_classes

    def __reduce__(self):
        """Copies and pickles go through the constructor, so they are checked and read-only too."""
        return type(self), (self.classes, self.mean, self.scale, self.coef, self.intercept, self.temperature)

    # --- what it is ----------------------------------------------------------------------------------------------

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    @property
    def binary(self) -> bool:
        """Two classes: one decision row (class 1's), a sigmoid."""
        return self.coef.shape[0] == 1

    def plain_classes(self) -> list:
        """The labels as plain JSON values, in column order."""
        return [plain_label(c) for c in self.classes]

    # --- computing -----------------------------------------------------------------------------------------------

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """``(features - mean) / scale`` in float64 (n_texts, n_features); refuses a wrong shape and non-finite
        values."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(f"features must have shape (n_texts, {self.n_features}), got {features.shape}")
        # C order whatever the input's layout: the product then takes the same BLAS path, so the same features give
        # the same bits from every face (an F-ordered copy rounded differently in the last bit)
        standardised = features.astype(np.float64, order="C")
        standardised -= self.mean.astype(np.float64)
        standardised /= self.scale.astype(np.float64)
        if not np.isfinite(standardised).all():
            raise ValueError("the features hold NaN or infinity (the backbone's activations overflowed?)")
        return standardised

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Decision values before the temperature: (n_texts,) for two classes (class 1's), else (n_texts,
        n_classes), as scikit-learn's ``decision_function``."""
        scores = linear_decision(self.standardise(features), self.coef.astype(np.float64),
                                 self.intercept.astype(np.float64))
        return scores.reshape(-1) if self.binary else scores

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (n_texts, n_classes), columns in ``classes`` order, the decision values divided by
        ``temperature``."""
        return probabilities(self.decision(features), self.temperature)

    def labels(self, features: np.ndarray) -> np.ndarray:
        """The predicted labels: the sign of the decision for two classes, else its largest value."""
        return self.classes[codes_from_decision(self.decision(features))]

    def labels_from_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """The labels ``labels`` gives, from ``probabilities``' output (for faces that hold only those, as an
        exported model's runtime does): each row's most probable class."""
        return self.classes[np.asarray(probabilities).argmax(axis=1)]

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """Each feature's share of one text's decision, ``coef * standardised activation``: (1 or n_classes,
        n_features); with ``intercept`` each row sums to that row's decision value (up to rounding)."""
        row = np.asarray(features).reshape(1, -1)
        return self.coef.astype(np.float64) * self.standardise(row)

    def feature_weights(self) -> np.ndarray:
        """Each feature's weight in each decision row, on standardised activations: (1 or n_classes, n_features);
        ``coef`` for a linear head (the report ranks neurons by these)."""
        return self.coef.astype(np.float64)

    def explain(self, features: np.ndarray, neuron_names: Sequence[str], *, top_k: int = 10) -> dict:
        """One text's prediction and the ``top_k`` features that pushed its decision most, as a JSON-able dict.

        ``probabilities``, ``label`` and ``decision`` are exactly ``probabilities``/``decision`` of the same
        features; ``contributions`` lists, for the explained row (class 1's for two classes, the predicted class's
        otherwise), each feature's ``weight * standardised activation``, largest in size first;
        ``all_contributions_sum`` is that sum over every feature for each row (with ``intercept``: the decision).
        """
        raw = self._one_text(features, neuron_names, top_k)
        contributions = self.contributions(raw)
        decision = self.decision(raw).reshape(1, -1)[0]
        proba = self.probabilities(raw)[0]
        predicted = int(np.argmax(proba))
        row = 0 if self.binary else predicted
        classes = self.plain_classes()
        top = self._top_contributions(raw, neuron_names, row, top_k, lambda value: (
            classes[1 if value > 0 else 0] if self.binary else (classes[row] if value > 0 else "other classes")))
        return {"label": classes[predicted], "probability": float(proba[predicted]),
                "probabilities": {str(c): float(p) for c, p in zip(classes, proba)},
                "decision_classes": [classes[1]] if self.binary else classes, "decision": decision.tolist(),
                "intercept": self.intercept.astype(np.float64).tolist(), "explained_row": row,
                "all_contributions_sum": contributions.sum(axis=1).tolist(), "temperature": self.temperature,
                "n_features": self.n_features, "contributions": top}

    def _one_text(self, features: np.ndarray, neuron_names: Sequence[str], top_k) -> np.ndarray:
        """``explain``'s checks: a positive ``top_k``, a name per feature; the text's features as one row."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        if len(neuron_names) != self.n_features:
            raise ValueError(f"{len(neuron_names)} neuron names for a head over {self.n_features} features")
        return np.asarray(features).reshape(1, -1)

    def _top_contributions(self, raw: np.ndarray, neuron_names: Sequence[str], row: int, top_k: int,
                           toward) -> list[dict]:
        """The ``top_k`` features of decision row ``row`` by the size of their contribution, each with its weight,
        activation, standardised activation, contribution and ``toward(contribution)``: what it pushes toward."""
        standardised = self.standardise(raw)[0]
        contributions = self.contributions(raw)[row]
        top = []
        for feature in np.argsort(-np.abs(contributions), kind="stable")[:top_k]:
            value = float(contributions[feature])
            top.append({"neuron": neuron_names[feature], "feature": int(feature),
                        "weight": float(self.coef[row, feature]), "activation": float(raw[0, feature]),
                        "standardised_activation": float(standardised[feature]), "contribution": value,
                        "pushes_toward": toward(value)})
        return top

    # --- scikit-learn ---------------------------------------------------------------------------------------------

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline, classes: np.ndarray, temperature: float = 1.0) -> LinearHead:
        """The head of a fitted ``make_final_classifier`` pipeline whose classes were codes 0..n_classes-1 of
        ``classes``."""
        scaler, logreg = pipeline.named_steps["scale"], pipeline.named_steps["logreg"]
        return cls(classes=classes, mean=scaler.mean_, scale=scaler.scale_, coef=logreg.coef_,
                   intercept=logreg.intercept_, temperature=temperature)

    def to_pipeline(self, C: float, seed: int = 0, class_weight: str | None = None) -> Pipeline:
        """A fitted ``make_final_classifier`` pipeline holding this head's arrays (for code written against
        scikit-learn; its classes are the codes 0..n_classes-1, and it computes in scikit-learn's own arithmetic,
        without the temperature)."""
        pipeline = make_final_classifier(C, seed, class_weight)
        scaler, logreg = pipeline.named_steps["scale"], pipeline.named_steps["logreg"]
        scaler.mean_, scaler.scale_, scaler.var_ = self.mean, self.scale, self.scale ** 2
        scaler.n_features_in_, scaler.n_samples_seen_ = self.n_features, 0
        logreg.classes_ = np.arange(len(self.classes))
        logreg.coef_, logreg.intercept_ = self.coef, self.intercept
        logreg.n_features_in_, logreg.n_iter_ = self.n_features, np.array([0])
        return pipeline

    # --- files ---------------------------------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays as named in safetensors files (``scale.mean``, ``scale.scale``, ``logreg.coef``,
        ``logreg.intercept``)."""
        return {file_name: getattr(self, name) for name, file_name in self._array_names.items()}

    def document(self) -> dict:
        """What the JSON file holds: format, kind, classes and temperature."""
        return {"format": HEAD_FORMAT, "kind": self.kind, "classes": labels_to_json(self.classes),
                "temperature": self.temperature}

    @classmethod
    def from_parts(cls, document: Mapping, arrays: Mapping[str, np.ndarray]) -> LinearHead:
        """A head from ``document()``'s fields (``classes``, ``temperature``, ``kind`` if present) and ``arrays()``;
        ValueError naming what is missing or wrong."""
        kind = document.get("kind", "linear")
        require(kind in HEAD_KINDS, f"head kind {kind!r} is not one this stc reads ({', '.join(HEAD_KINDS)})")
        fields = {name: arrays.get(file_name) for name, file_name in cls._array_names.items()}
        if cls.kind != kind:  # another kind's file: its class reads it (stc.heads registers them in HEADS)
            require(cls is LinearHead and kind in HEADS, f"head kind {kind!r} is not a {cls.kind} head")
            return HEADS[kind].from_parts(document, arrays)
        return cls(classes=labels_from_json(document.get("classes")), temperature=document.get("temperature", 1.0),
                   **cls._extra_fields(arrays), **fields)

    @classmethod
    def _extra_fields(cls, arrays: Mapping[str, np.ndarray]) -> dict:
        """A head kind's fields beyond the linear head's, from its arrays."""
        return {}

    def to_files(self, directory: str | Path, stem: str = "head") -> None:
        """Write ``<stem>.json`` and ``<stem>.safetensors`` into ``directory`` (which must exist)."""
        directory = Path(directory)
        save_file({name: np.ascontiguousarray(array) for name, array in self.arrays().items()},
                  str(directory / f"{stem}.safetensors"))
        (directory / f"{stem}.json").write_text(json.dumps(self.document(), indent=1), encoding="utf-8")

    @classmethod
    def from_files(cls, directory: str | Path, stem: str = "head") -> LinearHead:
        """The head ``to_files`` wrote; anything missing, damaged or inconsistent is a ValueError naming the file."""
        directory = Path(directory)
        document_path, arrays_path = directory / f"{stem}.json", directory / f"{stem}.safetensors"
        try:
            document = json.loads(document_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{document_path} cannot be read as a head: {error}") from None
        try:
            arrays = load_file(str(arrays_path))
        except (OSError, SafetensorError) as error:
            raise ValueError(f"{arrays_path} cannot be read: {error}") from None
        try:
            require(isinstance(document, dict) and document.get("format") == HEAD_FORMAT, "not an stc head file")
            return cls.from_parts(document, arrays)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{document_path} is not a valid head: {error}") from None



#: Each head kind (the ``kind`` field of its files) and its class; ``stc.heads`` adds the further kinds when it is
#: imported, which importing any part of stc does (the package imports the estimator, which imports it).
HEADS: dict[str, type[LinearHead]] = {"linear": LinearHead}
