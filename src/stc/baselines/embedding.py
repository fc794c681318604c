"""The sentence-embedding baseline: the last layer, pooled the model's own way, + logistic regression."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from .._metrics import check_metric, score
from .._validation import check_grid, check_texts
from ..aggregate import DEFAULT_FINAL_CS, make_final_classifier
from ..backbone import Backbone, load_backbone
from .._estimator import FeatureReadoutMixin, fit_split
from ..extract import POOLINGS, extract_features, feature_key
from ..store import find_stored

__all__ = ["EmbeddingClassifier", "native_pooling"]


def native_pooling(backbone: Backbone) -> str:
    """How the model itself makes a sentence embedding: its sentence-transformers pooling when it has one, else
    the last token for decoders and the first ([CLS]) for encoders."""
    pooling_config = Path(backbone.source) / "1_Pooling" / "config.json"
    if pooling_config.is_file():
        config = json.loads(pooling_config.read_text(encoding="utf-8"))
        for mode, pooling in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_max_tokens", "max"),
                              ("pooling_mode_cls_token", "first"), ("pooling_mode_lasttoken", "last")):
            if config.get(mode):
                return pooling
    return "last" if backbone.is_decoder else "first"


class EmbeddingClassifier(FeatureReadoutMixin, ClassifierMixin, BaseEstimator):
    """Logistic regression on the last layer's pooled hidden state; C chosen on validation.

    Training features come from an activation store of the same texts when one exists (``store_dir``, default
    ``$STC_CACHE/stores``), so fitting beside STC costs no second forward pass; else they are extracted.
    ``reuse_store=False`` always extracts, so that the fit time is the baseline's own cost (``stc experiment``)."""

    def __init__(self, model: str = "minilm", *, pooling: str = "auto", Cs=DEFAULT_FINAL_CS,
                 metric: str = "accuracy", validation_size: float = 0.2, max_length: int | None = None,
                 windows: bool = False, window_overlap: int = 64, token_budget: int = 8192, device: str = "auto",
                 dtype: str = "auto", random_state: int = 42, show_progress_bar: bool = True,
                 store_dir: str | None = None, reuse_store: bool = True):
        self.model = model
        self.pooling = pooling
        self.Cs = Cs
        self.metric = metric
        self.validation_size = validation_size
        self.max_length = max_length
        self.windows = windows
        self.window_overlap = window_overlap
        self.token_budget = token_budget
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.show_progress_bar = show_progress_bar
        self.store_dir = store_dir
        self.reuse_store = reuse_store

    def _embed(self, backbone: Backbone, texts: list[str], *, reuse_store: bool = False) -> np.ndarray:
        key = feature_key("hidden", backbone.num_layers, self.pooling_)
        if reuse_store:  # STC fitted on the same texts has this array on disk already
            stored = find_stored(backbone, texts, key, root=self.store_dir, max_length=self.max_length,
                                 windows=self.windows, window_overlap=self.window_overlap)
            if stored is not None:
                return stored
        return extract_features(backbone, texts, [key], max_length=self.max_length, windows=self.windows,
                                window_overlap=self.window_overlap, token_budget=self.token_budget,
                                show_progress_bar=self.show_progress_bar, progress_desc="embed")[key]

    def fit(self, X, y, *, X_val=None, y_val=None) -> EmbeddingClassifier:
        started = time.perf_counter()
        check_metric(self.metric)
        Cs = check_grid(self.Cs, "Cs")
        if self.pooling != "auto" and self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be 'auto' or one of {POOLINGS}, got {self.pooling!r}")
        self.classes_, train_texts, train_codes, val_texts, val_codes = fit_split(
            X, y, X_val, y_val, validation_size=self.validation_size, random_state=self.random_state)
        backbone = self._backbone()
        self.pooling_ = native_pooling(backbone) if self.pooling == "auto" else self.pooling
        features = self._embed(backbone, train_texts + val_texts, reuse_store=self.reuse_store)
        X_train, X_val_features = features[:len(train_texts)], features[len(train_texts):]
        self.val_scores_ = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for C in Cs:
                model = make_final_classifier(C, self.random_state).fit(X_train, train_codes)
                self.val_scores_[C] = score(val_codes, model.predict(X_val_features), self.metric)
            self.C_ = max(Cs, key=lambda C: (self.val_scores_[C], -C))
            self.classifier_ = make_final_classifier(self.C_, self.random_state).fit(X_train, train_codes)
        self.val_score_ = self.val_scores_[self.C_]
        self.n_features_ = X_train.shape[1]
        self.exit_layer_ = backbone.num_layers
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _backbone(self) -> Backbone:
        return load_backbone(self.model, device=self.device, dtype=self.dtype)

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "classifier_")
        return self._embed(self._backbone(), check_texts(X, "X"))
