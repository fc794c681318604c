"""The model card save writes: Hugging Face layout, every number from the fitted model, nothing invented."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import yaml

from stc.extract import parse_key
from stc.model_card import model_card
from stc.readout import Scores

from ._helpers import fit_tiny, save_tiny


@pytest.fixture(scope="module")
def clf(tokenizer, tmp_path_factory):
    model_dir = save_tiny(tmp_path_factory.mktemp("tiny-bert"), tokenizer=tokenizer)
    return fit_tiny(model_dir, tmp_path_factory.mktemp("stores"), 3)


def _front_matter(card: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", card, re.S)
    assert match, "the card must open with YAML front matter"
    return yaml.safe_load(match.group(1))


def test_save_writes_a_card_whose_numbers_come_from_the_model(clf, tmp_path):
    clf.save(tmp_path / "model")
    card = (tmp_path / "model" / "README.md").read_text()
    front = _front_matter(card)
    assert front["library_name"] == "sparsify-then-classify" and "text-classification" in front["tags"]
    assert front["metrics"] == [clf.metric_]
    result = front["model-index"][0]["results"][0]["metrics"][0]
    assert result["value"] == pytest.approx(clf.val_score_, abs=1e-6)
    assert "base_model" not in front  # a local directory is not a hub id: nothing is made up
    assert f"{len(clf.kept_neurons_)} neurons" in card
    assert f"read up to layer {clf.exit_layer_} of {clf.backbone_['num_layers']}" in card
    for label in clf.classes_:
        assert f"`{label}`" in card
    per_layer = {}
    for key, columns in clf.kept_columns_.items():
        representation, layer, _ = parse_key(key)
        per_layer.setdefault(layer, {}).setdefault(representation, 0)
        per_layer[layer][representation] += len(columns)
    table = dict(re.findall(r"^\| (\d+) \| (.*) \|$", card.split("## Kept neurons per layer")[1], re.M))
    representations = sorted({parse_key(k)[0] for k in clf.kept_columns_})
    assert {int(k): v for k, v in table.items()} == {
        layer: " | ".join(str(counts.get(r, 0)) for r in representations) for layer, counts in per_layer.items()}
    # the fit cross-validated (cv="auto"): the card says so, with the scores the model carries
    assert f"cross-validated {clf.metric_}: **{clf.val_score_:.4f}** ± {clf.val_score_se_:.4f}" in card
    assert f"expected (on unseen data) {clf.metric_}: **{clf.expected_score_:.4f}**" in card
    assert f"{clf.validation_['n_train']} texts (training and validation together)" in card
    assert f"{clf.validation_['cv']}-fold cross-validation" in card
    assert "validation accuracy: **" not in card
    assert clf.backbone_["weights_sha256"][:16] in card


def _without_scores(clf):
    """The model as a version-1 save loads it: no selection estimates, no temperature."""
    return replace(clf.readout_, scores=Scores(validation=clf.val_score_),
                   head=replace(clf.readout_.head, temperature=1.0))


def test_absent_scores_and_temperature_are_not_printed(clf):
    card = model_card(_without_scores(clf))
    assert "cross-validated" not in card and "expected (on unseen data)" not in card
    assert "No temperature was fitted" in card and "datasets" not in _front_matter(card)


def test_present_scores_temperature_and_data_name_are_printed(clf):
    readout = _without_scores(clf)
    readout = replace(readout, scores=replace(readout.scores, validation=0.8125, validation_se=0.0123, expected=0.79),
                      head=replace(readout.head, temperature=1.75), backbone=replace(readout.backbone, name="minilm"))
    card = model_card(readout, data_name="planted keywords")
    assert f"cross-validated {clf.metric_}: **0.8125** ± 0.0123 (standard error)" in card
    assert f"expected (on unseen data) {clf.metric_}: **0.7900**\n" in card  # no standard error stored, none shown
    assert "T = 1.7500" in card
    front = _front_matter(card)
    assert front["datasets"] == ["planted keywords"]
    assert front["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.parametrize("requested, metric, words", [
    ("auto", "accuracy", "| class weights | none (every text counts the same) |"),
    ("auto", "macro_f1", "| class weights | balanced (every class counts the same, however rare: macro_f1 counts them so) |"),
    ("balanced", "accuracy", "| class weights | balanced (every class counts the same, however rare) |"),
    (None, "macro_f1", "| class weights | none (every text counts the same) |"),
    ("absent", "macro_f1", "| class weights | none (every text counts the same) |"),  # saved before class_weight
])
def test_the_card_says_how_the_head_weighed_the_classes(clf, requested, metric, words):
    params = {k: v for k, v in clf.readout_.params.items() if k != "class_weight"}
    if requested != "absent":
        params["class_weight"] = requested
    record = replace(clf.readout_.record, selection={**clf.readout_.record.selection, "metric": metric})
    readout = replace(clf.readout_, params={**params, "metric": metric}, record=record)
    assert readout.metric == metric
    assert words in model_card(readout)
