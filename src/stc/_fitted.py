"""STCClassifier's fitted state: the ``readout_`` it holds, the fitted attributes read from it, and ``save`` /
``load`` of the estimator with its readout.

The attributes (``kept_columns_``, ``temperature_``, ``configuration_`` ...) are read-only views, so code written
against them keeps working while the readout stays the one place the fitted state lives; to change a fitted model,
replace its readout (``clf.readout_ = dataclasses.replace(clf.readout_, temperature=2.0)``), which checks it again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
import warnings
from pathlib import Path
from typing import Self

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline

from ._metrics import check_class_weight
from ._multilabel import decode_indicator, encode_label_sets
from ._persist import recover_interrupted_save, save_directory
from ._readout_fields import thawed
from .extract import parse_key
from .model_card import write_model_card
from .readout import BACKBONE_COPY, CONFIG_FILE, FitRecord, Readout
from .sparsify import select_neurons

__all__ = ["FittedState", "fit_record", "cv_results", "best_index"]


def _view(read: Callable[[Readout], object], doc: str) -> property:
    """A read-only attribute computed from ``readout_`` (AttributeError before fit, so ``hasattr`` says unfitted)."""
    return property(lambda self: read(self.readout_), doc=doc)


def _deprecated_alias(name: str, current: str) -> property:
    """An old name of a fitted attribute: the same value, with a FutureWarning naming the current one."""
    def read(self):
        warnings.warn(f"{name} is deprecated and will be removed: it always equalled {current}; read {current}",
                      FutureWarning, stacklevel=2)
        return getattr(self, current)
    return property(read, doc=f"deprecated: {current}")


class FittedState:
    """The fitted side of ``STCClassifier`` (a mixin: it reads the host's parameters, ``_fitted`` and
    ``_check_params``). ``classes_`` and ``validation_`` are plain attributes, set while ``fit`` runs and by
    ``load``."""

    kept_columns_ = _view(lambda r: {key: np.array(columns) for key, columns in r.kept_columns.items()},
                          "{key: neuron indices} of every array read at prediction (copies: changing them changes "
                          "nothing)")
    kept_neurons_ = _view(lambda r: r.neuron_names, "names of the features, in column order")
    n_features_ = _view(lambda r: r.n_features, "the number of features")
    exit_layer_ = _view(lambda r: r.exit_layer, "the deepest layer read: predict runs the backbone this far")
    configuration_ = _view(lambda r: r.configuration_record(), "the chosen configuration (a row of the search)")
    temperature_ = _view(lambda r: r.temperature, "the calibration temperature (1: none)")
    backbone_ = _view(lambda r: r.backbone.record(), "the backbone's name, source, GGUF file, sha256, depth")
    extraction_ = _view(lambda r: r.extraction_record(), "how texts are tokenised")
    val_score_ = _view(lambda r: r.scores.validation, "the chosen configuration's held-out score")
    val_score_se_ = _view(lambda r: r.scores.validation_se, "that score's standard error over the folds (or the "
                                                             "validation blocks)")
    cv_score_ = _deprecated_alias("cv_score_", "val_score_")
    cv_score_se_ = _deprecated_alias("cv_score_se_", "val_score_se_")
    expected_score_ = _view(lambda r: r.scores.expected, "the expected test score, the selection's optimism out")
    expected_score_se_ = _view(lambda r: r.scores.expected_se, "its standard error")
    probe_scores_ = _view(lambda r: thawed(r.record.probe_scores), "every probe's C, score and non-zero count")
    search_results_ = _view(lambda r: thawed(r.record.search_results), "every configuration the search scored")
    kept_counts_ = _view(lambda r: thawed(r.record.kept_counts), "neurons kept per probe at each η of the grid")
    selection_ = _view(lambda r: thawed(r.record.selection), "how the setting was chosen")
    metric_ = _view(lambda r: r.metric, "the metric the fit chose by (``metric`` with 'auto' resolved)")
    target_ = _view(lambda r: r.target, "what y was: 'labels' (one per text), 'label sets' or 'indicator'")
    fit_seconds_ = _view(lambda r: r.record.fit_seconds, "the fit's time")
    fit_timings_ = _view(lambda r: thawed(r.record.fit_timings), "the fit's time by phase")
    cv_results_ = _view(lambda r: cv_results(thawed(r.record.search_results)),
                        "every candidate the search scored, as scikit-learn's ``GridSearchCV.cv_results_``: a dict "
                        "of equal-length lists (see ``cv_results``)")
    best_index_ = _view(lambda r: best_index(thawed(r.record.search_results), r.configuration_record()),
                        "the chosen candidate's index in ``cv_results_`` (None for a readout whose parameters "
                        "the search never scored)")

    # --- predictions from the fitted head (``transform``, the host's, gives the features) ---------------------------

    def decision_function(self, X) -> np.ndarray:
        """Decision values of the final logistic regression (the head's, before the temperature).

        Parameters
        ----------
        X : list of str
            The texts.

        Returns
        -------
        ndarray of shape (n_texts,) for two classes (class 1's), else (n_texts, n_classes)
        """
        features = self.transform(X)
        return self.readout_.head.decision(features)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, calibrated by ``temperature_`` when one was fitted.

        Parameters
        ----------
        X : list of str
            The texts.

        Returns
        -------
        ndarray of shape (n_texts, n_classes)
            Columns in ``classes_`` order; the same numbers ``stc predict``, ``stc serve`` and ``explain`` give
            (one head computes them all: ``stc.head.LinearHead``).
        """
        features = self.transform(X)
        return self.readout_.head.probabilities(features)

    def proba_from_features(self, features: np.ndarray) -> np.ndarray:
        """``predict_proba`` of already extracted features (``transform``'s output, (n_texts, n_features_))."""
        return self._fitted().head.probabilities(features)

    def predict(self, X):
        """The predicted labels of texts X.

        Parameters
        ----------
        X : list of str
            The texts.

        Returns
        -------
        ndarray of shape (n_texts,) holding values of ``classes_``; for a model fitted on label sets a list of
        tuples (each text's labels, in ``classes_`` order; empty when no label reaches its threshold), and for one
        fitted on an indicator matrix the 0/1 indicator array (n_texts, n_labels), as ``OneVsRestClassifier``.
        """
        features = self.transform(X)
        labels = self.readout_.head.labels(features)
        return decode_indicator(labels, self.classes_) if self.target_ == "label sets" else labels

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy of ``predict`` on texts X against y; for multi-label models subset accuracy (every label of a
        text right), as scikit-learn's multi-label classifiers score."""
        self._fitted()
        if self.target_ == "labels":
            return ClassifierMixin.score(self, X, y, sample_weight=sample_weight)
        truth = encode_label_sets(y, len(X), "y", classes=self.classes_)[1]
        predicted = self.readout_.head.labels(self.transform(X))
        return float(accuracy_score(truth, predicted, sample_weight=sample_weight))

    @property
    def classifier_(self) -> Pipeline:
        """The final standardisation + logistic regression as a scikit-learn pipeline (classes: the codes of
        ``classes_``), rebuilt from ``readout_.head`` for code written against scikit-learn; stc itself computes
        with the head (``stc.head.LinearHead``), in float64, and with the temperature."""
        readout = self.readout_
        C = readout.configuration["C"]
        return readout.head.to_pipeline(None if C is None else float(C), self.random_state, self.class_weight_)

    @property
    def class_weight_(self) -> str | None:
        """The class weights the fit used: ``class_weight`` with "auto" resolved by the fit's metric."""
        self._fitted()
        return check_class_weight(self.class_weight, self.metric_, multilabel=self.target_ != "labels")

    def save(self, directory, *, copy_backbone: bool = False, data_name: str | None = None) -> None:
        """Write the model to ``directory`` as JSON + safetensors (no pickle) with a model card (``README.md``),
        atomically.

        Parameters
        ----------
        directory : str or Path
            Where to write; an existing stc model there is replaced, anything else is refused.
        copy_backbone : bool, default False
            Also copy the backbone's weights and tokenizer in, so the model loads without the hub.
        data_name : str, optional
            The name of the data the model was fitted on, for the model card (left out when not given).
        """
        fitted = self._fitted()
        readout = replace(fitted, params=self.get_params(), backbone=replace(fitted.backbone, copy=None))

        def write(partial: Path) -> None:
            model = readout
            if copy_backbone:
                backbone = readout.load_backbone(model=self.model, device=self.device, dtype=self.dtype,
                                                 trust_remote_code=self.trust_remote_code, check=False)
                backbone.model.save_pretrained(partial / BACKBONE_COPY)
                backbone.tokenizer.save_pretrained(partial / BACKBONE_COPY)
                model = replace(readout, backbone=replace(readout.backbone, copy=str(partial / BACKBONE_COPY)))
            model.to_files(partial)
            write_model_card(model, partial, data_name=data_name)

        save_directory(directory, write, marker=CONFIG_FILE)

    @classmethod
    def load(cls, directory, *, check_backbone: bool = True, device: str | None = None,
             trust_remote_code: bool = False) -> Self:
        """A model saved with ``save``; a damaged file or a changed backbone is a clear error (ValueError).

        ``device`` overrides the saved one; ``check_backbone`` (default) loads the backbone and checks its weights
        hash. A model file cannot switch on ``trust_remote_code`` by itself: the caller must pass it, trusting the
        source.
        """
        directory = Path(directory)
        recover_interrupted_save(directory, marker=CONFIG_FILE)
        readout = Readout.from_files(directory)
        params = dict(readout.params)
        if readout.backbone.copy is not None:
            params["model"] = readout.backbone.copy
        try:
            clf = cls(**params)
        except TypeError as error:
            raise ValueError(f"{directory / CONFIG_FILE}: unexpected parameters ({error})") from None
        if device is not None:
            clf.set_params(device=device)
        if not (clf.trust_remote_code is False or trust_remote_code is True):
            raise ValueError(f"{directory} is not a valid stc model: it asks for trust_remote_code="
                             f"{clf.trust_remote_code!r}, which runs code shipped with its backbone; pass "
                             f"trust_remote_code=True to load only if you trust where it came from")
        try:
            clf._check_params()
        except (ValueError, TypeError) as error:
            raise ValueError(f"{directory} is not a valid stc model: {error}") from None
        if check_backbone:
            try:
                readout.load_backbone(model=clf.model, device=clf.device, dtype=clf.dtype,
                                      trust_remote_code=clf.trust_remote_code)
            except ValueError as error:
                raise ValueError(f"{directory}: {error}") from None
        clf.readout_, clf.classes_ = readout, readout.classes
        if readout.record.validation is not None:
            clf.validation_ = thawed(readout.record.validation)
        return clf


def fit_record(table, probes: Mapping, etas, validation: dict, selection: dict, timings: dict,
               seconds: float) -> FitRecord:
    """What a fit did, for the report and the model card: every probe, every configuration scored, the kept counts
    along the η grid, the validation protocol, and the time by phase."""
    by_key = sorted(probes.items(), key=lambda item: parse_key(item[0]))
    probe_scores = [{"key": key, "representation": parse_key(key)[0], "layer": parse_key(key)[1],
                     "pooling": parse_key(key)[2], "C": probe.C, "val_score": probe.val_score,
                     "n_nonzero": probe.n_nonzero, "scores_by_C": probe.scores_by_C, "Cs": probe.Cs}
                    for key, probe in by_key]
    etas = sorted(etas)
    kept_counts = {"etas": etas, "counts": {key: [int(len(select_neurons(probe.importance, eta))) for eta in etas]
                                            for key, probe in by_key}}
    return FitRecord(probe_scores=probe_scores, search_results=[candidate.as_row() for candidate in table],
                     kept_counts=kept_counts, validation=validation, selection=selection, fit_seconds=seconds,
                     fit_timings={phase: round(value, 3) for phase, value in timings.items()})


#: cv_results_'s parameter columns: the search row's field behind each.
_PARAM_COLUMNS = {"param_readout_kind": "readout", "param_representations": "representations",
                  "param_poolings": "poolings", "param_eta": "eta", "param_exit_layer": "exit_layer", "param_C": "C",
                  "param_dense_key": "dense_key", "param_head": "head"}


def cv_results(rows: list[dict]) -> dict[str, list]:
    """The search's record in scikit-learn's ``cv_results_`` convention, one entry per candidate, in the order
    scored (stage 1, then 2, then 3).

    Keys: ``param_readout_kind`` (sparse, dense or hybrid), ``param_representations``, ``param_poolings``,
    ``param_eta`` (None for dense), ``param_exit_layer``, ``param_C`` (the final classifier's: the logistic
    regression's, or the ridge's of label sets, ``stc.head.ridge_alpha``; None in label-set models saved before it
    was searched), ``param_dense_key`` (the whole layer a dense or hybrid readout reads), ``param_head``
    ("linear", or "mlp" for the third stage's MLP heads; None in models saved before it), ``params`` (those as one
    dict per candidate), ``n_features`` (mean over folds), ``stage``, ``mean_test_score`` (the held-out score the search ranked by: the
    mean over folds, or one split's score), ``se_test_score`` (its standard error over the blocks),
    ``split{k}_test_score`` (the score on each fold, or validation block, k) and ``rank_test_score`` (1 = best;
    equal scores share a rank). "test" means held out, as in scikit-learn."""
    results: dict[str, list] = {column: [row[field] for row in rows] for column, field in _PARAM_COLUMNS.items()}
    results["params"] = [{column[len("param_"):]: row[field] for column, field in _PARAM_COLUMNS.items()}
                         for row in rows]
    results["n_features"] = [row["n_features"] for row in rows]
    results["stage"] = [row["stage"] for row in rows]
    results["mean_test_score"] = [row["val_score"] for row in rows]
    results["se_test_score"] = [row["score_se"] for row in rows]
    n_blocks = max((len(row["block_scores"]) for row in rows), default=0)
    for k in range(n_blocks):
        results[f"split{k}_test_score"] = [row["block_scores"][k] if k < len(row["block_scores"]) else None
                                           for row in rows]
    means = np.array(results["mean_test_score"], dtype=np.float64)
    results["rank_test_score"] = [int(np.sum(means > value)) + 1 for value in means]
    return results


def best_index(rows: list[dict], chosen: dict) -> int | None:
    """The position of the chosen configuration among the search's rows, by its parameters (the first match);
    None for a readout built by hand from parameters the search never scored."""
    wanted = [chosen.get(field) for field in _PARAM_COLUMNS.values()]
    for index, row in enumerate(rows):
        if [row.get(field) for field in _PARAM_COLUMNS.values()] == wanted:
            return index
    return None
