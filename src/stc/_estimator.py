"""General helpers of stc's estimators (STC and the baselines): label encoding, the validation split, and the
predict methods of an estimator whose ``transform`` feeds a fitted ``classifier_``."""

from __future__ import annotations

import numpy as np
from sklearn.utils import Tags, TransformerTags

from ._multilabel import check_label_columns, encode_label_sets, is_multilabel_target
from ._validation import check_inputs, check_labels
from .calibration import probabilities
from .head import plain_label
from .folds import split_rows

__all__ = ["encode_labels", "encode_targets", "validation_split", "check_validation_rows", "fit_split", "plain_label",
           "text_estimator_tags", "FeatureReadoutMixin"]


def validation_split(texts: list[str], codes: np.ndarray, classes: np.ndarray, X_val, y_val, *,
                     validation_size: float, random_state: int):
    """(train texts, train codes, validation texts, validation codes): the given validation set, else a seeded
    stratified split of the training texts (a class of a single text stays in training)."""
    if X_val is not None or y_val is not None:
        if X_val is None or y_val is None:
            raise ValueError("give both X_val and y_val, or neither")
        val_texts = check_inputs(X_val, "X_val", pairs=bool(texts) and isinstance(texts[0], tuple))
        val_labels = check_labels(y_val, len(val_texts), "y_val")
        unknown = sorted(set(val_labels.tolist()) - set(classes.tolist()), key=str)
        if unknown:
            raise ValueError(f"y_val holds labels absent from y: {unknown[:5]}")
        return texts, codes, val_texts, np.searchsorted(classes, val_labels)
    train_index, val_index = split_rows(codes, validation_size, random_state)
    return ([texts[i] for i in train_index], codes[train_index], [texts[i] for i in val_index], codes[val_index])


def check_validation_rows(validation_rows, codes: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
    """The given validation rows of a pool labelled ``codes`` as an index array (None: none given), refused unless
    they are distinct row indices leaving rows to train on, whose labels all occur in those training rows."""
    if validation_rows is None:
        return None
    rows = np.asarray(validation_rows)
    if rows.ndim != 1 or not len(rows) or rows.dtype.kind not in "iu":
        raise ValueError(f"validation_rows must be a non-empty sequence of row indices, got {validation_rows!r}")
    if rows.min() < 0 or rows.max() >= len(codes) or len(np.unique(rows)) != len(rows):
        raise ValueError(f"validation_rows must be distinct indices of the {len(codes)} rows, in [0, {len(codes)})")
    if len(rows) == len(codes):
        raise ValueError("validation_rows holds every row: leave some to train on")
    if codes.ndim == 2:  # multi-label: a label carried only by validation rows
        unknown = np.flatnonzero((codes[rows].sum(axis=0) > 0) & (np.delete(codes, rows, axis=0).sum(axis=0) == 0))
    else:
        unknown = np.setdiff1d(codes[rows], np.delete(codes, rows))
    if len(unknown):
        raise ValueError(f"the labels of validation_rows include some that no other row has: "
                         f"{classes[unknown][:5].tolist()}")
    return rows.astype(np.int64)


def encode_labels(y, n_texts: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, codes) of labels y; at least two classes."""
    labels = check_labels(y, n_texts, "y")
    classes, codes = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y holds a single class ({classes[0].item()!r}): at least two are needed")
    return classes, codes


#: Characters that join tags in a single label column (``Comedy;Drama``, ``news|sport``).
_TAG_SEPARATORS = (";", "|", ",")


def encode_targets(y, n_texts: int, name: str = "y") -> tuple[np.ndarray, np.ndarray, str]:
    """(classes, codes, target) of a target: class codes (n_texts,) of single labels, target "labels"; or for a
    multi-label target (label collections, or a 2-D 0/1 indicator) the indicator matrix (n_texts, n_labels) and
    target "label sets" or "indicator". Multi-label labels every or no text carries are refused by name."""
    if is_multilabel_target(y):
        classes, indicator, given_as_indicator = encode_label_sets(y, n_texts, name)
        check_label_columns(indicator, classes, name)
        return classes, indicator, "indicator" if given_as_indicator else "label sets"
    classes, codes = encode_labels(y, n_texts)
    _refuse_joined_tags(classes, codes, name)
    return classes, codes, "labels"


def _refuse_joined_tags(classes: np.ndarray, codes: np.ndarray, name: str) -> None:
    """A single-label target whose labels look like tag sets joined by one separator (most texts' labels hold it,
    and its parts are fewer than the labels, as ``Comedy;Drama`` is): refused, naming how to read them as sets."""
    if classes.dtype.kind != "U" or len(classes) < 3:
        return
    labels = classes[codes]
    for separator in _TAG_SEPARATORS:
        joined = np.char.find(labels, separator) >= 0
        if joined.mean() <= 0.5:
            continue
        parts = {part.strip() for label in classes for part in str(label).split(separator)}
        if len(parts) < len(classes):
            example = str(labels[np.flatnonzero(joined)[0]])
            raise ValueError(f"{name} looks like tag sets joined by {separator!r} ({joined.mean():.0%} of the labels "
                             f"hold it, e.g. {example!r}: {len(classes)} combinations of {len(parts)} tags); read "
                             f"them as label sets (stc fit --label-separator '{separator}', or pass y as lists of "
                             f"labels)")


def validation_targets(y_val, n_texts: int, classes: np.ndarray, target: str) -> np.ndarray:
    """Codes (or the indicator matrix) of validation labels, in the training target's form and ``classes``."""
    if target == "labels":
        if is_multilabel_target(y_val):
            raise ValueError("y_val holds label sets but y holds one label per text: give both in the same form")
        labels = check_labels(y_val, n_texts, "y_val")
        unknown = sorted(set(labels.tolist()) - set(classes.tolist()), key=str)
        if unknown:
            raise ValueError(f"y_val holds labels absent from y: {unknown[:5]}")
        return np.searchsorted(classes, labels)
    if not is_multilabel_target(y_val):
        raise ValueError("y holds label sets but y_val holds one label per text: give both in the same form")
    return encode_label_sets(y_val, n_texts, "y_val", classes=classes)[1]


def fit_split(X, y, X_val, y_val, *, validation_size: float, random_state: int, pairs_allowed: bool = False):
    """The preamble of every estimator's fit: (classes, train texts, train codes, validation texts, validation
    codes) from texts X, labels y and the optional validation set (else a seeded stratified split of X). With
    ``pairs_allowed``, X may be text pairs ((a, b) tuples); otherwise pairs are refused naming the estimator's
    limit."""
    texts = check_inputs(X, "X") if pairs_allowed else check_inputs(X, "X", pairs=False)
    classes, codes = encode_labels(y, len(texts))
    return (classes, *validation_split(texts, codes, classes, X_val, y_val, validation_size=validation_size,
                                       random_state=random_state))


def text_estimator_tags(tags: Tags, *, transformer: bool) -> Tags:
    """scikit-learn tags of an stc estimator: X is a list of texts (strings), never a 2-D numeric array; with
    ``transformer``, ``transform`` gives float features whose dtype does not follow the input's."""
    tags.input_tags.two_d_array = False
    tags.input_tags.string = True
    if transformer:
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
    return tags


class FeatureReadoutMixin:
    """predict, predict_proba and decision_function of an estimator whose ``transform`` gives the features of its
    fitted ``classifier_`` (labels decoded through ``classes_``). Each method calls ``transform`` before it reads
    ``classifier_``: ``transform`` raises NotFittedError on an unfitted model, the attribute only AttributeError."""

    def __sklearn_tags__(self) -> Tags:
        return text_estimator_tags(super().__sklearn_tags__(), transformer=True)

    def decision_function(self, X) -> np.ndarray:
        features = self.transform(X)
        return self.classifier_.decision_function(features)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order; calibrated by ``temperature_`` when one was fitted."""
        return self.proba_from_features(self.transform(X))

    def proba_from_features(self, features: np.ndarray) -> np.ndarray:
        """``predict_proba`` of already extracted features: the one place probabilities are made (explain, serving
        and export read it too), the final logits divided by ``temperature_`` (absent or 1: the classifier's own)."""
        temperature = getattr(self, "temperature_", 1.0)
        if temperature == 1.0:
            return self.classifier_.predict_proba(features)
        return probabilities(self.classifier_.decision_function(features), temperature)

    def predict(self, X) -> np.ndarray:
        features = self.transform(X)
        return self.classes_[self.classifier_.predict(features)]
