"""STCClassifier: the scikit-learn estimator that ties extraction, probes, η selection and aggregation together."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted

from ._estimator import encode_labels, plain_label, text_estimator_tags, validation_split
from ._fitted import FittedState, fit_record
from ._parameters import STC_PARAMETERS, check_parameters, parameters_doc
from ._validation import check_texts
from ._memory import workers_within
from .aggregate import DEFAULT_FINAL_CS, Split, candidate_columns, final_fit_bytes, make_final_classifier, search
from .backbone import Backbone, load_backbone
from .calibration import fit_temperature
from .distributed import joblib_backend, make_engine
from .explain import explain_prediction
from .head import LinearHead
from .extract import all_keys, default_poolings, parse_key
from .probe import fit_probe_paths, fit_probes
from .readout import BackboneReference, Readout, Scores
from .selection import Selector, configuration_rows, estimate_blocks, expected_score, make_folds, resolve_cv
from .sparsify import DEFAULT_ETAS
from .store import ActivationStore, ExtractionSettings, build_store

__all__ = ["STCClassifier"]


def _on_engine(fit):
    """Run ``fit`` inside joblib's Ray backend when ``engine='ray'``, so probe and search fits spread over the
    cluster; with the default engine nothing changes."""
    @functools.wraps(fit)
    def fit_on_engine(self, *args, **kwargs):
        with joblib_backend(make_engine(self.engine, self.ray_address, self.workers, self.gpus_per_worker)):
            return fit(self, *args, **kwargs)
    return fit_on_engine


class STCClassifier(FittedState, ClassifierMixin, BaseEstimator):
    __doc__ = f"""Sparsify-then-Classify: a text classifier read from a transformer's internal neurons.

    ``fit`` extracts every layer's pooled hidden states and FFN activations (cached on disk), fits an L1 probe per
    (representation, layer, pooling), keeps per layer the neurons holding a fraction η of the probe's squared
    weights, and trains a logistic regression on the kept neurons of layers up to an exit layer. ``predict`` runs
    the backbone only to the exit layer.

    How settings are chosen (``cv``): with up to 20,000 texts (``cv="auto"``), by stratified cross-validation
    over the training and validation texts together (5 folds below 5,000 texts, 3 from there: half the work, for
    0.8 points on full MR; see ``stc.selection``), the probes refitted inside each fold; the simplest candidate
    within one standard error of the best wins (fewest features, then the shallowest exit layer, then the smallest
    C); the final model is refitted on every text. The candidates include dense readouts (every neuron of one
    layer's pooled hidden state, the last layer's mean being the sentence-embedding baseline), so the search can
    fall back to the embedding where the sparse neurons do not beat it beyond noise. ``cv=None`` is the paper's
    protocol: every choice by the best score on one validation split, no dense readouts. Either way
    ``expected_score_`` estimates the test score with the selection's optimism left out (see ``stc.selection``).

    Parameters
    ----------
{parameters_doc(STC_PARAMETERS)}

    Attributes
    ----------
    readout_ : the fitted model as one immutable value (``stc.readout.Readout``): every attribute below but
        ``classes_``, ``validation_`` and ``store_path_`` is a read-only view of it; predictions go through it.
    classes_ : the labels, sorted; ``predict_proba`` columns follow them.
    classifier_ : the final scikit-learn pipeline (standardisation, then logistic regression) on the kept neurons,
        rebuilt from the readout's arrays for code written against it.
    kept_columns_ : dict from each array read at prediction (``"ffn.L3.mean"``: representation, layer, pooling) to
        the indices of its kept neurons, in column order (a copy: changing it changes nothing).
    kept_neurons_ : the names of the features, in column order (``"ffn.L3.mean.1021"``: array, then neuron index).
    n_features_ : the number of kept neurons, the columns the final classifier reads.
    exit_layer_ : the deepest layer read: ``predict`` runs the backbone only this far.
    configuration_ : the chosen readout as a dict: readout (sparse, dense or hybrid), representations, poolings,
        eta, exit_layer, C, n_features, val_score, score_se, and the per-block scores.
    val_score_ : the held-out score of that configuration, in ``metric`` (the cross-validation mean, or the
        validation score with one split).
    cv_score_ : the same held-out score, the figure ``cv_score_se_`` belongs to.
    cv_score_se_ : its standard error over the folds (over 5 blocks of the validation texts with one split).
    expected_score_ : the expected test score, the selection's optimism left out: each fold (each block of the
        validation texts, with one split) scored by the setting the search, replayed from its first stage on the
        other folds, chooses without it (see ``stc.selection``).
    expected_score_se_ : the standard error of ``expected_score_``.
    selection_ : how the setting was chosen, a dict: protocol ("cv" or "split"), folds, rule ("one_se" or
        "best"), n_blocks, n_candidates, n_held_out (texts scored) and unscored_classes (classes of one text,
        trained on in every fold and scored in none).
    temperature_ : the calibration temperature dividing the final logits in ``predict_proba`` (1.0: none).
    backbone_ : the backbone, a dict: name, source, gguf_file, weights_sha256, num_layers and is_decoder.
    extraction_ : how texts were tokenised and pooled, a dict: representations, poolings, max_length (resolved),
        windows and window_overlap.
    validation_ : the held-out data, a dict: given (whether X_val was passed), n_train, n_val (0 with folds) and cv
        (the number of folds, or None with one split).
    probe_scores_ : one dict per probe (key, representation, layer, pooling): its C, held-out score, non-zero
        weights, and the held-out score at every C of its grid (scores_by_C, Cs).
    search_results_ : every configuration the search scored, as dicts like ``configuration_`` (the table it was
        chosen from).
    cv_results_ : the same search as scikit-learn's ``GridSearchCV.cv_results_``: a dict of equal-length lists,
        one entry per candidate (param_readout_kind, param_representations, param_poolings, param_eta,
        param_exit_layer, param_C, param_dense_key, params, n_features, stage, mean_test_score, se_test_score,
        split0_test_score, split1_test_score, ... (one per fold), rank_test_score; "test" means held out).
    best_index_ : the chosen candidate's index in ``cv_results_``.
    kept_counts_ : neurons kept per probe at each η, a dict: etas (the sorted grid) and counts (probe key to one
        count per η).
    store_path_ : the directory of the activation store the fit read.
    fit_seconds_ : the fit's wall time in seconds.
    fit_timings_ : the fit's seconds by phase (load, extract, probes or fold probes, search, final probes, final).
    """

    def __init__(self, model: str = "minilm", *, representations: Sequence[str] = ("hidden", "ffn"),
                 poolings: Sequence[str] | None = None, etas: Sequence[float] = DEFAULT_ETAS,
                 probe_Cs: Sequence[float] | None = None, final_Cs: Sequence[float] = DEFAULT_FINAL_CS,
                 metric: str = "accuracy", cv: int | str | None = "auto", class_weight: str | None = None,
                 calibrate: bool = True, validation_size: float = 0.2, max_length: int | None = None,
                 windows: bool = False, window_overlap: int = 64, token_budget: int = 8192,
                 store_dir: str | None = None, store_dtype: str = "float32", probe_solver: str = "auto",
                 device: str = "auto", dtype: str = "auto", n_jobs: int | None = -1, random_state: int = 42,
                 show_progress_bar: bool = True, trust_remote_code: bool = False, engine: str = "local",
                 ray_address: str | None = None, workers: int | None = None, gpus_per_worker: float = 0):
        self.model = model
        self.representations = representations
        self.poolings = poolings
        self.etas = etas
        self.probe_Cs = probe_Cs
        self.final_Cs = final_Cs
        self.metric = metric
        self.cv = cv
        self.class_weight = class_weight
        self.calibrate = calibrate
        self.validation_size = validation_size
        self.max_length = max_length
        self.windows = windows
        self.window_overlap = window_overlap
        self.token_budget = token_budget
        self.store_dir = store_dir
        self.store_dtype = store_dtype
        self.probe_solver = probe_solver
        self.device = device
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.show_progress_bar = show_progress_bar
        self.trust_remote_code = trust_remote_code
        self.engine = engine
        self.ray_address = ray_address
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker

    # --- fitting ------------------------------------------------------------------------------------------------

    def _check_params(self) -> dict:
        """{name: value as fit uses it} of every parameter, checked against ``STC_PARAMETERS`` (the grids as
        tuples of floats; "engine" the engine object, its options checked together)."""
        checked = check_parameters(self, STC_PARAMETERS)
        checked["engine"] = make_engine(self.engine, self.ray_address, self.workers, self.gpus_per_worker)
        return checked

    @_on_engine
    def fit(self, X, y, *, X_val=None, y_val=None) -> STCClassifier:
        """Fit on texts X with labels y. X_val/y_val join X in cross-validation, or are the validation split."""
        started = time.perf_counter()
        timings: dict[str, float] = {}

        def lap(phase: str) -> None:
            timings[phase] = time.perf_counter() - started - sum(timings.values())

        grids = self._check_params()
        texts = check_texts(X, "X")
        self.classes_, codes = encode_labels(y, len(texts))
        given = X_val is not None or y_val is not None
        split = None  # (train texts, train codes, validation texts, validation codes), made once
        if given:  # checked, and joined to the pool, before any work
            split = validation_split(texts, codes, self.classes_, X_val, y_val, validation_size=self.validation_size,
                                     random_state=self.random_state)
            pool_texts, pool_codes = split[0] + split[2], np.concatenate([split[1], split[3]])
        else:
            pool_texts, pool_codes = texts, codes
        folds = resolve_cv(self.cv, pool_codes, self.classes_)
        if folds is None:
            if split is None:
                split = validation_split(texts, codes, self.classes_, None, None,
                                         validation_size=self.validation_size, random_state=self.random_state)
            train_texts, train_codes, val_texts, val_codes = split
            pool_texts, pool_codes = train_texts + val_texts, np.concatenate([train_codes, val_codes])
            self.validation_ = {"given": given, "n_train": len(train_texts), "n_val": len(val_texts), "cv": None}
        else:
            self.validation_ = {"given": given, "n_train": len(pool_texts), "n_val": 0, "cv": folds}
        backbone = self._load_backbone()
        lap("load")
        poolings = grids["poolings"] or default_poolings(backbone)
        settings = ExtractionSettings(representations=grids["representations"], poolings=poolings,
                                      max_length=self.max_length, windows=self.windows,
                                      window_overlap=self.window_overlap, dtype=self.store_dtype)
        store = self._build_store(backbone, pool_texts, settings, grids["engine"])
        lap("extract")
        probe_options = dict(Cs=grids["probe_Cs"], metric=self.metric, solver=self.probe_solver, n_jobs=self.n_jobs,
                             seed=self.random_state, class_weight=self.class_weight,
                             show_progress_bar=self.show_progress_bar)
        if folds is None:
            train_rows, val_rows = np.arange(len(train_texts)), np.arange(len(train_texts), len(pool_codes))
            probes = fit_probes(store, store.keys, pool_codes, train_rows, val_rows, **probe_options)
            splits = [Split(train_rows, val_rows, probes)]
            y_eval = pool_codes[val_rows]
            blocks = estimate_blocks(y_eval, self.random_state)
            rule = "best" if self.cv is None else "one_se"
            lap("probes")
        else:
            fold_rows = make_folds(pool_codes, folds, self.random_state)
            fold_paths = [fit_probe_paths(store, store.keys, pool_codes, train, val, desc=f"probes, fold {i}/{folds}",
                                          **probe_options) for i, (train, val) in enumerate(fold_rows, 1)]
            # Each probe's C is a setting like any other: the grid point with the best mean over folds.
            probe_index = {key: int(np.argmax(np.mean([paths[key].val_scores for paths in fold_paths], axis=0)))
                           for key in store.keys}
            splits = [Split(train, val, {key: paths[key].at(probe_index[key]) for key in store.keys})
                      for (train, val), paths in zip(fold_rows, fold_paths)]
            y_eval = np.concatenate([pool_codes[val] for _, val in fold_rows])
            edges = np.cumsum([0] + [len(val) for _, val in fold_rows])
            blocks = [np.arange(edges[i], edges[i + 1]) for i in range(folds)]
            rule = "one_se"
            lap("fold probes")
        selector = Selector(y_eval, blocks, self.metric, rule)
        dense_keys = ([] if self.cv is None or "hidden" not in settings.representations  # layer 0: embeddings
                      else [k for k in all_keys(backbone.num_layers, ("hidden",), poolings) if parse_key(k)[1] > 0])
        representation_sets = [(r,) for r in settings.representations]
        if len(settings.representations) > 1:
            representation_sets.append(settings.representations)
        pooling_sets = [(p,) for p in poolings] + ([tuple(poolings)] if len(poolings) > 1 else [])
        searched = search(
            splits, lambda key, columns: store.load(key, columns=columns), pool_codes,
            {key: store.dim(key) for key in store.keys}, selector, representation_sets=representation_sets,
            pooling_sets=pooling_sets, etas=grids["etas"], exit_layers=range(1, backbone.num_layers + 1),
            Cs=grids["final_Cs"], dense_keys=dense_keys, n_jobs=self.n_jobs, seed=self.random_state,
            class_weight=self.class_weight, show_progress_bar=self.show_progress_bar)
        chosen, table = searched.chosen, searched.table
        lap("search")
        if folds is None:
            fit_rows = train_rows
        else:  # the final model: probes and classifier refitted on every text with the chosen settings
            fit_rows = np.arange(len(pool_codes))
            final_paths = fit_probe_paths(store, store.keys, pool_codes, fit_rows, np.arange(0),
                                          desc="probes, all texts", **probe_options)
            probes = {key: final_paths[key].at(probe_index[key]) for key in store.keys}
            for key, probe in probes.items():  # report each probe's cross-validated scores along its C grid
                means = np.mean([paths[key].val_scores for paths in fold_paths], axis=0)
                probes[key] = replace(probe, val_score=float(means[probe_index[key]]),
                                      scores_by_C=[float(m) for m in means])
            lap("final probes")
        best = table[chosen]
        kept_columns = candidate_columns(best.candidate, probes, {key: store.dim(key) for key in store.keys})
        n_kept = sum(map(len, kept_columns.values()))
        workers_within(final_fit_bytes(len(fit_rows), n_kept, len(self.classes_)), 1,
                       stage=f"the final classifier on {len(fit_rows):,} texts x {n_kept:,} features",
                       knob="search fewer arrays (poolings, representations) or fit on fewer texts")
        X_fit = np.hstack([store.load(key, columns=cols, rows=fit_rows) for key, cols in kept_columns.items()])
        final = make_final_classifier(best.candidate.C, self.random_state,
                                      self.class_weight).fit(X_fit, pool_codes[fit_rows])
        temperature = fit_temperature(best.decisions, y_eval) if self.calibrate else 1.0
        lap("final")
        estimate, estimate_se = expected_score(selector, table, searched.stage_two)
        lap("estimate")
        rows = configuration_rows(selector, table)
        selection = {"protocol": "cv" if folds else "split", "folds": folds, "rule": rule,
                     "n_blocks": len(blocks), "n_candidates": len(table), "n_held_out": len(y_eval),
                     "unscored_classes": [plain_label(label) for label in
                                          self.classes_[np.setdiff1d(np.unique(pool_codes), np.unique(y_eval))]]}
        record = fit_record(rows, probes, grids["etas"], self.validation_, selection, timings,
                             time.perf_counter() - started)
        self.readout_ = Readout(
            backbone=BackboneReference.of(backbone),
            extraction=replace(settings, max_length=settings.max_length or backbone.max_length),
            kept_columns=kept_columns, head=LinearHead.from_pipeline(final, self.classes_, temperature),
            configuration=rows[chosen].as_row(), params=self.get_params(), record=record,
            scores=Scores(validation=rows[chosen].val_score, cv=rows[chosen].val_score, cv_se=rows[chosen].score_se,
                          expected=estimate, expected_se=estimate_se))
        self.store_path_ = str(store.path)
        return self

    def _build_store(self, backbone: Backbone, texts: list[str], settings: ExtractionSettings,
                     engine=None) -> ActivationStore:
        """The activation store of ``texts``, row i for texts[i] (built on ``engine``, or found on disk)."""
        return build_store(backbone, texts, settings, root=self.store_dir, token_budget=self.token_budget,
                           show_progress_bar=self.show_progress_bar, engine=engine)

    def _load_backbone(self) -> Backbone:
        return load_backbone(self.model, device=self.device, dtype=self.dtype,
                             trust_remote_code=self.trust_remote_code)

    # --- inference ----------------------------------------------------------------------------------------------

    def __sklearn_tags__(self) -> Tags:
        return text_estimator_tags(super().__sklearn_tags__(), transformer=True)

    def _fitted(self) -> Readout:
        """The readout, or NotFittedError (before ``transform`` or ``explain`` loads anything)."""
        check_is_fitted(self, "readout_")
        return self.readout_

    def _fitted_backbone(self) -> Backbone:
        """The backbone ``model`` names, refused unless it is the one the model was fitted on (weights sha256):
        after ``set_params(model=...)`` a fitted model would otherwise read another model's neurons."""
        readout = self._fitted()
        backbone = self._load_backbone()
        try:
            readout.check_backbone(backbone)
        except ValueError as error:
            raise ValueError(f"{error}: model={self.model!r} is not the backbone this model was fitted on "
                             f"({readout.backbone.name!r}); set it back, or fit again") from None
        return backbone

    def transform(self, X) -> np.ndarray:
        """The kept-neuron features of texts X (n_texts, n_features), in ``kept_neurons_`` order."""
        readout = self._fitted()
        texts = check_texts(X, "X")
        return readout.features(self._fitted_backbone(), texts, token_budget=self.token_budget,
                                show_progress_bar=self.show_progress_bar)

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

    def predict(self, X) -> np.ndarray:
        """The predicted labels of texts X, an array of shape (n_texts,) holding values of ``classes_``."""
        features = self.transform(X)
        return self.readout_.head.labels(features)

    def explain(self, text: str, *, top_k: int = 10) -> dict:
        """The predicted label and the neurons that pushed this text's decision most (see ``stc.explain``)."""
        readout = self._fitted()
        return explain_prediction(readout, self._fitted_backbone(), text, top_k=top_k)
