"""STCClassifier: the scikit-learn estimator that ties extraction, probes, η selection and aggregation together."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted

from ._estimator import check_validation_rows, encode_targets, text_estimator_tags, validation_targets
from ._fitted import FittedState, fit_record
from ._memory import workers_within
from ._metrics import check_class_weight, check_metric
from ._parameters import STC_PARAMETERS, check_parameters, parameters_doc
from ._validation import check_inputs
from .aggregate import DEFAULT_FINAL_CS, READOUT_KINDS, candidate_columns, final_fit_bytes
from .backbone import Backbone, load_backbone
from .calibration import fit_temperature
from .distributed import joblib_backend, make_engine
from .explain import explain_prediction
from .extract import default_poolings
from .head import MULTILABEL_CS, MULTILABEL_STAGE_ONE_CS
from .heads import fit_head_estimator, head_from_pipeline
from .protocol import FitOptions, PhaseTimer, Protocol, ProtocolResult, make_protocol
from .readout import BackboneReference, FitRecord, Readout, Scores
from .search import SearchSpace
from .sparsify import DEFAULT_ETAS
from .store import ExtractionSettings, build_store, store_keys

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
    C); the final model is refitted on every text (``cv_repeats`` repeats the folds over several seeded
    partitions). The candidates include dense readouts (every neuron of one layer's pooled hidden
    state, the last layer's mean being the sentence-embedding baseline), so the search can fall back to the
    embedding where the sparse neurons do not beat it beyond noise. ``cv=None`` is the paper's protocol: every
    choice by the best score on one validation split, no dense readouts. Either way ``expected_score_`` estimates
    the test score with the selection's optimism left out (see ``stc.selection``). ``selection_rule`` and
    ``readout_kinds`` change the rule and the kinds of readout searched (``stc.protocol`` holds the two protocols,
    ``stc.search`` the search). ``fit_store`` fits on an activation store built elsewhere.

    Parameters
    ----------
{parameters_doc(STC_PARAMETERS)}

    Attributes
    ----------
    readout_ : the fitted model as one immutable value (``stc.readout.Readout``): every attribute below but
        ``classes_``, ``validation_`` and ``store_path_`` is a read-only view of it; predictions go through it.
    classes_ : the labels, sorted; ``predict_proba`` columns follow them.
    classifier_ : the final scikit-learn pipeline (standardisation, then logistic regression or, for an MLP head,
        ``MLPClassifier``) on the kept neurons, rebuilt from the readout's arrays for code written against it.
    kept_columns_ : dict from each array read at prediction (``"ffn.L3.mean"``: representation, layer, pooling) to
        the indices of its kept neurons, in column order (a copy: changing it changes nothing).
    kept_neurons_ : the names of the features, in column order (``"ffn.L3.mean.1021"``: array, then neuron index).
    n_features_ : the number of kept neurons, the columns the final classifier reads.
    exit_layer_ : the deepest layer read: ``predict`` runs the backbone only this far.
    configuration_ : the chosen readout as a dict: readout (sparse, dense or hybrid), representations, poolings,
        eta, exit_layer, C, n_features, val_score, score_se, the per-block scores, and head ("linear" or "mlp").
    val_score_ : the held-out score of that configuration, in ``metric`` (the cross-validation mean, or the
        validation score with one split).
    val_score_se_ : its standard error over the folds (over 5 blocks of the validation texts with one split).
    cv_score_, cv_score_se_ : deprecated: ``val_score_`` and ``val_score_se_`` under another name (always equal).
    expected_score_ : the expected test score, the selection's optimism left out: each fold (each block of the
        validation texts, with one split) scored by the setting the search, replayed from its first stage on the
        other folds, chooses without it (see ``stc.selection``).
    expected_score_se_ : its standard error, at least the held-out texts' binomial one (``with_sampling_floor``).
    selection_ : how the setting was chosen, a dict: protocol ("cv" or "split"), folds, repeats (partitions into
        them), rule ("one_se" or "best"), floor and floor_margin (the embedding readout the floor chose; the search's
        choice minus it per block: mean, se), n_blocks, n_candidates, n_held_out, unscored_classes (one-text classes).
    metric_ : the metric every choice was made by: ``metric`` with "auto" resolved (accuracy for one label per
        text, micro-F1 for label sets).
    class_weight_ : the class weights the fit used: ``class_weight`` with "auto" resolved ("balanced" for macro-F1
        over single labels, else None).
    target_ : what ``y`` was: "labels" (one per text), "label sets" (``predict`` gives a tuple of labels per text)
        or "indicator" (a 0/1 array (n_texts, n_labels); ``predict`` gives one too). For both multi-label targets
        every label has its own linear decision (one ridge fit for all labels, Platt-calibrated) and decision
        threshold, and ``predict_proba`` gives each label's probability (n_texts, n_labels), as OneVsRestClassifier.
    temperature_ : the calibration temperature dividing the final logits in ``predict_proba`` (1.0: none).
    backbone_ : the backbone, a dict: name, source, gguf_file, weights_sha256, num_layers and is_decoder.
    extraction_ : how texts were tokenised and pooled, a dict: representations, poolings, max_length (resolved),
        windows and window_overlap.
    validation_ : the held-out data, a dict: given (whether X_val, or ``fit_store``'s validation_rows, was passed),
        n_train, n_val (0 with folds) and cv (the number of folds, or None with one split).
    probe_scores_ : one dict per probe (key, representation, layer, pooling): its C, held-out score, non-zero
        weights, and the held-out score at every C of its grid (scores_by_C, Cs).
    search_results_ : every configuration the search scored, as dicts like ``configuration_``.
    cv_results_ : the same search as scikit-learn's ``GridSearchCV.cv_results_``: a dict of equal-length lists, one
        entry per candidate (param_readout_kind, param_representations, param_poolings, param_eta, param_exit_layer,
        param_C, param_dense_key, params, n_features, stage, mean_test_score, se_test_score, split0_test_score, ...
        (one per fold: per fold of each partition, partition after partition), rank_test_score; "test": held out).
    best_index_ : the chosen candidate's index in ``cv_results_``.
    kept_counts_ : neurons kept per probe at each η, a dict: etas (the sorted grid) and counts (probe key to one
        count per η).
    store_path_ : the directory of the activation store the fit read (with ``fit_store``, the store's ``path``).
    fit_seconds_ : the fit's wall time in seconds.
    fit_timings_ : the fit's seconds by phase (load, extract (not with ``fit_store``), probes or fold probes, search,
        final probes (with folds), estimate, final).
    """

    def __init__(self, model: str = "minilm", *, representations: Sequence[str] = ("hidden", "ffn"),
                 poolings: Sequence[str] | None = None, etas: Sequence[float] = DEFAULT_ETAS,
                 probe_Cs: Sequence[float] | None = None, final_Cs: Sequence[float] = DEFAULT_FINAL_CS,
                 metric: str = "auto", cv: int | str | None = "auto", cv_repeats: int | str = 1,
                 selection_rule: str = "auto", readout_kinds: Sequence[str] = READOUT_KINDS, mlp_head: bool = True,
                 class_weight: str | None = "auto", calibrate: bool = True, validation_size: float = 0.2,
                 max_length: int | None = None, windows: bool = False, window_overlap: int = 64, token_budget: int = 8192,
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
        self.cv_repeats = cv_repeats
        self.selection_rule = selection_rule
        self.readout_kinds = readout_kinds
        self.mlp_head = mlp_head
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
        """Fit on texts: extract (or find on disk) their activations, choose the readout, fit it.

        Parameters
        ----------
        X : sequence of str, shape (n_texts,)
            The training texts.
        y : sequence of labels, shape (n_texts,), or multi-label targets
            Their labels (hashable scalars: strings, integers ...), at least two classes; or label sets: a
            collection of labels per text (lists, tuples, sets; an empty one for none), or a 0/1 indicator array
            (n_texts, n_labels), as scikit-learn's multi-label estimators take them (at least two labels, none
            carried by every text or by none). Folds and splits of label sets are iteratively stratified.
        X_val, y_val : sequence of str and of labels, optional
            Validation texts and labels: with cross-validation they join X in the folds; with one split they are
            its validation texts (without them, ``validation_size`` of X is held out).

        Returns
        -------
        self : STCClassifier
            The fitted estimator.
        """
        timer = PhaseTimer()
        params = self._check_params()
        texts, codes, validation_rows = self._pool(X, y, X_val, y_val, params)
        params = self._for_target(params, codes)
        protocol = self._protocol(params, codes, validation_rows)
        backbone = self._load_backbone()
        timer.lap("load")
        settings = replace(self._extraction(params, backbone), pairs=isinstance(texts[0], tuple))
        store = build_store(backbone, texts, settings, root=params["store_dir"], token_budget=params["token_budget"],
                            show_progress_bar=params["show_progress_bar"], engine=params["engine"])
        timer.lap("extract")
        return self._fit_on_store(store, backbone, settings, protocol, params, timer)

    @_on_engine
    def fit_store(self, store, y, *, validation_rows=None) -> STCClassifier:
        """Fit on an activation store already built: what ``fit`` does after extraction, on the store's rows.

        The backbone ``model`` names is loaded (its reference and depth go into the model, and ``predict`` runs
        it), and the store is checked against it and the estimator's parameters: every array that
        ``representations`` x ``poolings`` read is there at the backbone's width; where the store records them,
        its number of texts, the backbone's weights hash and the tokenisation (``max_length``, ``windows``,
        ``store_dtype``) agree. Arrays the parameters do not read are ignored.

        Parameters
        ----------
        store : stc.store.ActivationStore, or an object with its reading interface
            ``keys`` (array names such as ``"ffn.L3.mean"``), ``dim(key)``, ``load(key, columns=, rows=)`` (a
            float array of shape (n_rows, dim), or those rows and columns) and ``path``. Row i is the text
            labelled ``y[i]``.
        y : sequence of labels, shape (n_rows,)
            The label of each row, at least two classes.
        validation_rows : sequence of int, optional
            Rows to use as ``fit``'s ``X_val``: with cross-validation they join the folds; with one split they are
            its validation rows (without them, ``validation_size`` of the rows is held out). Their labels must occur
            among the other rows.

        Returns
        -------
        self : STCClassifier
            The fitted estimator; ``store_path_`` is the store's ``path``.

        Examples
        --------
        A store extracted once serves several fits (here, ``fit(texts, labels)`` would build the same store):

        >>> from stc import STCClassifier
        >>> from stc.backbone import load_backbone
        >>> from stc.extract import default_poolings
        >>> from stc.store import ExtractionSettings, build_store
        >>> backbone = load_backbone("minilm")
        >>> store = build_store(backbone, texts, ExtractionSettings(("hidden", "ffn"), default_poolings(backbone)))
        >>> paper = STCClassifier("minilm", cv=None).fit_store(store, labels)
        >>> named = STCClassifier("minilm", readout_kinds=("sparse",)).fit_store(store, labels)
        """
        timer = PhaseTimer()
        params = self._check_params()
        self.classes_, codes, params["target"] = encode_targets(y, getattr(store, "n_texts", None) or len(y))
        params = self._for_target(params, codes)
        protocol = self._protocol(params, codes, check_validation_rows(validation_rows, codes, self.classes_))
        backbone = self._load_backbone()
        timer.lap("load")
        meta = getattr(store, "meta", None)  # a store of text pairs says so (its settings' "pairs")
        pairs = bool(((meta if isinstance(meta, dict) else {}).get("settings") or {}).get("pairs", False))
        settings = replace(self._extraction(params, backbone), pairs=pairs)
        return self._fit_on_store(store, backbone, settings, protocol, params, timer)

    def _pool(self, X, y, X_val, y_val, params: dict) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """(the texts to extract: X then any X_val, their class codes, the rows of X_val or None); sets
        ``classes_`` (from y). Everything is checked before any work."""
        texts = check_inputs(X, "X")
        if params["windows"] and isinstance(texts[0], tuple):
            raise ValueError("windows=True does not apply to text pairs: a pair is truncated longest_first to "
                             "max_length; leave windows=False")
        self.classes_, codes, params["target"] = encode_targets(y, len(texts))
        if X_val is None and y_val is None:
            return texts, codes, None
        if X_val is None or y_val is None:
            raise ValueError("give both X_val and y_val, or neither")
        val_texts = check_inputs(X_val, "X_val", pairs=isinstance(texts[0], tuple))
        val_codes = validation_targets(y_val, len(val_texts), self.classes_, params["target"])
        return texts + val_texts, np.concatenate([codes, val_codes]), np.arange(len(texts), len(texts) + len(val_texts))

    @staticmethod
    def _for_target(params: dict, codes: np.ndarray) -> dict:
        """The parameters as this target uses them: the metric and the class weights resolved ("auto")."""
        multilabel = codes.ndim == 2
        metric = check_metric(params["metric"], multilabel=multilabel)
        return dict(params, metric=metric,
                    class_weight=check_class_weight(params["class_weight"], metric, multilabel=multilabel))

    def _protocol(self, params: dict, codes: np.ndarray, validation_rows: np.ndarray | None) -> Protocol:
        return make_protocol(codes, self.classes_, validation_rows, cv=params["cv"], cv_repeats=params["cv_repeats"],
                             validation_size=params["validation_size"], seed=params["random_state"],
                             rule=params["selection_rule"], readout_kinds=params["readout_kinds"],
                             representations=params["representations"])

    @staticmethod
    def _extraction(params: dict, backbone: Backbone) -> ExtractionSettings:
        """How the texts are (or were) extracted: the parameters, the backbone's default poolings if none given."""
        return ExtractionSettings(representations=params["representations"],
                                  poolings=params["poolings"] or default_poolings(backbone),
                                  max_length=params["max_length"], windows=params["windows"],
                                  window_overlap=params["window_overlap"], dtype=params["store_dtype"])

    def _fit_on_store(self, store, backbone: Backbone, settings: ExtractionSettings, protocol: Protocol,
                      params: dict, timer: PhaseTimer) -> STCClassifier:
        """What ``fit`` and ``fit_store`` share: the protocol's choice on the store's rows, then the readout."""
        keys = store_keys(store, backbone, settings, len(protocol.codes))
        label_sets = protocol.codes.ndim == 2  # a ridge head: its own grid, a coarse one in stage 1, arrays together
        space = SearchSpace.over(settings.representations, settings.poolings, backbone.num_layers,
                                 etas=params["etas"], kinds=protocol.kinds, mlp_Cs=protocol.mlp_Cs(params["mlp_head"]),
                                 Cs=MULTILABEL_CS if label_sets else params["final_Cs"], array_subsets=not label_sets,
                                 stage_one_Cs=MULTILABEL_STAGE_ONE_CS if label_sets else None)
        options = FitOptions(metric=params["metric"], probe_Cs=params["probe_Cs"], probe_solver=params["probe_solver"],
                             n_jobs=params["n_jobs"], seed=params["random_state"], class_weight=params["class_weight"],
                             show_progress_bar=params["show_progress_bar"])
        result = protocol.run(store, keys, space, options, self.classes_, timer)
        kept_columns, head = self._final_classifier(store, result, protocol.codes, params)
        # multi-label: no temperature (each label's sigmoid, its threshold chosen on the same held-out values)
        calibrate = params["calibrate"] and protocol.codes.ndim == 1
        temperature = fit_temperature(result.evaluation.decisions, result.y_eval) if calibrate else 1.0
        timer.lap("final")
        self.validation_ = result.validation
        selection = {**result.selection, "metric": params["metric"], "target": params["target"]}
        record = fit_record(result.configurations, result.probes, params["etas"], result.validation, selection,
                            timer.phases, timer.seconds)
        self.readout_ = self._readout(backbone, settings, kept_columns, head, temperature, result, record)
        self.store_path_ = str(store.path)
        return self

    def _final_classifier(self, store, result: ProtocolResult, codes: np.ndarray,
                          params: dict) -> tuple[dict[str, np.ndarray], Pipeline]:
        """The chosen candidate's columns of each array, and its head's estimator (standardisation + logistic
        regression, or + MLP) fitted on them over the protocol's refit rows."""
        rows, candidate = result.fit_rows, result.evaluation.candidate
        kept_columns = candidate_columns(candidate, result.probes, {key: store.dim(key) for key in result.probes})
        n_kept = sum(map(len, kept_columns.values()))
        multilabel = codes.ndim == 2
        workers_within(final_fit_bytes(len(rows), n_kept, len(self.classes_), multilabel=multilabel), 1,
                       stage=f"the final classifier on {len(rows):,} texts x {n_kept:,} features",
                       knob="search fewer arrays (poolings, representations) or fit on fewer texts")
        X_fit = np.hstack([store.load(key, columns=columns, rows=rows) for key, columns in kept_columns.items()])
        return kept_columns, fit_head_estimator(candidate.head, candidate.C, params["random_state"],
                                                params["class_weight"], X_fit, codes[rows], multilabel=multilabel)

    def _readout(self, backbone: Backbone, settings: ExtractionSettings, kept_columns: dict[str, np.ndarray],
                 head: Pipeline, temperature: float, result: ProtocolResult, record: FitRecord) -> Readout:
        """The fitted model as one value: the one place a fit builds it."""
        chosen = result.configuration
        fitted = head_from_pipeline(head, self.classes_, temperature)
        if result.y_eval.ndim == 2:  # each label's probability and threshold, on the chosen candidate's held-out rows
            fitted = fitted.calibrated(result.evaluation.decisions, result.y_eval)
        return Readout(
            backbone=BackboneReference.of(backbone),
            extraction=replace(settings, max_length=settings.max_length or backbone.max_length),
            kept_columns=kept_columns, head=fitted,
            configuration=chosen.as_row(), params=self.get_params(), record=record,
            scores=Scores(validation=chosen.val_score, validation_se=chosen.score_se,
                          expected=result.expected[0], expected_se=result.expected[1]))

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
        """The kept-neuron features of texts X (n_texts, n_features), in ``kept_neurons_`` order (X: text pairs for
        a model fitted on pairs)."""
        readout = self._fitted()
        texts = check_inputs(X, "X", pairs=readout.extraction.pairs)
        return readout.features(self._fitted_backbone(), texts, token_budget=self.token_budget,
                                show_progress_bar=self.show_progress_bar)

    def explain(self, text: str, *, top_k: int = 10) -> dict:
        """The predicted label and the neurons that pushed this text's decision most (see ``stc.explain``)."""
        readout = self._fitted()
        return explain_prediction(readout, self._fitted_backbone(), text, top_k=top_k)
