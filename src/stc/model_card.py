"""The model card (``README.md``, Hugging Face layout) that ``save`` writes beside a fitted model.

Every number in it is read from the fitted model; what the model does not carry (a cross-validated score, a
fitted temperature, the data's name) is left out, never guessed.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

from ._metrics import check_class_weight
from ._version import __version__
from .extract import parse_key
from .readout import Readout

__all__ = ["model_card", "write_model_card"]

#: Hub ids of the weights behind stc's aliases (see stc.backbone.MODEL_ALIASES).
_ALIAS_HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _yaml(value) -> str:
    """A YAML scalar: JSON strings and numbers are valid YAML."""
    return json.dumps(value, ensure_ascii=False)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value) else None


def _score_line(name: str, value, se, metric: str) -> str | None:
    value = _number(value)
    if value is None:
        return None
    se = _number(se)
    return f"- {name} {metric}: **{value:.4f}**" + (f" ± {se:.4f} (standard error)" if se is not None else "")


def _base_model(backbone: dict) -> str | None:
    name = str(backbone.get("name", ""))
    if name in _ALIAS_HUB_IDS:
        return _ALIAS_HUB_IDS[name]
    return name if _HUB_ID.match(name) and not Path(name).exists() else None


def _head_words(head) -> str:
    """What the head is, in words: a logistic regression, or an MLP (one hidden layer of ReLU units)."""
    return (f"a one-hidden-layer MLP ({head.n_hidden} ReLU units)" if head.kind == "mlp"
            else "a logistic regression")


def model_card(readout: Readout, *, data_name: str | None = None) -> str:
    """The card of a fitted model (its readout) as Markdown with YAML front matter; ``data_name`` names the data
    it was fitted on, as the user named it."""
    backbone = readout.backbone.record()
    classes = [c.item() if hasattr(c, "item") else c for c in readout.classes]
    validation = readout.record.validation or {}
    lines = [f"# STC text classifier on {backbone.get('name')}", "",
             f"A [Sparsify-then-Classify](https://arxiv.org/abs/2311.15983) classifier made with stc {__version__}: "
             f"{_head_words(readout.head)} on {readout.n_features} neurons of the backbone "
             f"`{backbone.get('name')}`, read up to layer {readout.exit_layer} of {backbone.get('num_layers')}.", "",
             "## What it classifies", ""] + _classes_lines(readout, classes) + (
                 ["", "It reads text pairs (text_a, text_b), encoded as its tokenizer encodes pairs: "
                      "`clf.predict([(text_a, text_b)])`."] if readout.extraction.pairs else []) + ["", "## Data", ""]
    lines += _data_lines(readout.params, validation, data_name, stratified="iteratively stratified"
                         if readout.multilabel else "stratified",
                         repeats=int((readout.record.selection or {}).get("repeats") or 1))
    lines += _configuration_lines(readout)
    lines += _score_lines(readout, validation)
    lines += _USAGE + _limitation_lines(backbone, readout.extraction_record(), validation)
    return "\n".join(_front_matter(readout, data_name) + [""] + lines) + "\n"


def _front_matter(readout: Readout, data_name: str | None) -> list[str]:
    """The YAML front matter the Hugging Face hub reads: library, tags, base model, data, metric, the score."""
    backbone, metric = readout.backbone.record(), readout.metric
    base_model, val_score = _base_model(backbone), _number(readout.scores.validation)
    front = ["---", "library_name: sparsify-then-classify", "pipeline_tag: text-classification",
             "tags:", "- text-classification", "- sparsify-then-classify", "- stc",
             f"- {_yaml('backbone:' + str(backbone.get('name')))}"]
    if base_model:
        front.append(f"base_model: {_yaml(base_model)}")
    if data_name:
        front.append(f"datasets:\n- {_yaml(str(data_name))}")
    front.append(f"metrics:\n- {_yaml(metric)}")
    if val_score is not None:
        front += ["model-index:", f"- name: {_yaml('stc-' + str(backbone.get('name')))}", "  results:",
                  "  - task:", "      type: text-classification",
                  "    dataset:", f"      name: {_yaml(str(data_name or 'validation split'))}",
                  "      type: text-classification", "      split: validation",
                  "    metrics:", f"    - type: {_yaml(metric)}", f"      value: {val_score:.6f}",
                  f"      name: {_yaml('validation ' + metric)}"]
    return front + ["---"]


def _classes_lines(readout: Readout, classes: list) -> list[str]:
    if not readout.multilabel:
        return [f"{len(classes)} classes: " + ", ".join(f"`{c}`" for c in classes) + "."]
    thresholds = readout.head.thresholds
    return [f"Label sets (multi-label): each text carries any number of {len(classes)} labels: "
            + ", ".join(f"`{c}`" for c in classes) + ". Every label has its own linear decision on the "
            f"same neurons (one ridge least-squares fit for all labels, each label's decision mapped to a probability "
            f"by its own sigmoid) and its own decision threshold, chosen on held-out texts for {readout.metric} "
            f"(from {float(thresholds.min()):.2f} to {float(thresholds.max()):.2f}): a text carries the labels whose "
            f"probability reaches their threshold."]


def _data_lines(params, validation: dict, data_name: str | None, *, stratified: str = "stratified",
                repeats: int = 1) -> list[str]:
    lines = [f"Fitted on `{data_name}`."] if data_name else []
    if validation.get("cv"):
        repeated = f" repeated over {repeats} seeded partitions" if repeats > 1 else ""
        lines.append(f"{validation['n_train']} texts (training and validation together); every setting was chosen "
                     f"by {stratified} {validation['cv']}-fold cross-validation{repeated} over them, with the probes "
                     f"refitted inside each fold, and the final model refitted on all of them.")
    elif validation.get("n_train") is not None:
        how = "a validation set passed to fit" if validation.get("given") else \
            f"a {stratified} {params.get('validation_size'):.0%} split of the training texts (seed {params.get('random_state')})"
        lines.append(f"{validation['n_train']} training texts; every setting was chosen on {validation['n_val']} "
                     f"validation texts ({how}).")
    return lines


def _configuration_lines(readout: Readout) -> list[str]:
    """The chosen configuration as a table, and the kept neurons per layer and representation."""
    chosen, extraction = readout.chosen, readout.extraction_record()
    lines = ["", "## Chosen configuration", "", f"The {chosen.describe()}.", "", "| setting | value |", "|---|---|"]
    shown = {**readout.configuration, "readout": chosen.kind, "dense_key": chosen.dense_key,
             "eta": chosen.eta if chosen.eta is not None else "none (a dense readout keeps every neuron of its array)"}
    for name in ("readout", "dense_key", "representations", "poolings", "eta", "exit_layer", "C", "n_features"):
        if shown.get(name) is not None:
            lines.append(f"| {name} | {shown[name]} |")
    lines.append(f"| class weights | {_class_weight_words(readout)} |")
    representations = sorted({parse_key(k)[0] for k in readout.kept_columns})
    lines += [f"| max_length (tokens) | {extraction.get('max_length')} |",
              f"| long texts | {'overlapping windows' if extraction.get('windows') else 'truncated'} |", "",
              "## Kept neurons per layer", "", "| layer | " + " | ".join(representations) + " |"]
    per_layer: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, columns in readout.kept_columns.items():
        representation, layer, _ = parse_key(key)
        per_layer[layer][representation] += len(columns)
    lines.append("|---|" + "---|" * len(representations))
    for layer in sorted(per_layer):
        lines.append(f"| {layer} | " + " | ".join(str(per_layer[layer][r]) for r in representations) + " |")
    return lines


def _class_weight_words(readout: Readout) -> str:
    """How the head's loss weighed the classes (a model saved before ``class_weight`` existed was unweighted)."""
    if readout.multilabel:
        return "none (each label's own decision threshold answers its rarity)"
    requested = readout.params.get("class_weight")
    used = check_class_weight(requested, readout.metric)
    if used is None:
        return "none (every text counts the same)"
    return "balanced (every class counts the same, however rare" + (
        f": {readout.metric} counts them so)" if requested == "auto" else ")")


def _score_lines(readout: Readout, validation: dict) -> list[str]:
    """The held-out scores that were stored, and whether the probabilities are calibrated."""
    scores, metric = readout.scores, readout.metric
    val_score = _number(scores.validation)
    cross_validated = bool(validation.get("cv"))
    present = [line for line in (
        f"- validation {metric}: **{val_score:.4f}**" if val_score is not None and not cross_validated else None,
        # a cross-validated score is shown with its standard error (models saved before format 2 have none)
        _score_line("cross-validated", scores.validation if cross_validated and scores.validation_se is not None
                    else None, scores.validation_se, metric),
        _score_line("expected (on unseen data)", scores.expected, scores.expected_se, metric)) if line]
    temperature = _number(readout.temperature)
    temperature = None if temperature == 1.0 else temperature  # 1: calibration was switched off
    return ["", "## Scores", ""] + (present or ["No score is stored with this model."]) + [
        "", "## Calibration", "",
        f"Probabilities are calibrated by a fitted temperature T = {temperature:.4f} (the decision values are "
        f"divided by T before the softmax/sigmoid)." if temperature is not None else
        "Each label's probability is its logistic regression's own sigmoid (no temperature); the thresholds, not "
        "0.5, decide the labels." if readout.multilabel else
        "No temperature was fitted: probabilities are the logistic regression's own and may be overconfident."]


_USAGE = ["", "## How to use", "", "```python", "import stc", "", "clf = stc.load(\"PATH/TO/THIS/DIRECTORY\")",
          "clf.predict([\"a text to classify\"])", "clf.predict_proba([\"a text to classify\"])",
          "clf.explain(\"a text to classify\")", "```", "", "```bash",
          "stc predict PATH --data texts.txt --out predictions.jsonl",
          "stc serve PATH --port 8000            # POST /predict {\"texts\": [...]}; needs the serve extra",
          "stc export PATH --format onnx --quantize int8 --out PATH-onnx   # needs the onnx extra",
          "stc serve PATH-onnx --runtime onnx", "```", "",
          "## Limitations", ""]


def _limitation_lines(backbone: dict, extraction: dict, validation: dict) -> list[str]:
    limitations = [
        f"The backbone `{backbone.get('name')}` (weights sha256 `{str(backbone.get('weights_sha256'))[:16]}…`) "
        f"must be available where the model is loaded; a backbone with other weights is refused.",
        f"Texts longer than {extraction.get('max_length')} tokens are "
        + ("cut into overlapping windows." if extraction.get("windows") else "truncated: the rest is not read."),
        "It only knows the classes above; every text gets one of them.",
    ]
    if validation.get("cv"):
        limitations.append("The scores come from texts of the same source as the training data; on other sources "
                           "the accuracy may be lower.")
    elif validation.get("n_val") is not None:
        limitations.append(f"The validation score comes from {validation['n_val']} texts of the same source as the "
                           f"training data; on other sources the accuracy may be lower.")
    return [f"- {item}" for item in limitations]


def write_model_card(readout: Readout, directory, *, data_name: str | None = None) -> Path:
    """Write ``README.md`` into ``directory``; the path written."""
    path = Path(directory) / "README.md"
    path.write_text(model_card(readout, data_name=data_name), encoding="utf-8")
    return path
