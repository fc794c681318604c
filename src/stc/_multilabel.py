"""Multi-label targets: label sets in, an indicator matrix inside, and the pieces only multi-label data needs.

A multi-label ``y`` is, as in scikit-learn, either a sequence of label collections (lists, tuples, sets; an empty
one is a text with no label) or a 2-D 0/1 indicator array. Inside stc it is always the indicator matrix ``Y``
(n_texts, n_labels) of ``uint8``, its columns in ``classes_`` order (``MultiLabelBinarizer``'s: the labels sorted).
Every stage that reads labels takes either class codes (1-D) or ``Y`` (2-D): the probes fit one binary L1 path per
label on the same standardised array (``stc._solver_multilabel``, every label's path in one loop), the final head
one ridge classifier for every label at once on the kept neurons (``stc.heads.multilabel_heads``: one factorisation
for all labels, its C searched over ``stc.head.MULTILABEL_CS``), each label's decision mapped to a probability by
Platt's sigmoid (``MultiLabelHead.calibrated``), and each label gets its own decision threshold, chosen on held-out
decision values (``tune_thresholds``; cross-fitted over the held-out blocks when a candidate is scored, so no block
is scored with a threshold it chose: ``cross_fitted_predictions``). A neuron's importance to a probe is its squared
weights summed over the labels, as over the classes of a single-label probe, so the kept neurons are one set shared
by every label's head.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit

__all__ = ["is_multilabel_target", "encode_label_sets", "decode_indicator", "check_label_columns",
           "tune_thresholds", "probability_thresholds", "cross_fitted_predictions", "multilabel_report"]

_COLLECTIONS = (list, tuple, set, frozenset)


def is_multilabel_target(y) -> bool:
    """Whether ``y`` is a multi-label target: a 2-D array, or a sequence whose elements are label collections."""
    if isinstance(y, (str, bytes)):
        return False
    if hasattr(y, "ndim") and getattr(y, "ndim") == 2:
        return True
    try:
        first = next(iter(y), None)
    except TypeError:
        return False
    return isinstance(first, _COLLECTIONS) or (isinstance(first, np.ndarray) and first.ndim == 1)


def encode_label_sets(y, n_texts: int, name: str = "y", *,
                      classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(classes, Y, given_as_indicator) of a multi-label target: the labels sorted (or ``classes`` when given, as
    for validation labels), the (n_texts, n_labels) uint8 indicator matrix, and whether ``y`` was an indicator array.

    Refused, each with a message naming the problem: a count that is not ``n_texts``, an indicator that is not 0/1,
    a sequence that mixes label collections and plain labels, unhashable or mixed-type labels, a label absent from
    ``classes``, fewer than two labels."""
    if hasattr(y, "ndim") and y.ndim == 2:
        return _from_indicator(np.asarray(y), n_texts, name, classes)
    values = list(y)
    if len(values) != n_texts:
        raise ValueError(f"{name} has {len(values)} label sets but there are {n_texts} texts")
    sets = []
    for index, value in enumerate(values):
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value.tolist()
        if not isinstance(value, _COLLECTIONS):
            raise ValueError(f"{name} mixes label sets and plain labels: {name}[{index}] is {value!r}; give every "
                             f"text a collection of labels (an empty one for none), or every text one label")
        for label in value:
            if isinstance(label, np.generic):
                label = label.item()
            if label is None or isinstance(label, _COLLECTIONS) or not _hashable(label):
                raise TypeError(f"{name}[{index}] holds {label!r}; labels must be hashable scalars")
        sets.append({label.item() if isinstance(label, np.generic) else label for label in value})
    kinds = {type(label) for labels in sets for label in labels}
    if len(kinds) > 1:
        raise TypeError(f"{name} mixes label types {sorted(k.__name__ for k in kinds)}; use one type")
    if classes is None:
        classes = np.asarray(sorted({label for labels in sets for label in labels}))
        if len(classes) < 2:
            raise ValueError(f"{name} holds {len(classes)} distinct label(s) ({classes.tolist()}): multi-label "
                             f"targets need at least two")
    position = {label: j for j, label in enumerate(np.asarray(classes).tolist())}
    unknown = sorted({label for labels in sets for label in labels if label not in position}, key=str)
    if unknown:
        raise ValueError(f"{name} holds labels never seen in training: {unknown[:5]}")
    Y = np.zeros((n_texts, len(classes)), dtype=np.uint8)
    for row, labels in enumerate(sets):
        Y[row, [position[label] for label in labels]] = 1
    return np.asarray(classes), Y, False


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _from_indicator(Y: np.ndarray, n_texts: int, name: str,
                    classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, bool]:
    if Y.shape[0] != n_texts:
        raise ValueError(f"{name} has {Y.shape[0]} rows but there are {n_texts} texts")
    if Y.dtype == bool:
        Y = Y.astype(np.uint8)
    if not np.issubdtype(Y.dtype, np.number) or not np.isin(Y, (0, 1)).all():
        bad = np.argwhere(~np.isin(Y, (0, 1)))[0] if np.issubdtype(Y.dtype, np.number) else None
        where = f" ({name}[{bad[0]}, {bad[1]}] is {Y[tuple(bad)].item()!r})" if bad is not None else ""
        raise ValueError(f"{name} is a 2-D array but not a 0/1 indicator matrix{where}: give 0/1 per text and "
                         f"label, or a label collection per text")
    if classes is None:
        classes = np.arange(Y.shape[1])
        if len(classes) < 2:
            raise ValueError(f"{name} has {Y.shape[1]} column(s): multi-label targets need at least two labels")
    elif Y.shape[1] != len(classes):
        raise ValueError(f"{name} has {Y.shape[1]} columns but the model knows {len(classes)} labels")
    return np.asarray(classes), Y.astype(np.uint8), True


def check_label_columns(Y: np.ndarray, classes: np.ndarray, name: str = "y") -> None:
    """Refuse a label that every text or no text carries: its head would be a constant, fitted silently."""
    counts = Y.sum(axis=0)
    never = [classes[j].item() if isinstance(classes[j], np.generic) else classes[j]
             for j in np.flatnonzero(counts == 0)]
    always = [classes[j].item() if isinstance(classes[j], np.generic) else classes[j]
              for j in np.flatnonzero(counts == len(Y))]
    if never:
        raise ValueError(f"{name}: no text carries label(s) {never[:5]}: there is nothing to learn for them; drop "
                         f"the column(s) or add texts that carry them")
    if always:
        raise ValueError(f"{name}: every text carries label(s) {always[:5]}: there is nothing to learn for them; "
                         f"drop them or add texts without them")


def decode_indicator(Y: np.ndarray, classes: np.ndarray) -> list[tuple]:
    """Label sets (tuples in ``classes`` order) of an indicator matrix."""
    plain = [c.item() if isinstance(c, np.generic) else c for c in classes]
    return [tuple(plain[j] for j in np.flatnonzero(row)) for row in np.asarray(Y)]


def tune_thresholds(decisions: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Per label, the decision threshold (predict the label where the decision is above it) with the best F1 on
    these held-out rows; 0 (probability 0.5) for a label with no positive among them.

    Cuts lie halfway between consecutive distinct decision values; among equal F1s the cut nearest 0 wins, so a
    threshold moves from the default only for a gain."""
    decisions = np.asarray(decisions, dtype=np.float64)
    return _best_cuts(decisions, np.asarray(Y) > 0, np.argsort(-decisions, axis=0, kind="stable"))


def _best_cuts(decisions: np.ndarray, truth: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``tune_thresholds`` of every label at once, given each label's rows in decreasing order of its decision
    (``order`` (n_rows, n_labels); a stable order, so that ties keep the rows' order)."""
    columns = np.arange(decisions.shape[1])
    values = np.take_along_axis(decisions, order, axis=0)
    hits = np.take_along_axis(truth, order, axis=0)
    positives = hits.sum(axis=0)
    tp = np.cumsum(hits, axis=0)
    k = np.arange(1, len(values) + 1)[:, None]
    # a cut after position i (predict the first i + 1) is possible only where the next value is smaller
    possible = np.vstack([values[:-1] > values[1:], np.ones((1, len(columns)), dtype=bool)])
    f1 = np.where(possible, 2.0 * tp / (k + positives), -1.0)
    cuts = np.vstack([(values[:-1] + values[1:]) / 2.0, values[-1:] - 1.0])
    nearest = np.where(f1 >= f1.max(axis=0) - 1e-12, np.abs(cuts), np.inf)
    thresholds = cuts[np.argmin(nearest, axis=0), columns]
    return np.where(positives > 0, thresholds, 0.0)


def probability_thresholds(decisions: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``tune_thresholds`` as the probabilities a ``MultiLabelHead`` holds (each kept strictly inside (0, 1))."""
    return np.clip(expit(tune_thresholds(decisions, Y)), 1e-9, 1 - 1e-9)


def cross_fitted_predictions(decisions: np.ndarray, Y: np.ndarray, blocks: Sequence[np.ndarray]) -> np.ndarray:
    """Indicator predictions of held-out decision values, each block thresholded by ``tune_thresholds`` on the
    other blocks' rows (one block: on itself), so no block's score saw its own labels through a threshold."""
    decisions = np.asarray(decisions, dtype=np.float64)
    truth = np.asarray(Y) > 0
    predictions = np.zeros(decisions.shape, dtype=np.uint8)
    if len(blocks) == 1:
        predictions[blocks[0]] = decisions[blocks[0]] > tune_thresholds(decisions[blocks[0]], truth[blocks[0]])
        return predictions
    # One sort of every row per label serves every block: the other blocks' rows, in that order, are the sorted
    # rows with the block's left out (a stable sort of them would give the same order).
    order = np.argsort(-decisions, axis=0, kind="stable")
    for block in blocks:
        inside = np.zeros(len(decisions), dtype=bool)
        inside[block] = True
        keep = ~inside[order]
        others = order.T[keep.T].reshape(decisions.shape[1], -1).T  # per label, the other rows in its order
        # renumbered as positions among the other rows, so _best_cuts reads them from the others' matrices
        rows = np.flatnonzero(~inside)
        position = np.empty(len(decisions), dtype=np.int64)
        position[rows] = np.arange(len(rows))
        predictions[block] = decisions[block] > _best_cuts(decisions[rows], truth[rows], position[others])
    return predictions


def multilabel_report(Y_true: np.ndarray, Y_pred: np.ndarray, classes: Sequence) -> dict:
    """The multi-label metrics of predictions: micro-, macro- and samples-F1, subset accuracy, Hamming loss, and
    per label its F1, precision, recall and support."""
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(Y_true, Y_pred, average=None, zero_division=0)
    return {"micro_f1": float(f1_score(Y_true, Y_pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(Y_true, Y_pred, average="macro", zero_division=0)),
            "samples_f1": float(f1_score(Y_true, Y_pred, average="samples", zero_division=1.0)),  # {} for {}: right
            "subset_accuracy": float(accuracy_score(Y_true, Y_pred)),
            "hamming_loss": float(hamming_loss(Y_true, Y_pred)),
            "per_label": {str(label): {"f1": float(f), "precision": float(p), "recall": float(r), "support": int(s)}
                          for label, p, r, f, s in zip(classes, precision, recall, f1, support)}}
