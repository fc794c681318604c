"""The STC report: figures (PNG), their data (JSON) and one self-contained HTML page for a fitted model.

The report imports the core; the core never imports the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._version import __version__
from .._estimator import encode_labels, validation_split
from ._data import (RELIABILITY_BINS, configuration_summary, confusion, embedding_baseline, eta_curves, exit_curve,
                    kept_per_layer, layer_curve, neuron_strength, neuron_texts, reliability, search_table, top_neurons)
from ._figures import save_figure
from ._multilabel import (UNAVAILABLE_EMBEDDING, check_dataset_labels, embedding_texts, label_neurons,
                          label_set_indicator, per_label_scores, pooled_reliability)
from ._html import render_page

__all__ = ["build_report", "read_embedding_score"]

#: figure name -> the data section it is drawn from
_FIGURE_SECTIONS = {"layer_curve": "layer_curve", "kept_per_layer": "kept_per_layer", "kept_vs_eta": "eta_curves",
                    "metric_vs_eta": "eta_curves", "metric_vs_exit": "exit_curve",
                    "confusion_matrix": "confusion_matrix", "reliability": "reliability",
                    "top_neurons": "top_neurons", "per_label": "per_label", "label_neurons": "label_neurons"}


def read_embedding_score(path) -> dict:
    """A last-layer embedding score from JSON: ``{"val_score": x, ...}`` or an ``stc demo`` summary."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if isinstance(document, dict) and isinstance(document.get("val_score"), (int, float)):
        return {"layer": None, "pooling": "native", **document, "val_score": float(document["val_score"]),
                "source": document.get("source", f"read from {path.name}")}
    for row in document.get("rows", []) if isinstance(document, dict) else []:
        if "embedding" in str(row.get("method", "")) and isinstance(row.get("val"), (int, float)):
            return {"val_score": float(row["val"]), "layer": row.get("exit_layer"), "pooling": "native",
                    "source": f"the '{row['method']}' row of {path.name}"}
    raise ValueError(f"{path} holds no embedding score: expected a 'val_score' number or an stc demo summary")


def build_report(clf, dataset, out, *, embedding: dict | None = None, fit_embedding: bool = True,
                 top_k: int = 12, texts_per_neuron: int = 3, show_progress_bar: bool = False) -> Path:
    """Write ``index.html``, one PNG + JSON per figure, and ``report.json`` into ``out``; returns the page's path.

    ``dataset`` (a ``stc.data.TextDataset``) supplies the training texts (top-activating texts), the test split
    (test metric, confusion matrix) and, when no ``embedding`` score is given and ``fit_embedding`` is set, the
    train/validation texts the last-layer embedding baseline is fitted on: the dataset's validation split, else the
    same seeded split the classifier makes.

    A multi-label model (fitted on label sets; ``dataset`` must then hold label sets) gets, in place of the
    confusion matrix, the multi-label metrics and a per-label table and figure (``per_label``); each label's
    strongest neurons (``label_neurons``); reliability pooled over labels as binary events; and the top neurons
    ranked by their weights pooled over labels.
    """
    check_is_fitted(clf, "readout_")
    for name, value in (("top_k", top_k), ("texts_per_neuron", texts_per_neuron)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    multilabel = bool(clf.readout_.multilabel)
    train, validation, test = dataset.train, dataset.validation, dataset.test
    evaluation = test if test is not None else validation
    if multilabel:
        check_dataset_labels(clf, dataset.name, (train, validation, test))
    else:
        check_dataset_labels(clf, dataset.name, (train, evaluation))  # one label per text
        seen = list(train.labels) + (list(evaluation.labels) if evaluation is not None else [])
        unknown = sorted({str(x) for x in seen} - {str(c) for c in clf.classes_})
        if unknown:
            raise ValueError(f"dataset {dataset.name!r} holds labels the model never saw: {unknown[:5]}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unavailable = None
    if embedding is None and fit_embedding:
        embedding, unavailable = _embedding(clf, train, validation)
    sections = {"layer_curve": layer_curve(clf, embedding), "kept_per_layer": kept_per_layer(clf),
                "eta_curves": eta_curves(clf), "exit_curve": exit_curve(clf)}
    test_score, n_test = _evaluate(clf, evaluation, "test" if test is not None else "validation", sections)
    sections["configuration"] = configuration_summary(clf, test_score, n_test, embedding)
    if unavailable:
        sections["configuration"]["embedding_unavailable"] = unavailable
    sections["search"] = search_table(clf)
    _neurons(clf, train, sections, top_k, texts_per_neuron, show_progress_bar)
    for name, section in _FIGURE_SECTIONS.items():
        if section in sections:
            save_figure(name, sections[section], out / f"{name}.png")
            _write_json(out / f"{name}.json", sections[section])
        else:  # a figure an earlier report left in ``out`` (the page shows every PNG there) is not this one's
            for stale in (out / f"{name}.png", out / f"{name}.json"):
                stale.unlink(missing_ok=True)
    _write_json(out / "configuration.json", sections["configuration"])
    context = {"dataset": dataset.name, "description": dataset.description, "n_train": len(train),
               "n_val": len(validation) if validation is not None else int(np.ceil(clf.validation_size * len(train))),
               "stc_version": __version__}
    _write_json(out / "report.json", {"context": context, **sections})
    page = out / "index.html"
    page.write_text(render_page(out, sections, context), encoding="utf-8")
    return page


def _embedding(clf, train, validation) -> tuple[dict | None, str | None]:
    """(the last-layer embedding baseline fitted on the same train/validation texts, None); for a multi-label
    model whose baseline cannot take label sets, (None, why)."""
    if clf.readout_.multilabel:
        fit_texts, fit_labels, val_texts, val_labels = embedding_texts(clf, train, validation)
        try:
            return embedding_baseline(clf, fit_texts, fit_labels, val_texts, val_labels), None
        except (TypeError, ValueError) as error:  # the baseline does not fit label sets (yet)
            return None, f"{UNAVAILABLE_EMBEDDING} ({error})"
    if validation is not None:
        fit_texts, fit_labels = train.texts, train.labels
        val_texts, val_labels = validation.texts, validation.labels
    else:
        classes, codes = encode_labels(train.labels, len(train.texts))
        fit_texts, fit_codes, val_texts, val_codes = validation_split(
            train.texts, codes, classes, None, None, validation_size=clf.validation_size,
            random_state=clf.random_state)
        fit_labels, val_labels = classes[fit_codes], classes[val_codes]
    return embedding_baseline(clf, fit_texts, fit_labels, val_texts, val_labels), None


def _evaluate(clf, evaluation, split: str, sections: dict) -> tuple[float | None, int | None]:
    """The sections of the labelled evaluation split (confusion matrix, or per-label scores for a multi-label
    model; reliability) added to ``sections``; (its score in the fit's metric, its size), None without one."""
    if evaluation is None:
        return None, None
    # One extraction of the split serves both: the labels (confusion, per-label) and the probabilities (reliability).
    decisions = clf.decision_function(evaluation.texts)
    temperature = float(getattr(clf, "temperature_", 1.0))
    if clf.readout_.multilabel:
        sections["per_label"], test_score = per_label_scores(clf, decisions, evaluation.labels, split)
        truth = label_set_indicator(clf, evaluation.labels)
        sections["reliability"] = {**pooled_reliability(decisions, truth, temperature, clf.readout_.head.classes,
                                                        RELIABILITY_BINS), "split": split}
        return test_score, len(evaluation)
    sections["confusion_matrix"], test_score = confusion(clf, decisions, evaluation.labels)
    codes = np.searchsorted(clf.classes_, np.asarray(evaluation.labels))
    sections["reliability"] = {**reliability(decisions, codes, temperature), "split": split}
    sections["confusion_matrix"]["split"] = split
    return test_score, len(evaluation)


def _neurons(clf, train, sections: dict, top_k: int, texts_per_neuron: int, show_progress_bar: bool) -> None:
    """The top neurons with their top training texts; for a multi-label model also each label's strongest
    neurons, each with its most activating training text, from the same pass over the training texts."""
    if not clf.readout_.multilabel:
        sections["top_neurons"] = top_neurons(clf, train.texts, train.labels, count=top_k,
                                              texts_per_neuron=texts_per_neuron, show_progress_bar=show_progress_bar)
        return
    per_label = label_neurons(clf)
    pooled = np.argsort(-neuron_strength(clf), kind="stable")[:top_k]
    features = sorted({int(f) for f in pooled} | {n["feature"] for entry in per_label["labels"]
                                                   for n in entry["neurons"]})
    texts = neuron_texts(clf, features, train.texts, train.labels, texts_per_neuron=texts_per_neuron,
                         show_progress_bar=show_progress_bar)
    sections["top_neurons"] = top_neurons(clf, train.texts, train.labels, count=top_k,
                                          texts_per_neuron=texts_per_neuron, texts=texts,
                                          ranked_by="their weights pooled over labels")
    for entry in per_label["labels"]:
        for neuron in entry["neurons"]:
            neuron["top_text"] = texts[neuron["feature"]][0] if texts[neuron["feature"]] else None
    sections["label_neurons"] = per_label


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1, default=_plain), encoding="utf-8")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")

