"""Every kind of head beyond the linear one, how each is fitted, and the readers that choose a head by its kind.

``stc.head.LinearHead`` is the head of single-label models; ``MultiLabelHead`` (here) is a further kind of the same
interface, for label sets: a linear decision per label on the same standardised features (fitted as one ridge
classifier for every label, each label's decision mapped to a probability by Platt's sigmoid), and a decision
threshold per label; ``MLPHead`` (here) another, for single labels: one hidden layer of ReLU units on the
standardised features (the search tries it beside the linear head). ``LinearHead.from_parts``/``from_files`` read
any kind; ``fit_head_estimator`` fits a head kind's estimator, ``head_from_pipeline`` reads any fitted one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer, StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from ._multilabel import probability_thresholds
from ._ridge import ridge_fits
from .head import HEADS, LinearHead, linear_decision, make_final_classifier, read_only, require

__all__ = ["MultiLabelHead", "MLPHead", "head_from_pipeline", "fit_head_estimator", "make_mlp_classifier",
           "HEAD_FAMILIES", "DEFAULT_MLP_CS", "MLP_HIDDEN_UNITS", "MLP_MIN_TEXTS_PER_CLASS", "mlp_possible"]

#: The head families a search candidate may fit (``Candidate.head``), simplest first: the one-standard-error rule
#: prefers the earlier one (``stc.selection``).
HEAD_FAMILIES = ("linear", "mlp")

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
        """This head with each label's decision made a probability and its threshold chosen, on held-out
        ``decisions`` (n_rows, n_labels) of rows labelled ``Y`` (0/1): per label, Platt's sigmoid ``expit(a *
        decision + b)`` (``a`` > 0: the ranking stays) folded into its weights and intercept, as
        ``CalibratedClassifierCV(ensemble=False)`` does, then ``probability_thresholds``. A label with no positive
        or no negative among the rows keeps its decisions."""
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
        """A fitted multi-label ``make_final_classifier`` pipeline holding this head's arrays (``decision_function``
        is ``decision``; ``predict`` thresholds at 0). ``C`` sets its alpha (None: saved before C was searched)."""
        pipeline = make_final_classifier(0.5 if C is None else C, seed, class_weight, multilabel=True)
        scaler, ridge = pipeline.named_steps["scale"], pipeline.named_steps["ridge"]
        scaler.mean_, scaler.scale_, scaler.var_ = self.mean, self.scale, self.scale ** 2
        scaler.n_features_in_, scaler.n_samples_seen_ = self.n_features, 0
        ridge.coef_, ridge.intercept_, ridge.n_features_in_ = self.coef, self.intercept, self.n_features
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


#: The MLP head's width: one hidden layer of this many ReLU units (see ``make_mlp_classifier`` for why).
MLP_HIDDEN_UNITS = 64
#: The Cs (inverse strength of the L2 penalty, as the logistic regression's) of the MLP heads the search's third
#: stage tries (see ``stc.search``).
DEFAULT_MLP_CS = (1.0, 10.0)
#: Fewest training texts of every class, in every split, for the search to try an MLP head: its early stopping holds
#: out a tenth of them (see ``mlp_possible``).
MLP_MIN_TEXTS_PER_CLASS = 10
_MLP_ARRAY_NAMES = {"mean": "scale.mean", "scale": "scale.scale", "hidden_coef": "mlp.hidden.coef",
                    "hidden_intercept": "mlp.hidden.intercept", "coef": "mlp.output.coef",
                    "intercept": "mlp.output.intercept"}


def make_mlp_classifier(C: float, seed: int | None = 0, hidden_units: int = MLP_HIDDEN_UNITS) -> Pipeline:
    """The scikit-learn estimator an MLP head is fitted as: standardisation, then scikit-learn's ``MLPClassifier``
    with one hidden layer of ``hidden_units`` ReLU units, Adam at a learning rate of 0.01, and early stopping on a
    stratified tenth of the training rows (the weights of its best epoch are kept); seeded by ``seed``.

    Why a learning rate of 0.01 and not scikit-learn's 0.001: with a few hundred texts an epoch is a few Adam steps,
    and early stopping ended the default's training before it learnt anything. Measured on a planted XOR of two
    of 20 standardised features (4,000 test rows, seed 0): 600 training rows, C = 1: 0.54 test accuracy at 0.001
    against 0.82 at 0.01 (batches of 32 at 0.001: 0.85, 3x slower); 2,000 rows: 0.94 against 0.96 in half the
    time. The logistic regression: 0.49-0.51.

    ``alpha = 1 / C``: scikit-learn's MLP minimises the mean loss plus ``alpha / (2 n) * ||W||^2``, that is the
    summed loss plus ``alpha / 2 * ||W||^2``, which is ``LogisticRegression``'s penalty at ``C = 1 / alpha``; so a
    candidate's ``C`` weighs the penalty the same way for either head."""
    mlp = MLPClassifier(hidden_layer_sizes=(hidden_units,), activation="relu", solver="adam", alpha=1.0 / C,
                        learning_rate_init=0.01, early_stopping=True, validation_fraction=0.1, n_iter_no_change=10,
                        max_iter=200, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("mlp", mlp)])


def mlp_possible(y: np.ndarray, splits_train_rows) -> bool:
    """Whether an MLP head can be fitted on each of these training rows of single labels ``y`` (class codes): every
    class present has ``MLP_MIN_TEXTS_PER_CLASS`` texts at least, so that early stopping's stratified tenth is a
    held-out set and not a handful of texts."""
    if y.ndim != 1:
        return False
    for rows in splits_train_rows:
        counts = np.bincount(y[rows])
        if counts[counts > 0].min() < MLP_MIN_TEXTS_PER_CLASS:
            return False
    return True


@dataclass(frozen=True, eq=False)
class MLPHead(LinearHead):
    """A single-label head with one hidden layer: ReLU units on the standardised features, then a linear layer.

    ``decision`` = ``relu(z @ hidden_coef.T + hidden_intercept) @ coef.T + intercept`` with ``z`` the standardised
    features, in float64 (the same arithmetic in the search, in every face and in the ONNX export's runtime, which
    applies the head beside the graph); ``coef`` has one row for two classes (class 1's logit, scikit-learn's
    logistic output) and one per class otherwise (softmax). Probabilities and labels follow ``LinearHead``.

    Explanations: a ReLU network is linear wherever its active units stay the same, so at one text its decision is
    exactly ``(coef[:, a] @ hidden_coef[a]) @ z + coef[:, a] @ hidden_intercept[a] + intercept`` (``a``: the units
    active there). ``contributions`` and ``explain`` give that local linear map's terms (gradient x standardised
    activation); they sum, with the local intercept, to the decision. ``feature_weights`` (the report's neuron
    ranking) gives the connection weights ``coef @ hidden_coef`` (Olden & Jackson 2002: every unit counted).

    Saved like a linear head with ``kind`` "mlp" and the arrays ``scale.mean``, ``scale.scale``,
    ``mlp.hidden.coef``, ``mlp.hidden.intercept``, ``mlp.output.coef`` and ``mlp.output.intercept``.

    Parameters
    ----------
    classes, mean, scale, temperature : as ``LinearHead``
    coef : array of shape (1 or n_classes, n_hidden)
        The output layer's weights.
    intercept : array of shape (1 or n_classes,)
    hidden_coef : array of shape (n_hidden, n_features)
        The hidden layer's weights.
    hidden_intercept : array of shape (n_hidden,)

    Examples
    --------
    >>> import numpy as np
    >>> head = MLPHead(classes=np.array([0, 1]), mean=np.zeros(2), scale=np.ones(2),
    ...                hidden_coef=np.array([[1.0, 1.0], [-1.0, -1.0]]), hidden_intercept=np.array([-1.0, -1.0]),
    ...                coef=np.array([[1.0, 1.0]]), intercept=np.array([-0.5]))
    >>> head.labels(np.array([[1.0, 1.0], [0.0, 0.0], [-1.0, -1.0]])).tolist()  # |x1 + x2| > 1.5
    [1, 0, 1]
    """

    hidden_coef: np.ndarray | None = None
    hidden_intercept: np.ndarray | None = None
    kind: ClassVar[str] = "mlp"
    _array_names: ClassVar[dict[str, str]] = _MLP_ARRAY_NAMES

    def _shapes(self, n_features: int, n_rows: int) -> dict[str, tuple[int, ...]]:
        hidden = None if self.hidden_intercept is None else np.asarray(self.hidden_intercept)
        n_hidden = hidden.shape[0] if hidden is not None and hidden.ndim == 1 and len(hidden) else -1
        # the hidden intercept first: it sets the width every other array is checked against
        return {"mean": (n_features,), "scale": (n_features,), "hidden_intercept": (n_hidden,),
                "hidden_coef": (n_hidden, n_features), "coef": (n_rows, n_hidden), "intercept": (n_rows,)}

    def __reduce__(self):
        return type(self), (self.classes, self.mean, self.scale, self.coef, self.intercept, self.temperature,
                            self.hidden_coef, self.hidden_intercept)

    @property
    def n_hidden(self) -> int:
        return int(self.hidden_intercept.shape[0])

    def _pre_activations(self, standardised: np.ndarray) -> np.ndarray:
        return linear_decision(standardised, self.hidden_coef.astype(np.float64),
                               self.hidden_intercept.astype(np.float64))

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Decision values before the temperature: (n_texts,) for two classes (class 1's), else (n_texts,
        n_classes)."""
        hidden = np.maximum(self._pre_activations(self.standardise(features)), 0.0)
        scores = linear_decision(hidden, self.coef.astype(np.float64), self.intercept.astype(np.float64))
        return scores.reshape(-1) if self.binary else scores

    def local_head(self, features: np.ndarray) -> LinearHead:
        """The linear head that equals this one around one text (``features``: one row): the output layer
        restricted to the units active there, times the hidden layer (see the class docstring)."""
        row = np.asarray(features).reshape(1, -1)
        active = self._pre_activations(self.standardise(row))[0] > 0
        output = self.coef.astype(np.float64)[:, active]
        return LinearHead(classes=self.classes, mean=self.mean, scale=self.scale,
                          coef=output @ self.hidden_coef.astype(np.float64)[active],
                          intercept=output @ self.hidden_intercept.astype(np.float64)[active]
                          + self.intercept.astype(np.float64), temperature=self.temperature)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """Each feature's share of one text's decision in the network's local linear map (``local_head``): (1 or
        n_classes, n_features); with the local intercept each row sums to that row's decision (up to rounding)."""
        return self.local_head(features).contributions(features)

    def feature_weights(self) -> np.ndarray:
        """Connection weights ``coef @ hidden_coef`` (1 or n_classes, n_features): each feature's weight summed over
        every path through the hidden units (the report's neuron ranking)."""
        return self.coef.astype(np.float64) @ self.hidden_coef.astype(np.float64)

    def explain(self, features: np.ndarray, neuron_names: Sequence[str], *, top_k: int = 10) -> dict:
        """``LinearHead.explain`` of the local linear map at this text (``local_head``: contributions, weights and
        ``intercept`` are its), with this head's own ``decision`` and probabilities, and ``local_linear`` true."""
        raw = self._one_text(features, neuron_names, top_k)
        explanation = self.local_head(raw).explain(raw, neuron_names, top_k=top_k)
        proba = self.probabilities(raw)[0]
        classes = self.plain_classes()
        return {**explanation, "decision": self.decision(raw).reshape(1, -1)[0].tolist(),
                "probability": float(proba[int(np.argmax(proba))]),
                "probabilities": {str(c): float(p) for c, p in zip(classes, proba)}, "local_linear": True,
                "n_hidden": self.n_hidden}

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline, classes: np.ndarray, temperature: float = 1.0) -> MLPHead:
        """The head of a fitted ``make_mlp_classifier`` pipeline whose classes were codes 0..n_classes-1 of
        ``classes``."""
        scaler, mlp = pipeline.named_steps["scale"], pipeline.named_steps["mlp"]
        require(len(mlp.coefs_) == 2, f"an MLP head has one hidden layer, this one has {len(mlp.coefs_) - 1}")
        return cls(classes=classes, mean=scaler.mean_, scale=scaler.scale_, hidden_coef=mlp.coefs_[0].T,
                   hidden_intercept=mlp.intercepts_[0], coef=mlp.coefs_[1].T, intercept=mlp.intercepts_[1],
                   temperature=temperature)

    def to_pipeline(self, C: float, seed: int = 0, class_weight: str | None = None) -> Pipeline:
        """A fitted ``make_mlp_classifier`` pipeline holding this head's arrays (classes: the codes
        0..n_classes-1; scikit-learn's own arithmetic, without the temperature)."""
        pipeline = make_mlp_classifier(C, seed, self.n_hidden)
        scaler, mlp = pipeline.named_steps["scale"], pipeline.named_steps["mlp"]
        scaler.mean_, scaler.scale_, scaler.var_ = self.mean, self.scale, self.scale ** 2
        scaler.n_features_in_, scaler.n_samples_seen_ = self.n_features, 0
        codes = np.arange(len(self.classes))
        mlp.coefs_ = [np.array(self.hidden_coef.T), np.array(self.coef.T)]
        mlp.intercepts_ = [np.array(self.hidden_intercept), np.array(self.intercept)]
        mlp.n_layers_, mlp.n_outputs_, mlp.n_features_in_ = 3, self.coef.shape[0], self.n_features
        mlp.out_activation_ = "logistic" if self.binary else "softmax"
        mlp.classes_, mlp._label_binarizer = codes, LabelBinarizer().fit(codes)
        mlp.n_iter_, mlp.t_ = 0, 0
        return pipeline


HEADS["mlp"] = MLPHead


def head_from_pipeline(pipeline: Pipeline, classes: np.ndarray, temperature: float = 1.0, *,
                       thresholds: np.ndarray | None = None) -> LinearHead:
    """The head of any fitted ``fit_head_estimator`` pipeline: linear, multi-label (its ridge step) or MLP."""
    if "mlp" in pipeline.named_steps:
        return MLPHead.from_pipeline(pipeline, classes, temperature)
    if "ridge" in pipeline.named_steps:
        return MultiLabelHead.from_pipeline(pipeline, classes, temperature, thresholds=thresholds)
    return LinearHead.from_pipeline(pipeline, classes, temperature)


def multilabel_heads(X: np.ndarray, Y: np.ndarray, members: Sequence[tuple[int, float]],
                     classes: np.ndarray) -> list[MultiLabelHead]:
    """Multi-label heads on (X, Y) per member (m, C): X's first m columns, at C (``stc._ridge.ridge_fits``)."""
    return [MultiLabelHead(classes=classes, mean=fit.mean, scale=fit.scale, coef=fit.coef, intercept=fit.intercept,
                           thresholds=np.full(len(classes), 0.5)) for fit in ridge_fits(X, Y, members)]


def fit_head_estimator(head: str, C: float | None, seed: int | None, class_weight: str | None, X: np.ndarray,
                       y: np.ndarray, *, multilabel: bool = False) -> Pipeline:
    """The scikit-learn estimator of head family ``head`` ("linear" or "mlp", ``HEAD_FAMILIES``) fitted on (X, y):
    the one place the final model fits its head (the search's label-set chains: ``stc._ridge.ridge_decisions``). ``C``
    is the inverse strength of the L2 penalty for all (``make_mlp_classifier``, ``stc.head.ridge_alpha``);
    ``class_weight="balanced"`` reaches the MLP as sample weights (it takes no class weights)."""
    if head == "linear" and multilabel:
        require(class_weight is None, "class_weight does not apply to label sets")
        return multilabel_heads(X, y, [(X.shape[1], C)], np.arange(y.shape[1]))[0].to_pipeline(C)
    if head == "linear":
        return make_final_classifier(C, seed, class_weight).fit(X, y)
    require(head == "mlp" and not multilabel, f"no {head!r} head for {'label sets' if multilabel else 'labels'}")
    weights = None if class_weight is None else compute_sample_weight(class_weight, y)
    return make_mlp_classifier(C, seed).fit(X, y, mlp__sample_weight=weights)
