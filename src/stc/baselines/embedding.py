"""The sentence-embedding baseline: the last layer, pooled the model's own way, + logistic regression."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import check_is_fitted

from .._metrics import check_class_weight, check_metric, score
from .._multilabel import cross_fitted_predictions, decode_indicator, encode_label_sets, is_multilabel_target
from .._validation import check_grid, check_inputs
from ..aggregate import DEFAULT_FINAL_CS, make_final_classifier
from ..head import MULTILABEL_CS
from ..backbone import Backbone, load_backbone
from .._estimator import FeatureReadoutMixin, encode_targets, fit_split, validation_targets
from ..extract import POOLINGS, extract_features, feature_key
from ..heads import MultiLabelHead, multilabel_heads
from ..folds import estimate_blocks, split_rows
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
    ``reuse_store=False`` always extracts, so that the fit time is the baseline's own cost (``stc experiment``).
    ``class_weight`` is STC's (``"auto"``: balanced for macro-F1 over single labels), for a fair comparison.

    Multi-label targets (a label collection per text, or a 2-D 0/1 indicator array) are fitted as STC fits them:
    one ridge classifier for every label on the standardised embedding (``stc.heads.multilabel_heads``, its C
    chosen among ``stc.head.MULTILABEL_CS``), scored by ``metric`` ("auto": micro-F1) on
    the validation texts, each block of them thresholded by thresholds tuned on the other blocks
    (``stc._multilabel.cross_fitted_predictions``), and each label's probability (Platt) and decision threshold
    chosen on the chosen C's validation decisions (``MultiLabelHead.calibrated``).

    Attributes
    ----------
    classes_ : the labels, sorted; ``predict_proba`` columns follow them.
    C_ : the chosen C (for label sets the ridge's, ``stc.head.ridge_alpha``); ``val_scores_`` the validation score
        of every C, ``val_score_`` the chosen one's.
    classifier_ : the scikit-learn pipeline (standardisation, logistic regression; a ridge classifier for label sets)
        fitted on the training texts (not the validation ones).
    metric_ : ``metric`` with "auto" resolved (accuracy for one label per text, micro-F1 for label sets).
    class_weight_ : ``class_weight`` with "auto" resolved as STC resolves it ("balanced" for macro-F1 over single
        labels, else None), so that the two are compared with the same weights.
    target_ : what ``y`` was: "labels", "label sets" (``predict`` gives a tuple of labels per text) or
        "indicator" (``predict`` gives a 0/1 array (n_texts, n_labels)).
    thresholds_ : multi-label only: per label, the probability from which it is predicted.
    head_ : multi-label only: the ``stc.heads.MultiLabelHead`` that ``predict``, ``predict_proba`` and
        ``decision_function`` compute with (the arithmetic of STC's multi-label head).
    n_features_, exit_layer_, pooling_, fit_seconds_ : the embedding's width, the layer read, its pooling, the
        fit's wall time in seconds."""

    def __init__(self, model: str = "minilm", *, pooling: str = "auto", Cs=DEFAULT_FINAL_CS,
                 metric: str = "auto", class_weight: str | None = "auto", validation_size: float = 0.2,
                 max_length: int | None = None, windows: bool = False, window_overlap: int = 64,
                 token_budget: int = 8192, device: str = "auto",
                 dtype: str = "auto", random_state: int = 42, show_progress_bar: bool = True,
                 store_dir: str | None = None, reuse_store: bool = True):
        self.model = model
        self.pooling = pooling
        self.Cs = Cs
        self.metric = metric
        self.class_weight = class_weight
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
        """Fit on texts X and their labels y, C chosen on X_val, y_val (else on a seeded split of X).

        Parameters
        ----------
        X : list of str
            The training texts.
        y : sequence of labels (one per text), or of label collections (multi-label; an empty one is no label),
            or a 2-D 0/1 indicator array (n_texts, n_labels)
            The training labels.
        X_val, y_val : list of str and labels in ``y``'s form, optional
            The validation texts C (and, for label sets, the thresholds) are chosen on; by default
            ``validation_size`` of X, stratified (iteratively for label sets).

        Returns
        -------
        EmbeddingClassifier
            The fitted estimator.
        """
        started = time.perf_counter()
        multilabel = is_multilabel_target(y)
        self.metric_ = check_metric(self.metric, multilabel=multilabel)
        self.class_weight_ = check_class_weight(self.class_weight, self.metric_, multilabel=multilabel)
        Cs = check_grid(self.Cs, "Cs")
        if self.pooling != "auto" and self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be 'auto' or one of {POOLINGS}, got {self.pooling!r}")
        if multilabel:
            self.classes_, train_texts, train_codes, val_texts, val_codes = self._label_set_split(X, y, X_val, y_val)
        else:
            self.classes_, train_texts, train_codes, val_texts, val_codes = fit_split(
                X, y, X_val, y_val, validation_size=self.validation_size, random_state=self.random_state,
                pairs_allowed=True)
            self.target_ = "labels"
        if self.windows and isinstance(train_texts[0], tuple):
            raise ValueError("windows=True does not apply to text pairs: a pair is truncated longest_first to "
                             "max_length; leave windows=False")
        self.pairs_ = isinstance(train_texts[0], tuple)  # text pairs, read as STC reads them
        backbone = self._backbone()
        self.pooling_ = native_pooling(backbone) if self.pooling == "auto" else self.pooling
        features = self._embed(backbone, train_texts + val_texts, reuse_store=self.reuse_store)
        X_train, X_val_features = features[:len(train_texts)], features[len(train_texts):]
        self.val_scores_ = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if multilabel:
                self._fit_label_sets(X_train, train_codes, X_val_features, val_codes)
            else:
                for C in Cs:
                    model = make_final_classifier(C, self.random_state, self.class_weight_).fit(X_train, train_codes)
                    self.val_scores_[C] = score(val_codes, model.predict(X_val_features), self.metric_)
                self.C_ = max(Cs, key=lambda C: (self.val_scores_[C], -C))
                self.classifier_ = make_final_classifier(self.C_, self.random_state, self.class_weight_).fit(
                    X_train, train_codes)
        self.val_score_ = self.val_scores_[self.C_]
        self.n_features_ = X_train.shape[1]
        self.exit_layer_ = backbone.num_layers
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _label_set_split(self, X, y, X_val, y_val):
        """(classes, train texts, train indicator, validation texts, validation indicator) of a multi-label fit;
        sets ``target_``. Without X_val, an iteratively stratified split of X (``stc.folds.split_rows``)."""
        texts = check_inputs(X, "X")
        classes, Y, self.target_ = encode_targets(y, len(texts))
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise ValueError("give both X_val and y_val, or neither")
            val_texts = check_inputs(X_val, "X_val", pairs=isinstance(texts[0], tuple))
            return classes, texts, Y, val_texts, validation_targets(y_val, len(val_texts), classes, self.target_)
        train_rows, val_rows = split_rows(Y, self.validation_size, self.random_state)
        return (classes, [texts[i] for i in train_rows], Y[train_rows], [texts[i] for i in val_rows],
                Y[val_rows])

    def _fit_label_sets(self, X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray,
                        Y_val: np.ndarray) -> None:
        """STC's multi-label head on the embedding: one ridge classifier for every label on the training rows at
        each C of ``stc.head.MULTILABEL_CS`` (the ridge's grid, as STC searches it; ``Cs`` is the logistic
        regression's), each scored on the validation rows, each block of them thresholded by thresholds tuned on
        the others (as STC scores a candidate); the best C (the smaller on ties) is kept, and each label's
        probability and threshold calibrated on its validation decisions (as STC's final head's)."""
        blocks = estimate_blocks(Y_val, self.random_state)
        members = [(X_train.shape[1], C) for C in MULTILABEL_CS]
        heads = dict(zip(MULTILABEL_CS, multilabel_heads(X_train, Y_train, members, self.classes_)))
        decisions = {C: head.decision(X_val) for C, head in heads.items()}
        for C in MULTILABEL_CS:
            self.val_scores_[C] = score(Y_val, cross_fitted_predictions(decisions[C], Y_val, blocks), self.metric_)
        self.C_ = max(MULTILABEL_CS, key=lambda C: (self.val_scores_[C], -C))
        self.classifier_ = heads[self.C_].to_pipeline(self.C_)
        self.head_ = heads[self.C_].calibrated(decisions[self.C_], Y_val)
        self.thresholds_ = self.head_.thresholds

    def _label_head(self) -> MultiLabelHead | None:
        """The multi-label head of a model fitted on label sets or an indicator; None for one label per text."""
        return getattr(self, "head_", None) if getattr(self, "target_", "labels") != "labels" else None

    def decision_function(self, X) -> np.ndarray:
        """Decision values of the logistic regression.

        Parameters
        ----------
        X : list of str
            The texts.

        Returns
        -------
        ndarray of shape (n_texts,) for two classes (class 1's), else (n_texts, n_classes); for a multi-label
        model each label's decision (n_texts, n_labels)
        """
        features = self.transform(X)
        head = self._label_head()
        return self.classifier_.decision_function(features) if head is None else head.decision(features)

    def proba_from_features(self, features: np.ndarray) -> np.ndarray:
        """``predict_proba`` of already embedded texts (``transform``'s output): class probabilities, or for a
        multi-label model each label's own probability (n_texts, n_labels)."""
        head = self._label_head()
        return super().proba_from_features(features) if head is None else head.probabilities(features)

    def predict(self, X):
        """The predicted labels of texts X.

        Parameters
        ----------
        X : list of str
            The texts.

        Returns
        -------
        ndarray of shape (n_texts,) holding values of ``classes_``; for a model fitted on label sets a list of
        tuples (each text's labels whose probability reaches ``thresholds_``, in ``classes_`` order), and for one
        fitted on an indicator matrix the 0/1 indicator array (n_texts, n_labels)
        """
        features = self.transform(X)
        head = self._label_head()
        if head is None:
            return self.classes_[self.classifier_.predict(features)]
        labels = head.labels(features)
        return decode_indicator(labels, self.classes_) if self.target_ == "label sets" else labels

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy of ``predict`` on texts X against y; for multi-label models subset accuracy (every label of a
        text right), as scikit-learn's multi-label classifiers score.

        Parameters
        ----------
        X : list of str
            The texts.
        y : labels in the form the model was fitted on
            Their true labels.
        sample_weight : array of shape (n_texts,), optional

        Returns
        -------
        float
        """
        head = self._label_head() if hasattr(self, "classifier_") else None
        if head is None:
            return ClassifierMixin.score(self, X, y, sample_weight=sample_weight)
        features = self.transform(X)
        truth = encode_label_sets(y, len(features), "y", classes=self.classes_)[1]
        return float(accuracy_score(truth, head.labels(features), sample_weight=sample_weight))

    def _backbone(self) -> Backbone:
        return load_backbone(self.model, device=self.device, dtype=self.dtype)

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "classifier_")
        return self._embed(self._backbone(), check_inputs(X, "X", pairs=self.pairs_))
