"""Every kind of head beyond the linear one, and the readers that choose a head by its kind.

``stc.head.LinearHead`` is the head of single-label models; ``MultiLabelHead`` (here) is a further kind of the same
interface, for label sets: a linear decision per label on the same standardised features (fitted as one ridge
classifier for every label, each label's decision mapped to a probability by Platt's sigmoid), and a decision
threshold per label. ``LinearHead.from_parts``/``from_files`` read any kind (the ``kind`` field of the
file names it); ``head_from_pipeline`` reads any fitted ``make_final_classifier`` pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer

from ._multilabel import probability_thresholds
from .head import HEADS, LinearHead, linear_decision, make_final_classifier, read_only, require

__all__ = ["MultiLabelHead", "head_from_pipeline"]

_THRESHOLDS = "logreg.thresholds"

@dataclass(frozen=True, eq=False)
class MultiLabelHead(LinearHead):
    """A multi-label head: a linear decision per label on the same standardised features, a sigmoid per label, and
    each label's decision threshold.

    ``decision`` is (n_texts, n_labels) (one row of ``coef`` per label); ``probabilities`` each label's sigmoid of
    its decision divided by ``temperature``; ``labels`` the 0/1 indicator matrix of the labels whose probability
    reaches its ``thresholds`` entry (chosen on held-out decision values for the fit's metric:
    ``stc._multilabel.tune_thresholds``). Saved like a linear head, with ``kind`` "multilabel" and the thresholds
    as ``logreg.thresholds``.

    Parameters
    ----------
    classes : array of shape (n_labels,)
        The labels, in column order (at least two).
    mean, scale, coef, intercept, temperature : as ``LinearHead``, with ``coef`` (n_labels, n_features) and
        ``intercept`` (n_labels,)
    thresholds : array of shape (n_labels,)
        Per label, the probability from which it is predicted, in (0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> head = MultiLabelHead(classes=np.array(["comedy", "drama"]), mean=np.zeros(2), scale=np.ones(2),
    ...                       coef=np.eye(2), intercept=np.zeros(2), thresholds=np.array([0.5, 0.9]))
    >>> head.labels(np.array([[2.0, 1.0], [-1.0, 3.0]])).tolist()
    [[1, 0], [0, 1]]
    """

    thresholds: np.ndarray | None = None
    kind: ClassVar[str] = "multilabel"

    def __post_init__(self) -> None:
        super().__post_init__()
        thresholds = None if self.thresholds is None else np.asarray(self.thresholds)
        shape = (len(self.classes),)
        require(thresholds is not None and thresholds.shape == shape and thresholds.dtype in (np.float32, np.float64)
                 and bool(((thresholds > 0) & (thresholds < 1)).all()),
                 f"array {_THRESHOLDS} must hold one probability in (0, 1) per label, shape {shape}, found "
                 f"{None if thresholds is None else (thresholds.dtype.name, thresholds.shape)}")
        object.__setattr__(self, "thresholds", read_only(thresholds))

    @staticmethod
    def _rows(n_classes: int) -> int:
        return n_classes

    def __reduce__(self):
        return type(self), (self.classes, self.mean, self.scale, self.coef, self.intercept, self.temperature,
                            self.thresholds)

    @property
    def binary(self) -> bool:
        return False

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Each label's decision value before the temperature, (n_texts, n_labels)."""
        return linear_decision(self.standardise(features), self.coef.astype(np.float64),
                               self.intercept.astype(np.float64))

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Each label's probability (n_texts, n_labels), independent of the others' (they need not sum to 1)."""
        return expit(self.decision(features) / self.temperature)

    def labels(self, features: np.ndarray) -> np.ndarray:
        """The 0/1 indicator matrix (n_texts, n_labels) of the labels whose probability reaches its threshold."""
        return self.labels_from_probabilities(self.probabilities(features))

    def labels_from_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """The indicator matrix ``labels`` gives, from ``probabilities``' output."""
        return (np.asarray(probabilities) >= self.thresholds.astype(np.float64)).astype(np.int64)

    def label_sets(self, indicator: np.ndarray) -> list[list]:
        """Each row's labels (plain JSON values, in ``classes`` order) of an indicator matrix."""
        classes = self.plain_classes()
        return [[classes[j] for j in np.flatnonzero(row)] for row in np.asarray(indicator)]

    def explain(self, features: np.ndarray, neuron_names: Sequence[str], *, top_k: int = 10) -> dict:
        """One text's labels and, per predicted label (the most probable one when none reaches its threshold), the
        ``top_k`` features that pushed its decision most: ``labels``, ``probabilities``, ``thresholds`` and
        ``explained`` (label -> its decision, intercept, ``all_contributions_sum`` and ``contributions``)."""
        raw = self._one_text(features, neuron_names, top_k)
        contributions = self.contributions(raw)
        decision = self.decision(raw)[0]
        proba = self.probabilities(raw)[0]
        chosen = np.flatnonzero(proba >= self.thresholds)
        rows = chosen if len(chosen) else [int(np.argmax(proba))]
        classes = self.plain_classes()
        explained = {}
        for row in rows:
            label = str(classes[row])
            explained[label] = {"decision": float(decision[row]), "intercept": float(self.intercept[row]),
                                "all_contributions_sum": float(contributions[row].sum()),
                                "contributions": self._top_contributions(
                                    raw, neuron_names, row, top_k,
                                    lambda value, label=label: label if value > 0 else f"not {label}")}
        return {"labels": [classes[j] for j in chosen],
                "probabilities": {str(c): float(p) for c, p in zip(classes, proba)},
                "thresholds": {str(c): float(t) for c, t in zip(classes, self.thresholds)},
                "explained": explained, "temperature": self.temperature, "n_features": self.n_features}

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline, classes: np.ndarray, temperature: float = 1.0, *,
                      thresholds: np.ndarray | None = None) -> MultiLabelHead:
        """The head of a fitted multi-label ``make_final_classifier`` pipeline, its decisions as fitted (not yet
        calibrated: see ``calibrated``). ``thresholds``: None is 0.5 for every label."""
        scaler, ridge = pipeline.named_steps["scale"], pipeline.named_steps["ridge"]
        return cls(classes=classes, mean=scaler.mean_, scale=scaler.scale_, coef=np.atleast_2d(ridge.coef_),
                   intercept=np.atleast_1d(ridge.intercept_), temperature=temperature,
                   thresholds=np.full(len(classes), 0.5) if thresholds is None else np.asarray(thresholds))

    def calibrated(self, decisions: np.ndarray, Y: np.ndarray) -> MultiLabelHead:
        """This head with each label's decision mapped to a probability and its threshold chosen, both on held-out
        ``decisions`` (n_rows, n_labels) of rows labelled ``Y`` (0/1) -- decisions of models that did not see them.

        Per label, Platt's sigmoid ``p = expit(a * decision + b)`` (a 1-D logistic regression, ``a`` kept
        positive so the ranking stays) is folded into the label's weights and intercept, as scikit-learn's
        ``CalibratedClassifierCV(ensemble=False)`` calibrates a model refitted on every row with the held-out
        decisions of its folds; then ``probability_thresholds`` on the calibrated decisions. A label with no
        positive or no negative among the rows keeps its decisions."""
        decisions, Y = np.asarray(decisions, dtype=np.float64), np.asarray(Y)
        slope, offset = np.ones(len(self.classes)), np.zeros(len(self.classes))
        for j in range(len(self.classes)):
            truth = Y[:, j] > 0
            if truth.all() or not truth.any():
                continue
            platt = LogisticRegression(C=1e4, max_iter=1000).fit(decisions[:, j:j + 1], truth)
            slope[j], offset[j] = max(float(platt.coef_[0, 0]), 1e-6), float(platt.intercept_[0])
        calibrated = decisions * slope + offset
        return type(self)(classes=self.classes, mean=self.mean, scale=self.scale,
                          coef=self.coef.astype(np.float64) * slope[:, None],
                          intercept=self.intercept.astype(np.float64) * slope + offset, temperature=self.temperature,
                          thresholds=probability_thresholds(calibrated, Y))

    def to_pipeline(self, C: float | None = None, seed: int = 0, class_weight: str | None = None) -> Pipeline:
        """A fitted multi-label ``make_final_classifier`` pipeline holding this head's arrays (its
        ``decision_function`` is ``decision``; its ``predict`` thresholds each decision at 0, not at
        ``thresholds``). ``C`` and ``seed`` are not used (the ridge has neither)."""
        pipeline = make_final_classifier(None, seed, class_weight, multilabel=True)
        scaler, ridge = pipeline.named_steps["scale"], pipeline.named_steps["ridge"]
        scaler.mean_, scaler.scale_, scaler.var_ = self.mean, self.scale, self.scale ** 2
        scaler.n_features_in_, scaler.n_samples_seen_ = self.n_features, 0
        ridge.coef_, ridge.intercept_, ridge.n_features_in_ = self.coef, self.intercept, self.n_features
        ridge.alpha_ = float("nan")  # not known from the arrays
        ridge._label_binarizer = LabelBinarizer(pos_label=1, neg_label=-1).fit(
            np.eye(len(self.classes), dtype=int))
        return pipeline

    def arrays(self) -> dict[str, np.ndarray]:
        """``LinearHead.arrays`` and the thresholds (``logreg.thresholds``)."""
        return {**super().arrays(), _THRESHOLDS: self.thresholds}

    @classmethod
    def _extra_fields(cls, arrays: Mapping[str, np.ndarray]) -> dict:
        return {"thresholds": arrays.get(_THRESHOLDS)}


HEADS["multilabel"] = MultiLabelHead


def head_from_pipeline(pipeline: Pipeline, classes: np.ndarray, temperature: float = 1.0, *,
                       thresholds: np.ndarray | None = None) -> LinearHead:
    """The head of any fitted ``make_final_classifier`` pipeline: linear, or multi-label (its ridge step)."""
    if "ridge" in pipeline.named_steps:
        return MultiLabelHead.from_pipeline(pipeline, classes, temperature, thresholds=thresholds)
    return LinearHead.from_pipeline(pipeline, classes, temperature)
