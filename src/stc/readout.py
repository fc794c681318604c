"""A fitted STC model as one immutable value: the backbone it reads, which neurons, and the linear head on them.

``STCClassifier.fit`` ends by building a ``Readout``; whatever runs a fitted model (``predict``, ``explain``, the
report, serving, the ONNX export, the model card) reads it. ``to_files`` / ``from_files`` write and read it as JSON
+ safetensors (no pickle: loading never runs code from the files); every field is checked when a ``Readout`` is
made, so a damaged file and a hand-built readout are refused by the same checks, with a message naming the field.

The head (``stc.head.LinearHead``: a standardisation and a logistic regression, with the calibration temperature)
is the one place decision values, probabilities, labels and contributions are computed; a readout adds what to feed
it (the backbone, the kept neurons) and how it was chosen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from pickle import UnpicklingError  # only the exception: nothing here unpickles

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ._readout_fields import ChosenReadout, Frozen, check_extraction, check_kept_columns, check_positive, \
    chosen_readout, frozen, number_or_none, require, thawed
from ._version import __version__
from .aggregate import feature_names
from .backbone import Backbone, load_backbone
from .extract import extract_features, parse_key
from .head import LinearHead, labels_to_json
from .store import ExtractionSettings

__all__ = ["Readout", "BackboneReference", "Scores", "FitRecord", "ChosenReadout", "chosen_readout", "FORMAT_VERSION",
           "READABLE_VERSIONS", "CONFIG_FILE", "BACKBONE_COPY"]

FORMAT = "stc-classifier"
FORMAT_VERSION = 2  # 2 added the selection estimates and the calibration temperature
READABLE_VERSIONS = (1, 2)  # version 1 models load with temperature 1 and no estimates
CONFIG_FILE = "stc_model.json"  # its presence marks a directory as an stc model
ARRAYS_FILE = "arrays.safetensors"
BACKBONE_COPY = "backbone"  # the copy of the backbone ``save(copy_backbone=True)`` writes beside the model
_PREDICT_CHUNK = 2048  # texts per extraction call at inference: memory stays flat for any number of texts
_ESTIMATES = {"validation_se": "val_score_se", "expected": "expected_score",
              "expected_se": "expected_score_se"}  # Scores field -> its name in the file's "estimates"


@dataclass(frozen=True)
class BackboneReference:
    """Which backbone a readout reads: the name it was loaded by, where from, its weights' sha256, its depth."""

    name: str
    source: str
    gguf_file: str | None
    sha256: str
    num_layers: int
    is_decoder: bool
    copy: str | None = None  # a copy saved beside the model (``copy_backbone``): loaded instead of ``name``

    def __post_init__(self) -> None:
        for name in ("name", "source", "sha256"):
            require(isinstance(getattr(self, name), str), f"backbone '{name}' must be a string")
        require(self.gguf_file is None or isinstance(self.gguf_file, str), "backbone 'gguf_file' must be a string")
        require(isinstance(self.num_layers, int) and not isinstance(self.num_layers, bool) and self.num_layers >= 1,
                "backbone 'num_layers' must be a positive integer")
        require(isinstance(self.is_decoder, bool), "backbone 'is_decoder' must be true or false")

    @classmethod
    def of(cls, backbone: Backbone) -> BackboneReference:
        return cls(name=backbone.name, source=backbone.source, gguf_file=backbone.gguf_file,
                   sha256=backbone.weights_hash(), num_layers=backbone.num_layers, is_decoder=backbone.is_decoder)

    def record(self) -> dict:
        """As saved (and as ``STCClassifier.backbone_`` shows it); ``copied`` when a copy lies beside the model."""
        record = {"name": self.name, "source": self.source, "gguf_file": self.gguf_file,
                  "weights_sha256": self.sha256, "num_layers": self.num_layers, "is_decoder": self.is_decoder}
        return {**record, "copied": True} if self.copy is not None else record


@dataclass(frozen=True)
class Scores:
    """Held-out scores of the chosen configuration in the model's metric; None where the model has none."""

    validation: float | None = None  # the selection's score (the cross-validated mean, or one split's)
    validation_se: float | None = None  # its standard error over the folds (or the validation blocks)
    expected: float | None = None  # the expected test score, the selection's optimism left out
    expected_se: float | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            object.__setattr__(self, item.name, number_or_none(getattr(self, item.name), f"score {item.name!r}"))


@dataclass(frozen=True)
class FitRecord:
    """How the fit went, for the report and the model card (JSON values, read-only); nothing predicts with it."""

    probe_scores: Sequence = ()
    search_results: Sequence = ()
    kept_counts: Mapping | None = None
    validation: Mapping | None = None
    selection: Mapping | None = None
    fit_seconds: float | None = None
    fit_timings: Mapping | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            object.__setattr__(self, item.name, frozen(getattr(self, item.name)))
        object.__setattr__(self, "fit_seconds", number_or_none(self.fit_seconds, "'fit_seconds'"))


@dataclass(frozen=True, eq=False)
class Readout:
    """What a fitted STC model reads and computes: the backbone up to ``exit_layer``, the kept neurons of each
    (representation, layer, pooling), and the ``head`` on them (``stc.head.LinearHead``: standardisation, logistic
    regression, temperature), whose features are the kept neurons in ``neuron_names`` order.

    ``params`` are the parameters of the estimator that fitted it, saved so that loading rebuilds the same
    estimator. Arrays are read-only; change a readout with ``dataclasses.replace`` (its head too:
    ``replace(readout, head=replace(readout.head, temperature=2.0))``), which checks the new one again.
    """

    backbone: BackboneReference
    extraction: ExtractionSettings  # max_length resolved: the tokens per text the fit used
    kept_columns: Mapping[str, np.ndarray]
    head: LinearHead
    configuration: Mapping[str, object]  # the chosen row of the search: readout, eta, exit_layer, C, ...
    scores: Scores = field(default_factory=Scores)
    params: Mapping[str, object] = field(default_factory=Frozen)
    record: FitRecord = field(default_factory=FitRecord)

    def __post_init__(self) -> None:
        def set_field(name: str, value) -> None:  # frozen: the checked, read-only value replaces the given one
            object.__setattr__(self, name, value)

        require(isinstance(self.backbone, BackboneReference), "backbone must be a BackboneReference")
        require(isinstance(self.extraction, ExtractionSettings), "extraction must be ExtractionSettings")
        check_extraction(self.extraction)
        set_field("kept_columns", check_kept_columns(self.kept_columns, self.backbone.num_layers))
        require(isinstance(self.head, LinearHead), "head must be a LinearHead")
        n_features = sum(len(columns) for columns in self.kept_columns.values())
        require(self.head.n_features == n_features, f"the head reads {self.head.n_features} features but the kept "
                                                    f"columns hold {n_features} neurons")
        require(isinstance(self.configuration, Mapping), "'configuration' must be an object")
        set_field("configuration", frozen(self.configuration))
        chosen_readout(self.configuration)  # its kind, η, dense key and exit layer
        if self.head.kind != "multilabel" or self.configuration.get("C") is not None:  # label sets: no C
            check_positive(self.configuration.get("C"), "configuration 'C'")
        require(isinstance(self.params, Mapping), "'params' must be an object")
        set_field("params", frozen(self.params))
        require(isinstance(self.scores, Scores) and isinstance(self.record, FitRecord),
                "scores must be Scores and record a FitRecord")

    def __reduce__(self):
        """Copies and pickles are made through the constructor, so they are checked and read-only too."""
        return type(self), tuple(getattr(self, item.name) for item in fields(self))

    # --- what it is ----------------------------------------------------------------------------------------------

    @property
    def exit_layer(self) -> int:
        """The deepest layer the configuration reads: the backbone runs this far and no further."""
        return int(self.configuration["exit_layer"])

    @property
    def chosen(self) -> ChosenReadout:
        """What the configuration reads: sparse (kept neurons at η), dense (every neuron of one array) or hybrid."""
        return chosen_readout(self.configuration)

    @property
    def n_features(self) -> int:
        return self.head.n_features

    @property
    def classes(self) -> np.ndarray:
        """The labels, in the head's column order."""
        return self.head.classes

    @property
    def multilabel(self) -> bool:
        """Whether the head is multi-label (a binary head and a threshold per label)."""
        return self.head.kind == "multilabel"

    @property
    def target(self) -> str:
        """What the model was fitted on: "labels" (one per text), "label sets" or "indicator" (multi-label)."""
        return (self.record.selection or {}).get("target") or ("label sets" if self.multilabel else "labels")

    @property
    def metric(self) -> str:
        """The metric the fit chose by (the ``metric`` parameter, "auto" resolved; older files: the parameter)."""
        metric = (self.record.selection or {}).get("metric") or self.params.get("metric", "accuracy")
        return ("micro_f1" if self.multilabel else "accuracy") if metric == "auto" else metric

    @property
    def temperature(self) -> float:
        """The head's calibration temperature (1: none)."""
        return self.head.temperature

    @property
    def neuron_names(self) -> list[str]:
        """The features' names in column order, ``"ffn.L3.mean.1021"``-style."""
        return feature_names(self.kept_columns)

    def configuration_record(self) -> dict:
        """The chosen configuration as plain JSON (``STCClassifier.configuration_``)."""
        return thawed(self.configuration)

    def extraction_record(self) -> dict:
        """How texts are tokenised, as saved (and as ``STCClassifier.extraction_`` shows it)."""
        settings = self.extraction
        return {"representations": list(settings.representations), "poolings": list(settings.poolings),
                "max_length": settings.max_length, "windows": settings.windows,
                "window_overlap": settings.window_overlap, "pairs": settings.pairs}

    # --- computing -----------------------------------------------------------------------------------------------

    def features(self, backbone: Backbone, texts: Sequence[str], *, token_budget: int = 8192,
                 show_progress_bar: bool = False) -> np.ndarray:
        """The kept-neuron features of ``texts`` (n_texts, n_features) float32, in ``neuron_names`` order; the
        backbone runs only to the deepest kept layer."""
        keys = list(self.kept_columns)
        columns = {key: np.array(indices) for key, indices in self.kept_columns.items()}  # torch wants writable
        parts = []
        for start in range(0, len(texts), _PREDICT_CHUNK):
            pooled = extract_features(
                backbone, texts[start:start + _PREDICT_CHUNK], keys, columns=columns,
                max_length=self.extraction.max_length, windows=self.extraction.windows,
                window_overlap=self.extraction.window_overlap, token_budget=token_budget,
                show_progress_bar=show_progress_bar and len(texts) > 256, progress_desc="predict")
            parts.append(np.hstack([pooled[key] for key in keys]))
        return np.vstack(parts)

    def decision(self, features: np.ndarray) -> np.ndarray:
        """The head's decision values of ``features`` (``LinearHead.decision``)."""
        return self.head.decision(features)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """The head's class probabilities of ``features`` (``LinearHead.probabilities``)."""
        return self.head.probabilities(features)

    def labels(self, features: np.ndarray) -> np.ndarray:
        """The head's predicted labels of ``features`` (``LinearHead.labels``)."""
        return self.head.labels(features)

    # --- the backbone --------------------------------------------------------------------------------------------

    def load_backbone(self, *, model: str | None = None, device: str = "auto", dtype: str = "auto",
                      trust_remote_code: bool = False, check: bool = True) -> Backbone:
        """The backbone to run: ``model`` if given, else the copy saved beside the model, else the one it was
        fitted with. ``check`` refuses weights whose sha256 differs from the fitted ones, and a backbone whose
        layers or widths the kept neurons do not fit."""
        model = str(model or self.backbone.copy or self.backbone.name)
        try:
            backbone = load_backbone(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        except (RuntimeError, AssertionError, UnpicklingError) as error:  # a device missing here; a refused pickle
            raise ValueError(f"cannot load its backbone {model!r} on device {device!r} (pass device= to choose "
                             f"another): {str(error).splitlines()[0] if str(error) else error!r}") from None
        if check:
            self.check_backbone(backbone)
        return backbone

    def check_backbone(self, backbone: Backbone) -> None:
        """Refuse a backbone that is not the fitted one (weights sha256) or that the kept neurons do not fit."""
        if backbone.weights_hash() != self.backbone.sha256:
            raise ValueError(f"the backbone {backbone.name!r} has weights (sha256 {backbone.weights_hash()[:12]}…) "
                             f"that differ from the ones this model was fitted on ({self.backbone.sha256[:12]}…)")
        for key, columns in self.kept_columns.items():
            representation, layer, _ = parse_key(key)
            width = backbone.hidden_size if representation == "hidden" else backbone.ffn_size
            if layer > backbone.num_layers:
                raise ValueError(f"{key} reads layer {layer} of a backbone with {backbone.num_layers} layers")
            if len(columns) and int(columns.max()) >= width:
                raise ValueError(f"{key}: column index {int(columns.max())} is outside its {width} neurons")

    # --- files ---------------------------------------------------------------------------------------------------

    def to_files(self, directory: str | Path) -> None:
        """Write ``stc_model.json`` and ``arrays.safetensors`` into ``directory`` (which must exist). Not atomic
        by itself: ``STCClassifier.save`` writes into a fresh directory and renames it into place."""
        directory = Path(directory)
        arrays = dict(self.head.arrays())
        arrays.update({f"columns.{key}": columns for key, columns in self.kept_columns.items()})
        save_file({name: np.ascontiguousarray(array) for name, array in arrays.items()}, str(directory / ARRAYS_FILE))
        record, scores = self.record, self.scores
        document = {"format": FORMAT, "format_version": FORMAT_VERSION, "stc_version": __version__,
                    "params": thawed(self.params), "classes": labels_to_json(self.classes),
                    "backbone": self.backbone.record(), "extraction": self.extraction_record(),
                    "configuration": self.configuration_record(), "kept_columns": list(self.kept_columns),
                    "val_score": scores.validation, "probe_scores": thawed(record.probe_scores),
                    "search_results": thawed(record.search_results), "kept_counts": thawed(record.kept_counts),
                    "validation": thawed(record.validation), "fit_seconds": record.fit_seconds,
                    "fit_timings": thawed(record.fit_timings), "selection": thawed(record.selection),
                    "estimates": {file_name: getattr(scores, name) for name, file_name in _ESTIMATES.items()},
                    "temperature": self.head.temperature, "head_kind": self.head.kind}
        (directory / CONFIG_FILE).write_text(json.dumps(document, indent=1), encoding="utf-8")

    @classmethod
    def from_files(cls, directory: str | Path) -> Readout:
        """The readout ``to_files`` wrote (format 1 or 2); anything missing, damaged or inconsistent is a
        ValueError that names the directory and the field."""
        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.is_file():
            raise ValueError(f"{directory} is not a valid stc model: {CONFIG_FILE} is missing")
        try:
            document = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{config_path} is not valid JSON: {error}") from None
        try:
            require(isinstance(document, dict) and document.get("format") == FORMAT, "not an stc model file")
            require(document.get("format_version") in READABLE_VERSIONS,
                    f"format version {document.get('format_version')!r}, this stc reads {READABLE_VERSIONS}; refit "
                    f"the model with this stc (stc fit) to use it here")
            for name, kind in (("params", dict), ("classes", dict), ("backbone", dict), ("extraction", dict),
                               ("configuration", dict), ("kept_columns", list)):
                require(isinstance(document.get(name), kind), f"'{name}' is missing or not a {kind.__name__}")
        except ValueError as error:
            raise ValueError(f"{directory} is not a valid stc model: {error}") from None
        try:
            arrays = load_file(str(directory / ARRAYS_FILE))
        except (FileNotFoundError, SafetensorError, OSError) as error:
            raise ValueError(f"{directory / ARRAYS_FILE} cannot be read: {error}") from None
        try:
            return cls._from_document(document, arrays, directory)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{directory} is not a valid stc model: {error}") from None

    @classmethod
    def _from_document(cls, document: dict, arrays: dict[str, np.ndarray], directory: Path) -> Readout:
        kept = {}
        for key in document["kept_columns"]:
            require(isinstance(key, str), "kept_columns must be names")
            parse_key(key)
            columns = arrays.get(f"columns.{key}")
            require(columns is not None and columns.ndim == 1 and columns.dtype == np.int64, f"the column indices "
                    f"of {key} are missing or not non-negative int64")
            kept[key] = columns
        backbone = document["backbone"]
        copy = None
        if backbone.get("copied"):
            require((directory / BACKBONE_COPY / "config.json").is_file(), f"{BACKBONE_COPY}/ copy is missing")
            copy = str((directory / BACKBONE_COPY).resolve())
        extraction = document["extraction"]
        for name in ("representations", "poolings"):
            require(isinstance(extraction.get(name), list) and all(isinstance(v, str) for v in extraction[name]),
                    f"extraction '{name}' must be a list of names")
        estimates = document.get("estimates") or {}
        require(isinstance(estimates, dict), "'estimates' must be an object")
        record = {name: document.get(name) for name in ("kept_counts", "validation", "fit_timings", "selection")}
        fit_seconds = document.get("fit_seconds")
        return cls(
            backbone=BackboneReference(
                name=backbone.get("name"), source=backbone.get("source"), gguf_file=backbone.get("gguf_file"),
                sha256=backbone.get("weights_sha256"), num_layers=backbone.get("num_layers"),
                is_decoder=backbone.get("is_decoder"), copy=copy),
            extraction=ExtractionSettings(
                representations=tuple(extraction["representations"]), poolings=tuple(extraction["poolings"]),
                max_length=extraction.get("max_length"), windows=extraction.get("windows"),
                window_overlap=extraction.get("window_overlap"),
                dtype=document["params"].get("store_dtype", "float32"), pairs=extraction.get("pairs") is True),
            kept_columns=kept, head=LinearHead.from_parts({**document, "kind": document.get("head_kind", "linear")},
                                                          arrays),
            configuration=document["configuration"],
            scores=Scores(validation=document.get("val_score"),
                          **{name: estimates.get(file_name) for name, file_name in _ESTIMATES.items()
                             if name != "validation_se"},
                          validation_se=_validation_se(estimates)),
            params=document["params"],
            record=FitRecord(probe_scores=document.get("probe_scores", []),
                             search_results=document.get("search_results", []),
                             fit_seconds=fit_seconds if isinstance(fit_seconds, (int, float)) else None,
                             **{name: value if isinstance(value, dict) else None for name, value in record.items()}))


def _validation_se(estimates: dict) -> float | None:
    """The held-out score's standard error: ``val_score_se``, or in files written before 2026-12-05
    ``cv_score_se`` (beside a ``cv_score`` that always equalled ``val_score``)."""
    return estimates.get("val_score_se", estimates.get("cv_score_se"))
