"""A fitted model behind one small interface, so that serving and the CLI do not care which runtime computes it.

Every runtime ends in the same place: kept-neuron features (n_texts, n_features) go through ``LinearHead``, the
scaler + logistic regression of the fitted model applied in numpy, with the model's temperature when it has one.
The torch runtime gets its features from ``STCClassifier.transform`` (the readout's ``features``); the ONNX runtime
(``stc.export``) from its graph. Faces (``stc serve``, ``stc predict --runtime``) import this module; the core never does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._version import __version__
from ._estimator import plain_label
from .calibration import probabilities
from .readout import Readout, chosen_readout

__all__ = ["LinearHead", "Predictor", "TorchPredictor", "plain_label"]

RUNTIMES = ("torch", "onnx")


@dataclass(frozen=True)
class LinearHead:
    """The final classifier as arrays: standardise, one linear map, softmax (or sigmoid for two classes)."""

    classes: list
    mean: np.ndarray  # (n_features,)
    scale: np.ndarray  # (n_features,)
    coef: np.ndarray  # (1 or n_classes, n_features)
    intercept: np.ndarray  # (1 or n_classes,)
    temperature: float = 1.0

    @classmethod
    def from_readout(cls, readout: Readout) -> LinearHead:
        """The head of a fitted model, from its readout (arrays in float64)."""
        return cls(classes=[plain_label(c) for c in readout.classes], mean=np.asarray(readout.mean, np.float64),
                   scale=np.asarray(readout.scale, np.float64), coef=np.asarray(readout.coef, np.float64),
                   intercept=np.asarray(readout.intercept, np.float64), temperature=readout.temperature)

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def standardise(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, np.float64) - self.mean) / self.scale

    def decision(self, features: np.ndarray) -> np.ndarray:
        """The logistic regression's decision values (n_texts, 1 or n_classes), before the temperature."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(f"features must have shape (n_texts, {self.n_features}), got {features.shape}")
        return self.standardise(features) @ self.coef.T + self.intercept

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (n_texts, n_classes), columns in ``classes`` order: the one place they are made."""
        return self.probabilities_from_decision(self.decision(features))

    def probabilities_from_decision(self, decision: np.ndarray) -> np.ndarray:
        return probabilities(decision, self.temperature)

    def to_json(self) -> dict:
        return {"classes": self.classes, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept.tolist(), "temperature": self.temperature}

    @classmethod
    def from_json(cls, document: dict, where: str) -> LinearHead:
        """Rebuild a head from ``to_json``; every shape and value is checked, the message names ``where``."""
        try:
            classes = list(document["classes"])
            arrays = {name: np.asarray(document[name], dtype=np.float64)
                      for name in ("mean", "scale", "coef", "intercept")}
            temperature = float(document.get("temperature", 1.0))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{where}: the head is incomplete or not numeric ({error!r})") from None
        n_features, n_rows = arrays["mean"].shape[0] if arrays["mean"].ndim == 1 else -1, \
            (1 if len(classes) == 2 else len(classes))
        expected = {"mean": (n_features,), "scale": (n_features,), "coef": (n_rows, n_features),
                    "intercept": (n_rows,)}
        for name, shape in expected.items():
            if arrays[name].shape != shape or not np.isfinite(arrays[name]).all():
                raise ValueError(f"{where}: head array {name} must be finite of shape {shape}, found "
                                 f"{arrays[name].shape}")
        if len(classes) < 2 or not (arrays["scale"] > 0).all() or not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"{where}: the head needs >= 2 classes, positive scales and a positive temperature")
        return cls(classes=classes, temperature=temperature, **arrays)

    def explain(self, features: np.ndarray, neuron_names: list[str], *, top_k: int = 10) -> dict:
        """The decision of one text split into each neuron's ``weight * standardised activation`` (no token peaks).

        The same fields as ``stc.explain.explain_prediction`` except ``peak``, which needs token-level activations
        that a runtime without hooks (ONNX) does not have.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        raw = np.asarray(features, np.float64).reshape(-1)
        standardised = self.standardise(raw)
        contributions = self.coef * standardised[None, :]
        decision = contributions.sum(axis=1) + self.intercept
        probabilities = self.probabilities_from_decision(decision[None])[0]
        predicted = int(np.argmax(probabilities))
        binary = self.coef.shape[0] == 1
        row = 0 if binary else predicted
        top = []
        for feature in np.argsort(-np.abs(contributions[row]), kind="stable")[:top_k]:
            value = float(contributions[row, feature])
            toward = (self.classes[1 if value > 0 else 0] if binary
                      else (self.classes[row] if value > 0 else "other classes"))
            top.append({"neuron": neuron_names[feature], "feature": int(feature),
                        "weight": float(self.coef[row, feature]), "activation": float(raw[feature]),
                        "standardised_activation": float(standardised[feature]), "contribution": value,
                        "pushes_toward": toward})
        return {"label": self.classes[predicted], "probability": float(probabilities[predicted]),
                "probabilities": {str(c): float(p) for c, p in zip(self.classes, probabilities)},
                "decision_classes": [self.classes[1]] if binary else list(self.classes),
                "decision": decision.tolist(), "intercept": self.intercept.tolist(), "explained_row": row,
                "temperature": self.temperature, "n_features": int(raw.shape[0]), "contributions": top}


class Predictor(Protocol):
    """What a server or the CLI needs from a fitted model, whatever computes it."""

    runtime: str
    head: LinearHead

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...

    def explain(self, text: str, *, top_k: int = 10) -> dict: ...

    def metadata(self) -> dict: ...


def model_metadata(runtime: str, head: LinearHead, configuration: dict, exit_layer: int, n_kept: int,
                   backbone: dict) -> dict:
    """The fields ``GET /metadata`` answers with, the same for every runtime; ``readout`` says what the configuration
    reads (kind, η or null, dense key, exit layer, in words too)."""
    return {"runtime": runtime, "classes": head.classes, "configuration": configuration,
            "readout": chosen_readout(configuration).record(), "exit_layer": exit_layer,
            "n_kept_neurons": n_kept, "backbone_name": backbone.get("name"),
            "backbone_sha256": backbone.get("weights_sha256"), "temperature": head.temperature,
            "stc_version": __version__}


class TorchPredictor:
    """A fitted STCClassifier: features from its own ``transform`` (the backbone run to the exit layer)."""

    runtime = "torch"

    def __init__(self, clf):
        check_is_fitted(clf, "readout_")
        self.clf = clf
        self.head = LinearHead.from_readout(clf.readout_)
        self.clf.show_progress_bar = False

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.head.probabilities(self.clf.transform(texts))

    def explain(self, text: str, *, top_k: int = 10) -> dict:
        """``stc explain`` content (with token peaks); probabilities from the head, temperature included."""
        result = self.clf.explain(text, top_k=top_k)
        probabilities = self.head.probabilities_from_decision(np.asarray(result["decision"])[None])[0]
        predicted = int(np.argmax(probabilities))
        result.update(label=self.head.classes[predicted], probability=float(probabilities[predicted]),
                      probabilities={str(c): float(p) for c, p in zip(self.head.classes, probabilities)},
                      temperature=self.head.temperature)
        return result

    def metadata(self) -> dict:
        readout = self.clf.readout_
        return model_metadata(self.runtime, self.head, readout.configuration_record(), readout.exit_layer,
                              readout.n_features, readout.backbone.record())
