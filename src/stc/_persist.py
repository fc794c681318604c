"""Save and load a fitted STCClassifier as JSON + safetensors; loading never runs code from the files.

A model directory holds ``stc_model.json`` (parameters, labels, chosen configuration, backbone reference with its
weights hash, tables), ``arrays.safetensors`` (standardisation, final weights, kept-neuron indices), and, when asked,
``backbone/`` (a copy of the model and tokenizer). A save is written to a temporary directory and renamed into
place, so an interrupted save leaves the previous model intact. Replacing a model takes two renames (the old one
to ``<dir>.old-<pid>``, the new one to ``<dir>``); a process killed between them leaves no model at ``<dir>``,
so every save and load of ``<dir>`` first puts such a leftover back (or removes it once ``<dir>`` is there).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from pickle import UnpicklingError  # only the exception: nothing here unpickles

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ._files import replace_directory
from ._version import __version__
from .aggregate import make_final_classifier
from .extract import parse_key
from .model_card import write_model_card

__all__ = ["save_classifier", "load_classifier"]

FORMAT = "stc-classifier"
_ESTIMATES = ("cv_score", "cv_score_se", "expected_score", "expected_score_se")
FORMAT_VERSION = 2  # 2 added the selection estimates and the calibration temperature
READABLE_VERSIONS = (1, 2)  # version 1 models load with temperature 1 and no estimates
#: Seconds to sleep between the two renames of a save: only tests set it, to kill a process inside that window.
SAVE_WINDOW_PAUSE_ENV = "STC_TEST_SAVE_WINDOW_PAUSE_S"
_CONFIG = "stc_model.json"
_ARRAYS = "arrays.safetensors"
_LABEL_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
_TUPLE_PARAMS = ("representations", "poolings", "etas", "probe_Cs", "final_Cs")


def _encode_labels(classes: np.ndarray) -> dict:
    values = classes.tolist()
    kinds = {type(v).__name__ for v in values}
    if len(kinds) != 1 or next(iter(kinds)) not in _LABEL_TYPES:
        raise TypeError(f"labels of type {sorted(kinds)} cannot be saved; use str, int, float or bool labels")
    return {"type": next(iter(kinds)), "values": values}


def save_classifier(clf, directory, *, copy_backbone: bool = False) -> Path:
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(clf, "classifier_")
    directory = Path(directory)
    recover_interrupted_save(directory)
    partial = directory.with_name(directory.name + f".tmp-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _write_model(clf, partial, copy_backbone)
        _move_into_place(partial, directory)
    except BaseException:  # Ctrl-C too: no half-written directory stays behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return directory


def _write_model(clf, partial: Path, copy_backbone: bool) -> None:
    scaler, logreg = clf.classifier_.named_steps["scale"], clf.classifier_.named_steps["logreg"]
    arrays = {"scale.mean": scaler.mean_, "scale.scale": scaler.scale_, "logreg.coef": logreg.coef_,
              "logreg.intercept": logreg.intercept_}
    arrays.update({f"columns.{key}": np.asarray(cols, dtype=np.int64) for key, cols in clf.kept_columns_.items()})
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(partial / _ARRAYS))
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in clf.get_params().items()}
    backbone = dict(clf.backbone_)
    if copy_backbone:
        loaded = clf._load_backbone()
        loaded.model.save_pretrained(partial / "backbone")
        loaded.tokenizer.save_pretrained(partial / "backbone")
        backbone["copied"] = True
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "stc_version": __version__, "params": params,
                "classes": _encode_labels(clf.classes_), "backbone": backbone, "extraction": clf.extraction_,
                "configuration": clf.configuration_, "kept_columns": list(clf.kept_columns_),
                "val_score": clf.val_score_, "probe_scores": clf.probe_scores_,
                "search_results": clf.search_results_, "kept_counts": getattr(clf, "kept_counts_", None),
                "validation": getattr(clf, "validation_", None), "fit_seconds": clf.fit_seconds_,
                "fit_timings": getattr(clf, "fit_timings_", None), "selection": getattr(clf, "selection_", None),
                "estimates": {name: getattr(clf, f"{name}_", None) for name in _ESTIMATES},
                "temperature": float(getattr(clf, "temperature_", 1.0))}
    (partial / _CONFIG).write_text(json.dumps(document, indent=1), encoding="utf-8")
    write_model_card(clf, partial)


def _move_into_place(partial: Path, directory: Path) -> None:
    """Rename the finished directory into place; the previous model is restored if that rename fails."""
    pause = os.environ.get(SAVE_WINDOW_PAUSE_ENV)
    replace_directory(partial, directory, marker=_CONFIG, what="an stc model directory",
                      between=(lambda: time.sleep(float(pause))) if pause else None)


def recover_interrupted_save(directory: Path) -> None:
    """Put back what a save killed between its two renames left: the previous model, ``<dir>.old-<pid>``, goes
    back to ``<dir>`` when ``<dir>`` is missing, and is removed when ``<dir>`` is there (the kill came after the
    second rename). The unfinished new model (``<dir>.tmp-<pid>``) of a dead process is removed. Leftovers of a
    process still running (a save in progress) are left alone."""
    directory = Path(directory)
    if not directory.parent.is_dir():
        return
    pattern = re.compile(re.escape(directory.name) + r"\.(old|tmp)-(\d+)")
    leftovers = []
    for path in directory.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match and path.is_dir() and not _process_alive(int(match.group(2))):
            leftovers.append((match.group(1), path))
    retired = sorted((path for kind, path in leftovers if kind == "old" and (path / _CONFIG).is_file()),
                     key=lambda path: path.stat().st_mtime)
    if retired and not directory.exists():
        os.rename(retired.pop(), directory)  # the newest previous model: the save that retired it never finished
    for _, path in leftovers:
        if path.exists() and path != directory:
            shutil.rmtree(path)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours is never mid-save while we recover
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _require(condition: bool, directory: Path, problem: str) -> None:
    if not condition:
        raise ValueError(f"{directory} is not a valid stc model: {problem}")


def load_classifier(estimator_class, directory, *, check_backbone: bool = True, device: str | None = None,
                    trust_remote_code: bool = False):
    """A fitted ``estimator_class`` (STCClassifier, which ``stc.load`` passes: this module sits below it) from a
    directory ``save_classifier`` wrote; a damaged file or a changed backbone is a clear error.

    A model file cannot switch on ``trust_remote_code`` by itself: the caller must pass it, trusting the source.
    """
    directory = Path(directory)
    recover_interrupted_save(directory)
    config_path = directory / _CONFIG
    _require(config_path.is_file(), directory, f"{_CONFIG} is missing")
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_path} is not valid JSON: {error}") from None
    _require(isinstance(document, dict) and document.get("format") == FORMAT, directory, "not an stc model file")
    _require(document.get("format_version") in READABLE_VERSIONS, directory,
             f"format version {document.get('format_version')!r}, this stc reads {READABLE_VERSIONS}; refit the "
             f"model with this stc (stc fit) to use it here")
    for field, kind in (("params", dict), ("classes", dict), ("backbone", dict), ("extraction", dict),
                        ("configuration", dict), ("kept_columns", list)):
        _require(isinstance(document.get(field), kind), directory, f"'{field}' is missing or not a {kind.__name__}")
    try:
        arrays = load_file(str(directory / _ARRAYS))
    except (FileNotFoundError, SafetensorError, OSError) as error:
        raise ValueError(f"{directory / _ARRAYS} cannot be read: {error}") from None
    params = {k: tuple(v) if k in _TUPLE_PARAMS and isinstance(v, list) else v
              for k, v in document["params"].items()}
    try:
        clf = estimator_class(**params)
    except TypeError as error:
        raise ValueError(f"{config_path}: unexpected parameters ({error})") from None
    if device is not None:
        clf.device = device
    _require(clf.trust_remote_code is False or trust_remote_code is True, directory,
             f"it asks for trust_remote_code={clf.trust_remote_code!r}, which runs code shipped with its backbone; "
             f"pass trust_remote_code=True to load only if you trust where it came from")
    try:
        clf._check_params()
    except (ValueError, TypeError) as error:
        raise ValueError(f"{directory} is not a valid stc model: {error}") from None
    _check_extraction(directory, document["extraction"], document["configuration"])
    labels = document["classes"]
    _require(labels.get("type") in _LABEL_TYPES and isinstance(labels.get("values"), list)
             and len(labels["values"]) >= 2, directory, "'classes' must list at least two labels of one type")
    kind = _LABEL_TYPES[labels["type"]]
    _require(all(type(v) is kind or (kind is float and type(v) is int) for v in labels["values"]), directory,
             f"'classes' values are not all {labels['type']}")
    clf.classes_ = np.asarray([kind(v) for v in labels["values"]])
    n_classes = len(clf.classes_)
    kept = {}
    for key in document["kept_columns"]:
        _require(isinstance(key, str), directory, "kept_columns must be names")
        try:
            parse_key(key)
        except ValueError as error:
            raise ValueError(f"{directory} is not a valid stc model: {error}") from None
        columns = arrays.get(f"columns.{key}")
        _require(columns is not None and columns.ndim == 1 and columns.dtype == np.int64 and (columns >= 0).all(),
                 directory, f"the column indices of {key} are missing or not non-negative int64")
        kept[key] = columns
    n_features = sum(len(c) for c in kept.values())
    n_rows = 1 if n_classes == 2 else n_classes
    expected = {"scale.mean": (n_features,), "scale.scale": (n_features,), "logreg.coef": (n_rows, n_features),
                "logreg.intercept": (n_rows,)}
    for name, shape in expected.items():
        array = arrays.get(name)
        _require(array is not None and array.shape == shape
                 and array.dtype in (np.float32, np.float64) and np.isfinite(array).all(), directory,
                 f"array {name} must be finite float32/float64 of shape {shape}, found "
                 f"{None if array is None else (array.dtype.name, array.shape)}")
    _require((arrays["scale.scale"] > 0).all(), directory, "scale.scale must be positive")
    for name in ("backbone", "extraction", "configuration"):
        setattr(clf, f"{name}_", document[name])
    clf.kept_columns_ = kept
    clf.classifier_ = _rebuild_pipeline(arrays, clf, n_classes, n_features)
    clf.exit_layer_ = int(document["configuration"].get("exit_layer", 0))
    clf.val_score_ = document.get("val_score")
    clf.probe_scores_ = document.get("probe_scores", [])
    clf.search_results_ = document.get("search_results", [])
    for name in ("kept_counts", "validation", "fit_timings", "selection"):  # descriptive: nothing computes with them
        if isinstance(document.get(name), dict):
            setattr(clf, f"{name}_", document[name])
    estimates = document.get("estimates") or {}
    _require(isinstance(estimates, dict), directory, "'estimates' must be an object")
    for name in _ESTIMATES:
        value = estimates.get(name)
        _require(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)), directory,
                 f"estimate {name!r} must be a number or null, found {value!r}")
        if value is not None:
            setattr(clf, f"{name}_", float(value))
    temperature = document.get("temperature", 1.0)
    _require(isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
             and math.isfinite(temperature) and temperature > 0, directory,
             f"'temperature' must be a positive number, found {temperature!r}")
    clf.temperature_ = float(temperature)
    clf.fit_seconds_ = document.get("fit_seconds")
    from .aggregate import feature_names

    clf.kept_neurons_ = feature_names(kept)
    clf.n_features_ = n_features
    if document["backbone"].get("copied"):
        _require((directory / "backbone" / "config.json").is_file(), directory, "backbone/ copy is missing")
        clf.model = str((directory / "backbone").resolve())
    if check_backbone:
        try:
            backbone = clf._load_backbone()
        except (RuntimeError, AssertionError, UnpicklingError) as error:  # a device missing here; a refused pickle
            raise ValueError(f"{directory}: cannot load its backbone {clf.model!r} on device {clf.device!r} (pass "
                             f"device= to choose another): {str(error).splitlines()[0] if str(error) else error!r}") \
                from None
        if backbone.weights_hash() != document["backbone"].get("weights_sha256"):
            raise ValueError(f"{directory}: the backbone {clf.model!r} has weights (sha256 "
                             f"{backbone.weights_hash()[:12]}…) that differ from the ones this model was fitted on "
                             f"({str(document['backbone'].get('weights_sha256'))[:12]}…)")
        for key, columns in kept.items():
            representation, layer, _ = parse_key(key)
            width = backbone.hidden_size if representation == "hidden" else backbone.ffn_size
            _require(layer <= backbone.num_layers, directory,
                     f"{key} reads layer {layer} of a backbone with {backbone.num_layers} layers")
            _require(len(columns) == 0 or int(columns.max()) < width, directory,
                     f"{key}: column index {int(columns.max()) if len(columns) else 0} is out of range for its "
                     f"{width} neurons")
    return clf


def _check_extraction(directory: Path, extraction: dict, configuration: dict) -> None:
    """The settings ``predict`` reads: how texts are tokenised, the exit layer and C of the final classifier."""
    def whole(value, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    _require(whole(extraction.get("max_length"), 2), directory, "extraction 'max_length' must be an integer >= 2")
    _require(isinstance(extraction.get("windows"), bool), directory, "extraction 'windows' must be true or false")
    _require(whole(extraction.get("window_overlap"), 0), directory,
             "extraction 'window_overlap' must be a non-negative integer")
    _require(whole(configuration.get("exit_layer"), 1), directory, "configuration 'exit_layer' must be an integer >= 1")
    C = configuration.get("C")
    _require(isinstance(C, (int, float)) and not isinstance(C, bool) and math.isfinite(C) and C > 0, directory,
             f"configuration 'C' must be a positive number, found {C!r}")


def _rebuild_pipeline(arrays, clf, n_classes, n_features):
    pipeline = make_final_classifier(float(clf.configuration_.get("C", 1.0)), clf.random_state, clf.class_weight)
    scaler: StandardScaler = pipeline.named_steps["scale"]
    scaler.mean_, scaler.scale_ = arrays["scale.mean"], arrays["scale.scale"]
    scaler.var_ = scaler.scale_ ** 2
    scaler.n_features_in_, scaler.n_samples_seen_ = n_features, 0
    logreg: LogisticRegression = pipeline.named_steps["logreg"]
    logreg.classes_ = np.arange(n_classes)
    logreg.coef_, logreg.intercept_ = arrays["logreg.coef"], arrays["logreg.intercept"]
    logreg.n_features_in_, logreg.n_iter_ = n_features, np.array([0])
    return pipeline
