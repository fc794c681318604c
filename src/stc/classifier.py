"""STCClassifier: the scikit-learn estimator that ties extraction, probes, η selection and aggregation together."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from ._metrics import check_metric
from ._validation import check_grid, check_labels, check_poolings, check_representations, check_texts
from .aggregate import (DEFAULT_FINAL_CS, feature_names, kept_columns, make_final_classifier,
                        search_configurations)
from .backbone import Backbone, load_backbone
from .distributed import joblib_backend, make_engine
from .extract import default_poolings, extract_features, parse_key
from .probe import DEFAULT_PROBE_CS, PROBE_SOLVERS, fit_probes
from .sparsify import DEFAULT_ETAS, select_neurons
from .store import ActivationStore, ExtractionSettings, build_store

__all__ = ["STCClassifier", "validation_split", "encode_labels"]

_PREDICT_CHUNK = 2048  # texts per extraction call at inference: memory stays flat for any number of texts


def validation_split(texts: list[str], codes: np.ndarray, classes: np.ndarray, X_val, y_val, *,
                     validation_size: float, random_state: int):
    """(train texts, train codes, validation texts, validation codes): the given validation set, else a seeded
    stratified split of the training texts."""
    if X_val is not None or y_val is not None:
        if X_val is None or y_val is None:
            raise ValueError("give both X_val and y_val, or neither")
        val_texts = check_texts(X_val, "X_val")
        val_labels = check_labels(y_val, len(val_texts), "y_val")
        unknown = sorted(set(val_labels.tolist()) - set(classes.tolist()), key=str)
        if unknown:
            raise ValueError(f"y_val holds labels absent from y: {unknown[:5]}")
        return texts, codes, val_texts, np.searchsorted(classes, val_labels)
    if not isinstance(validation_size, float) or not 0.0 < validation_size < 1.0:
        raise ValueError(f"validation_size must be a float in (0, 1), got {validation_size!r}")
    counts = np.bincount(codes)
    n_val = int(np.ceil(validation_size * len(codes)))
    if counts.min() < 2 or n_val < len(counts) or len(codes) - n_val < len(counts):
        rare = classes[int(counts.argmin())].item()
        raise ValueError(f"class {rare!r} has {counts.min()} example(s) among {len(codes)} texts: a stratified "
                         f"validation split of {validation_size:.0%} needs at least 2 per class and one per class "
                         f"on each side (or pass X_val, y_val)")
    train_index, val_index = train_test_split(np.arange(len(codes)), test_size=validation_size, stratify=codes,
                                              random_state=random_state)
    return ([texts[i] for i in train_index], codes[train_index], [texts[i] for i in val_index], codes[val_index])


def encode_labels(y, n_texts: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, codes) of labels y; at least two classes."""
    labels = check_labels(y, n_texts, "y")
    classes, codes = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y holds a single class ({classes[0].item()!r}): at least two are needed")
    return classes, codes


class FeatureReadoutMixin:
    """predict, predict_proba and decision_function of an estimator whose ``transform`` gives the features of its
    fitted ``classifier_`` (labels decoded through ``classes_``). Each method calls ``transform`` before it reads
    ``classifier_``: ``transform`` raises NotFittedError on an unfitted model, the attribute only AttributeError."""

    def decision_function(self, X) -> np.ndarray:
        features = self.transform(X)
        return self.classifier_.decision_function(features)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order."""
        features = self.transform(X)
        return self.classifier_.predict_proba(features)

    def predict(self, X) -> np.ndarray:
        features = self.transform(X)
        return self.classes_[self.classifier_.predict(features)]


def _on_engine(fit):
    """Run ``fit`` inside joblib's Ray backend when ``engine='ray'``, so probe and search fits spread over the
    cluster; with the default engine nothing changes."""
    @functools.wraps(fit)
    def fit_on_engine(self, *args, **kwargs):
        with joblib_backend(make_engine(self.engine, self.ray_address, self.workers, self.gpus_per_worker)):
            return fit(self, *args, **kwargs)
    return fit_on_engine


class STCClassifier(FeatureReadoutMixin, ClassifierMixin, BaseEstimator):
    """Sparsify-then-Classify: a text classifier read from a transformer's internal neurons.

    ``fit`` extracts every layer's pooled hidden states and FFN activations (cached on disk), fits an L1 probe per
    (representation, layer, pooling), keeps per layer the neurons holding a fraction η of the probe's squared
    weights, and trains a logistic regression on the kept neurons of layers up to an exit layer; η, exit layer,
    representations, poolings and C are chosen on validation. ``predict`` runs the backbone only to the exit layer.

    Parameters
    ----------
    model : alias (``"minilm"``, ``"smollm2"``), local directory, ``.gguf`` file or Hugging Face hub id.
    representations : which arrays to probe: ``"hidden"`` (residual stream) and/or ``"ffn"`` (FFN neurons).
    poolings : token poolings among mean, max, first, last; None = mean, max and the model's natural single token.
    etas : the η grid; probe_Cs, final_Cs : C grids of the L1 probes and of the final classifier. probe_Cs None
        gives each probe the grid (3, 10, 30, 100) x its C_min, the C below which it keeps no neuron.
    metric : ``"accuracy"`` or ``"macro_f1"``, the validation metric every choice is made by.
    validation_size : fraction of the training texts held out (stratified, seeded) when no X_val is given.
    max_length : tokens per text (default: the model's limit); windows : cut longer texts into overlapping windows
        of ``max_length`` tokens (``window_overlap`` shared) instead of truncating.
    token_budget : padded tokens per forward batch (batches are length-sorted).
    store_dir : where activation stores go (default ``$STC_CACHE/stores``); store_dtype : float32 or float16.
    probe_solver : ``"auto"`` (stc's warm-started path solver), ``"liblinear"`` or ``"saga"`` (scikit-learn).
    n_jobs : probes and search fits run side by side on this many threads (-1: every core; None or 1: one),
        each with single-threaded BLAS.
    engine : ``"local"`` (this process) or ``"ray"``: store shards on a Ray actor pool, probe and search fits on
        joblib's Ray backend (the extra ``sparsify-then-classify[ray]``); ray_address : the cluster to join (None:
        Ray starts embedded); workers : actors extracting (None: one per CPU, or per ``gpus_per_worker`` GPUs);
        gpus_per_worker : GPUs per actor (0: the actors run on CPU).
    """

    def __init__(self, model: str = "minilm", *, representations: Sequence[str] = ("hidden", "ffn"),
                 poolings: Sequence[str] | None = None, etas: Sequence[float] = DEFAULT_ETAS,
                 probe_Cs: Sequence[float] | None = DEFAULT_PROBE_CS, final_Cs: Sequence[float] = DEFAULT_FINAL_CS,
                 metric: str = "accuracy", validation_size: float = 0.2, max_length: int | None = None,
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
        check_metric(self.metric)
        if self.probe_solver not in PROBE_SOLVERS:
            raise ValueError(f"probe_solver must be one of {PROBE_SOLVERS}, got {self.probe_solver!r}")
        for name in ("token_budget", "window_overlap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "token_budget" else 0):
                raise ValueError(f"{name} must be a {'positive' if name == 'token_budget' else 'non-negative'} "
                                 f"integer, got {value!r}")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 2):
            raise ValueError(f"max_length must be None or an integer >= 2, got {self.max_length!r}")
        if self.n_jobs is not None and (isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int)
                                        or self.n_jobs == 0):
            raise ValueError(f"n_jobs must be None or a non-zero integer (-1: every core), got {self.n_jobs!r}")
        return {"representations": check_representations(self.representations),
                "poolings": None if self.poolings is None else check_poolings(self.poolings),
                "etas": check_grid(self.etas, "etas", upper=1.0),
                "probe_Cs": None if self.probe_Cs is None else check_grid(self.probe_Cs, "probe_Cs"),
                "final_Cs": check_grid(self.final_Cs, "final_Cs"),
                "engine": make_engine(self.engine, self.ray_address, self.workers, self.gpus_per_worker)}

    @_on_engine
    def fit(self, X, y, *, X_val=None, y_val=None) -> STCClassifier:
        """Fit on texts X with labels y; X_val/y_val (else a stratified split of X) choose every setting."""
        started = time.perf_counter()
        grids = self._check_params()
        texts = check_texts(X, "X")
        self.classes_, codes = encode_labels(y, len(texts))
        train_texts, train_codes, val_texts, val_codes = validation_split(
            texts, codes, self.classes_, X_val, y_val, validation_size=self.validation_size,
            random_state=self.random_state)
        self.validation_ = {"given": X_val is not None, "n_train": len(train_texts), "n_val": len(val_texts)}
        backbone = self._load_backbone()
        timings = {"load": time.perf_counter() - started}
        poolings = grids["poolings"] or default_poolings(backbone)
        settings = ExtractionSettings(representations=grids["representations"], poolings=poolings,
                                      max_length=self.max_length, windows=self.windows,
                                      window_overlap=self.window_overlap, dtype=self.store_dtype)
        store = build_store(backbone, train_texts + val_texts, settings, root=self.store_dir,
                            token_budget=self.token_budget, show_progress_bar=self.show_progress_bar,
                            engine=grids["engine"])
        timings["extract"] = time.perf_counter() - started - sum(timings.values())
        all_codes = np.concatenate([train_codes, val_codes])
        train_rows = np.arange(len(train_texts))
        val_rows = np.arange(len(train_texts), len(all_codes))
        probes = fit_probes(store, store.keys, all_codes, train_rows, val_rows, Cs=grids["probe_Cs"],
                            metric=self.metric, solver=self.probe_solver, n_jobs=self.n_jobs, seed=self.random_state,
                            show_progress_bar=self.show_progress_bar)
        timings["probes"] = time.perf_counter() - started - sum(timings.values())

        def load(key, columns):
            values = store.load(key, columns=columns)
            return values[train_rows], values[val_rows]

        representation_sets = [(r,) for r in settings.representations]
        if len(settings.representations) > 1:
            representation_sets.append(settings.representations)
        pooling_sets = [(p,) for p in poolings] + ([tuple(poolings)] if len(poolings) > 1 else [])
        best, table = search_configurations(
            probes, load, train_codes, val_codes, representation_sets=representation_sets,
            pooling_sets=pooling_sets, etas=grids["etas"], exit_layers=range(1, backbone.num_layers + 1),
            Cs=grids["final_Cs"], metric=self.metric, n_jobs=self.n_jobs, seed=self.random_state,
            show_progress_bar=self.show_progress_bar)
        timings["search"] = time.perf_counter() - started - sum(timings.values())
        self.kept_columns_ = kept_columns(probes, best.representations, best.poolings, best.eta, best.exit_layer)
        X_train = np.hstack([store.load(key, columns=cols, rows=train_rows) for key, cols in self.kept_columns_.items()])
        self.classifier_ = make_final_classifier(best.C, self.random_state).fit(X_train, train_codes)
        timings["final"] = time.perf_counter() - started - sum(timings.values())
        self.fit_timings_ = {phase: round(seconds, 3) for phase, seconds in timings.items()}
        self._set_summary(backbone, settings, best, table, probes, store, grids["etas"],
                          time.perf_counter() - started)
        return self

    def _set_summary(self, backbone, settings, best, table, probes, store: ActivationStore, etas, seconds) -> None:
        self.backbone_ = {"name": backbone.name, "source": backbone.source, "gguf_file": backbone.gguf_file,
                          "weights_sha256": backbone.weights_hash(), "num_layers": backbone.num_layers,
                          "is_decoder": backbone.is_decoder}
        self.extraction_ = {"representations": list(settings.representations), "poolings": list(settings.poolings),
                            "max_length": settings.max_length or backbone.max_length, "windows": settings.windows,
                            "window_overlap": settings.window_overlap}
        self.configuration_ = best.as_row()
        self.exit_layer_ = best.exit_layer
        self.val_score_ = best.val_score
        self.kept_neurons_ = feature_names(self.kept_columns_)
        self.n_features_ = len(self.kept_neurons_)
        self.probe_scores_ = [{"key": key, "representation": parse_key(key)[0], "layer": parse_key(key)[1],
                               "pooling": parse_key(key)[2], "C": probe.C, "val_score": probe.val_score,
                               "n_nonzero": probe.n_nonzero, "scores_by_C": probe.scores_by_C, "Cs": probe.Cs}
                              for key, probe in sorted(probes.items(), key=lambda item: parse_key(item[0]))]
        self.search_results_ = [candidate.as_row() for candidate in table]
        etas = sorted(etas)
        self.kept_counts_ = {"etas": etas, "counts": {
            key: [int(len(select_neurons(probe.importance, eta))) for eta in etas]
            for key, probe in sorted(probes.items(), key=lambda item: parse_key(item[0]))}}
        self.store_path_ = str(store.path)
        self.fit_seconds_ = seconds

    def _load_backbone(self) -> Backbone:
        return load_backbone(self.model, device=self.device, dtype=self.dtype,
                             trust_remote_code=self.trust_remote_code)

    # --- inference ----------------------------------------------------------------------------------------------

    def transform(self, X) -> np.ndarray:
        """The kept-neuron features of texts X (n_texts, n_features), in ``kept_neurons_`` order."""
        check_is_fitted(self, "classifier_")
        texts = check_texts(X, "X")
        backbone = self._load_backbone()
        keys = list(self.kept_columns_)
        parts = []
        for start in range(0, len(texts), _PREDICT_CHUNK):
            features = extract_features(
                backbone, texts[start:start + _PREDICT_CHUNK], keys, columns=self.kept_columns_,
                max_length=self.extraction_["max_length"], windows=self.extraction_["windows"],
                window_overlap=self.extraction_["window_overlap"], token_budget=self.token_budget,
                show_progress_bar=self.show_progress_bar and len(texts) > 256, progress_desc="predict")
            parts.append(np.hstack([features[key] for key in keys]))
        return np.vstack(parts)

    def explain(self, text: str, *, top_k: int = 10) -> dict:
        """The predicted label and the neurons that pushed this text's decision most (see ``stc.explain``)."""
        from .explain import explain_prediction

        return explain_prediction(self, text, top_k=top_k)

    # --- persistence --------------------------------------------------------------------------------------------

    def save(self, directory, *, copy_backbone: bool = False) -> None:
        """Write JSON + safetensors (no pickle); ``copy_backbone`` also copies the model's weights in."""
        from ._persist import save_classifier

        save_classifier(self, directory, copy_backbone=copy_backbone)
