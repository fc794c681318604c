"""The numbers behind the report's multi-label figures: per-label scores on the test split, each label's strongest
neurons, reliability of the label probabilities pooled over labels, and the data checks and splits around them.

A multi-label model (``clf.readout_.multilabel``) has one linear decision per label (a ridge fit, Platt-calibrated)
on one shared set of kept neurons (``stc.heads.MultiLabelHead``): its ``coef`` row j weighs the kept neurons for
label j, and label j is predicted where its probability reaches ``thresholds[j]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit

from .._estimator import plain_label, validation_split
from .._metrics import score
from .._multilabel import decode_indicator, encode_label_sets, is_multilabel_target, multilabel_report
from ..explain import neuron_parts

__all__ = ["check_dataset_labels", "label_set_indicator", "embedding_texts", "per_label_scores", "label_neurons",
           "pooled_reliability", "UNAVAILABLE_EMBEDDING"]

#: what the embedding card says when the baseline cannot be fitted on label sets
UNAVAILABLE_EMBEDDING = "not available for multi-label models yet"

#: the neurons listed per label
PER_LABEL = 5


def check_dataset_labels(clf, dataset_name: str, splits: Sequence) -> None:
    """Refuse a dataset whose labels do not fit the model: label sets for a single-label model, one label per text
    for a multi-label one, or labels the model never saw."""
    multilabel = bool(clf.readout_.multilabel)
    for split in splits:
        if split is None:
            continue
        if is_multilabel_target(split.labels) != multilabel:
            raise ValueError(
                f"the model is multi-label but dataset {dataset_name!r} holds one label per text: read the label "
                f"column as label sets (--label-separator, load_dataset(..., label_separator=...))" if multilabel
                else f"dataset {dataset_name!r} holds label sets but the model is single-label (one label per "
                     f"text): drop --label-separator, or report on a model fitted on label sets")
        if multilabel:
            label_set_indicator(clf, split.labels, dataset_name)


def label_set_indicator(clf, labels: Sequence, dataset_name: str = "the dataset") -> np.ndarray:
    """The 0/1 indicator matrix (n_texts, n_labels) of label sets, columns in ``clf.classes_`` order; a label the
    model never saw is refused by name."""
    try:
        return encode_label_sets(labels, len(labels), f"dataset {dataset_name!r}", classes=clf.classes_)[1]
    except ValueError as error:
        raise ValueError(f"{error} (the model's labels: {[plain_label(c) for c in clf.classes_]})") from None


def embedding_texts(clf, train, validation) -> tuple[list, list, list, list]:
    """(fit texts, fit label sets, validation texts, validation label sets) for the embedding baseline: the
    dataset's validation split, else the seeded, iteratively stratified split the classifier makes."""
    if validation is not None:
        return list(train.texts), list(train.labels), list(validation.texts), list(validation.labels)
    indicator = label_set_indicator(clf, train.labels)
    fit_texts, fit_rows, val_texts, val_rows = validation_split(
        list(train.texts), indicator, np.asarray(clf.classes_), None, None, validation_size=clf.validation_size,
        random_state=clf.random_state)
    return fit_texts, decode_indicator(fit_rows, clf.classes_), val_texts, decode_indicator(val_rows, clf.classes_)


def per_label_scores(clf, decisions: np.ndarray, labels: Sequence, split: str) -> tuple[dict, float]:
    """The multi-label metrics of the model on a labelled split (micro-, macro- and samples-F1, subset accuracy,
    Hamming loss) and per label its F1, precision, recall, support (texts carrying it), texts predicted to carry
    it and decision threshold (a probability), from the model's decision values there; and the fit's metric."""
    head = clf.readout_.head
    truth = label_set_indicator(clf, labels)
    predicted = head.labels_from_probabilities(expit(np.asarray(decisions, dtype=np.float64) / head.temperature))
    report = multilabel_report(truth, predicted, head.plain_classes())
    test_score = score(truth, predicted, clf.metric_)
    for j, entry in enumerate(report["per_label"].values()):
        entry.update(threshold=float(head.thresholds[j]), predicted=int(predicted[:, j].sum()))
    return {**report, "metric": clf.metric_, "score": float(test_score), "n": int(len(truth)),
            "n_labels": int(truth.shape[1]), "mean_labels_per_text": float(truth.sum(axis=1).mean()),
            "split": split}, float(test_score)


def label_neurons(clf, per_label: int = PER_LABEL) -> dict:
    """Per label, the ``per_label`` kept neurons its head weighs most (largest |weight| in its row of ``coef``, on
    standardised activations), with their signed weights; the kept set itself is shared by every label."""
    head = clf.readout_.head
    weights = np.asarray(head.coef, dtype=np.float64)
    names = clf.readout_.neuron_names
    labels = []
    for j, label in enumerate(head.plain_classes()):
        order = np.argsort(-np.abs(weights[j]), kind="stable")[:per_label]
        labels.append({"label": label, "intercept": float(head.intercept[j]),
                       "threshold": float(head.thresholds[j]),
                       "n_nonzero": int(np.count_nonzero(weights[j])),
                       "neurons": [{**neuron_parts(names[f]), "feature": int(f), "rank": rank,
                                    "weight": float(weights[j, f])}
                                   for rank, f in enumerate(order, start=1)]})
    return {"per_label": int(per_label), "n_features": int(weights.shape[1]), "labels": labels,
            "note": "Each label's head is one linear decision (ridge, Platt-calibrated) on the same kept neurons; a label's "
                    "neurons are those with the largest |weight| in its row, on standardised activations."}


def _calibration_curve(probability: np.ndarray, truth: np.ndarray, n_bins: int) -> tuple[list[dict], float]:
    """Per equal-width probability bin: count, mean predicted probability and share of positives; and the ECE
    (the count-weighted mean gap between the two)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, probability, side="left") - 1, 0, n_bins - 1)
    table, gap = [], 0.0
    for b in range(n_bins):
        members = bins == b
        filled = bool(members.any())
        mean_p = float(probability[members].mean()) if filled else None
        rate = float(truth[members].mean()) if filled else None
        if filled:
            gap += members.sum() * abs(rate - mean_p)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(members.sum()),
                      "probability": mean_p, "positive_rate": rate})
    return table, float(gap / len(probability))


def _binary_log_loss(probability: np.ndarray, truth: np.ndarray) -> float:
    p = np.clip(probability, 1e-15, 1 - 1e-15)
    return float(-np.mean(np.where(truth > 0, np.log(p), np.log1p(-p))))


def pooled_reliability(decisions: np.ndarray, truth: np.ndarray, temperature: float, classes: Sequence,
                       n_bins: int) -> dict:
    """Reliability of a multi-label model's probabilities, pooled over labels as binary events: every (text,
    label) probability against whether the text carries the label, in ``n_bins`` equal-width probability bins,
    with ECE, log loss (binary cross-entropy per pair) and per label its ECE; before and after the temperature when
    that is not 1. ``truth``: the (n_texts, n_labels) indicator matrix."""
    decisions = np.asarray(decisions, dtype=np.float64)
    truth = np.asarray(truth)
    settings = [("before calibration", 1.0), ("after calibration", temperature)] if temperature != 1.0 \
        else [("the model's probabilities", 1.0)]
    curves = []
    for name, value in settings:
        proba = expit(decisions / value)
        bins, ece = _calibration_curve(proba.ravel(), truth.ravel(), n_bins)
        curves.append({"name": name, "temperature": float(value), "ece": ece,
                       "log_loss": _binary_log_loss(proba.ravel(), truth.ravel()), "bins": bins,
                       "per_label_ece": {str(plain_label(c)): _calibration_curve(proba[:, j], truth[:, j], n_bins)[1]
                                         for j, c in enumerate(classes)}})
    return {"events": "binary events pooled over labels", "n": int(truth.shape[0]), "n_labels": int(truth.shape[1]),
            "n_pairs": int(truth.size), "positive_rate": float(truth.mean()), "n_bins": n_bins,
            "temperature": float(temperature), "curves": curves}
