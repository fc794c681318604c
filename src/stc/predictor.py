"""A fitted model behind one small interface, so that serving and the CLI do not care which runtime computes it.

Every runtime ends in the same place: kept-neuron features (n_texts, n_features) go through the model's head
(``stc.head.LinearHead``), the one implementation of decision values, probabilities and contributions. The torch
runtime gets its features from the readout (the backbone run to the exit layer, as ``STCClassifier.transform``);
the ONNX runtime (``stc.export``) from its graph. Faces (``stc serve``, ``stc predict --runtime``) import this
module; the core never does.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._version import __version__
from .bundle import Bundle
from .explain import explain_prediction
from .head import LinearHead
from .readout import chosen_readout

__all__ = ["Predictor", "TorchPredictor", "BundlePredictor", "model_metadata", "prediction_labels"]

RUNTIMES = ("torch", "onnx")


class Predictor(Protocol):
    """What a server or the CLI needs from a fitted model, whatever computes it."""

    runtime: str
    head: LinearHead

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...

    def explain(self, text: str, *, top_k: int = 10) -> dict: ...

    def metadata(self) -> dict: ...


def prediction_labels(head: LinearHead, probabilities: np.ndarray) -> tuple[str, list]:
    """(field name, each text's answer) of a face's output rows: "label" and the class, or for a multi-label head
    "labels" and the list of labels at or above their thresholds (plain JSON values)."""
    predicted = head.labels_from_probabilities(probabilities)
    if head.kind == "multilabel":
        return "labels", head.label_sets(predicted)
    return "label", [c.item() if hasattr(c, "item") else c for c in predicted]


def model_metadata(runtime: str, head: LinearHead, configuration: dict, exit_layer: int, n_kept: int,
                   backbone: dict) -> dict:
    """The fields ``GET /metadata`` answers with, the same for every runtime; ``readout`` says what the configuration
    reads (kind, η or null, dense key, exit layer, in words too)."""
    return {"runtime": runtime, "classes": head.plain_classes(), "configuration": configuration,
            "readout": chosen_readout(configuration).record(), "exit_layer": exit_layer,
            "n_kept_neurons": n_kept, "backbone_name": backbone.get("name"),
            "backbone_sha256": backbone.get("weights_sha256"), "temperature": head.temperature,
            "multilabel": head.kind == "multilabel",
            **({"thresholds": dict(zip(map(str, head.plain_classes()), head.thresholds.tolist()))}
               if head.kind == "multilabel" else {}),
            "stc_version": __version__}


class TorchPredictor:
    """A fitted STCClassifier run in torch: its backbone (loaded once, checked against the fitted weights) to the
    exit layer, then its head; the same features and arithmetic as ``STCClassifier.predict_proba``."""

    runtime = "torch"

    def __init__(self, clf):
        check_is_fitted(clf, "readout_")
        self.readout = clf.readout_
        self.pairs = self.readout.extraction.pairs  # the model reads text pairs
        self.head = self.readout.head
        self.token_budget = clf.token_budget
        self.backbone = self.readout.load_backbone(model=clf.model, device=clf.device, dtype=clf.dtype,
                                                   trust_remote_code=clf.trust_remote_code)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.head.probabilities(self.readout.features(self.backbone, texts, token_budget=self.token_budget))

    def explain(self, text: str, *, top_k: int = 10) -> dict:
        """``stc explain``'s content, token peaks included (``stc.explain.explain_prediction``)."""
        return explain_prediction(self.readout, self.backbone, text, top_k=top_k)

    def metadata(self) -> dict:
        readout = self.readout
        return {**model_metadata(self.runtime, self.head, readout.configuration_record(), readout.exit_layer,
                                 readout.n_features, readout.backbone.record()), "pairs": self.pairs}


class BundlePredictor:
    """A bundle (``stc.Bundle``) run in torch: one pass of its backbone for every task; ``predict_proba`` gives
    each task's probabilities by name, ``heads`` each task's head."""

    runtime = "torch"

    def __init__(self, bundle: Bundle, *, device: str | None = None, token_budget: int = 8192):
        self.bundle = bundle
        self.heads = {name: readout.head for name, readout in bundle.tasks.items()}
        self.pairs = next(iter(bundle.tasks.values())).extraction.pairs  # the tasks share their extraction
        self.token_budget = token_budget
        self.backbone = bundle.load_backbone(device=device or "auto")

    def predict_proba(self, texts: list[str]) -> dict[str, np.ndarray]:
        return self.bundle.predict_proba(texts, backbone=self.backbone, token_budget=self.token_budget)

    def explain(self, text: str, *, top_k: int = 10) -> dict:
        """Each task's ``stc explain`` content for the text, by task name."""
        return {"text": text, "tasks": {name: explain_prediction(readout, self.backbone, text, top_k=top_k)
                                        for name, readout in self.bundle.tasks.items()}}

    def metadata(self) -> dict:
        reference = next(iter(self.bundle.tasks.values()))
        return {"runtime": self.runtime, "tasks": {
                    name: model_metadata(self.runtime, readout.head, readout.configuration_record(),
                                         readout.exit_layer, readout.n_features, readout.backbone.record())
                    for name, readout in self.bundle.tasks.items()},
                "exit_layer": self.bundle.exit_layer,
                "n_union_neurons": int(sum(len(c) for c in self.bundle.union_columns.values())),
                "backbone_name": reference.backbone.name, "backbone_sha256": reference.backbone.sha256,
                "stc_version": __version__}
