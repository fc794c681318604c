"""Explanations: contributions that reproduce the decision exactly, peaks that are where the neuron fired."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import stc
from stc.explain import explain_prediction, pooled_activations, token_activations

from ._helpers import SPARSE_FIT, fit_tiny, planted_texts


@pytest.fixture(scope="module")
def binary_clf(tiny_dir, tmp_path_factory):
    return fit_tiny(tiny_dir, tmp_path_factory.mktemp("stores"), 2, **SPARSE_FIT)


@pytest.fixture(scope="module")
def multiclass_clf(tiny_dir, tmp_path_factory):
    """Max pooling only, so that every kept neuron has a peak token to check."""
    return fit_tiny(tiny_dir, tmp_path_factory.mktemp("stores"), 3, poolings=("max",), **SPARSE_FIT)


TEXTS = ["what people said about the wonderful day in town", "a dreadful story",
         "the match and the market, then rain later in town"]


@pytest.mark.parametrize("which", ["binary_clf", "multiclass_clf"])
def test_contributions_plus_intercept_reproduce_the_decision_function(which, request):
    clf = request.getfixturevalue(which)
    for text in TEXTS:
        explanation = clf.explain(text, top_k=clf.n_features_)
        row = explanation["explained_row"]
        decision = np.atleast_2d(clf.decision_function([text]))[0]
        contributions = [entry["contribution"] for entry in explanation["contributions"]]
        assert len(contributions) == clf.n_features_
        # Every neuron's term plus the intercept is the decision of the explained row, to rounding.
        np.testing.assert_allclose(sum(contributions) + explanation["intercept"][row], decision[row], rtol=0, atol=1e-5)
        np.testing.assert_allclose(np.asarray(explanation["all_contributions_sum"]) + explanation["intercept"],
                                   decision, rtol=0, atol=1e-5)
        np.testing.assert_allclose(explanation["decision"], decision, rtol=0, atol=1e-5)


@pytest.mark.parametrize("which", ["binary_clf", "multiclass_clf"])
def test_label_probabilities_and_decision_are_predicts_bit_for_bit(which, request):
    """One head computes both: the explanation's numbers are predict_proba's and decision_function's of the text."""
    clf = request.getfixturevalue(which)
    for text in TEXTS:
        explanation = clf.explain(text)
        assert explanation["label"] == clf.predict([text])[0]
        expected = clf.predict_proba([text])[0]
        assert [explanation["probabilities"][str(c)] for c in clf.classes_] == expected.tolist()
        assert explanation["probability"] == expected.max()
        assert explanation["decision"] == np.atleast_2d(clf.decision_function([text]))[0].tolist()
        json.dumps(explanation)  # plain JSON values only


def test_contributions_are_weight_times_standardised_activation_ranked_by_size(binary_clf):
    explanation = binary_clf.explain(TEXTS[0], top_k=5)
    entries = explanation["contributions"]
    assert len(entries) == min(5, binary_clf.n_features_)
    sizes = [abs(e["contribution"]) for e in entries]
    assert sizes == sorted(sizes, reverse=True)
    readout = binary_clf.readout_
    for entry in entries:
        feature = entry["feature"]
        assert binary_clf.kept_neurons_[feature] == entry["neuron"] == f"{entry['key']}.{entry['index']}"
        assert entry["standardised_activation"] == pytest.approx(
            (entry["activation"] - readout.head.mean[feature]) / readout.head.scale[feature], rel=1e-6, abs=1e-6)
        assert entry["contribution"] == pytest.approx(entry["weight"] * entry["standardised_activation"], rel=1e-9)
        assert entry["pushes_toward"] == binary_clf.classes_[1 if entry["contribution"] > 0 else 0]


@pytest.mark.parametrize("windows", [False, True])
def test_token_level_maxima_equal_the_pooled_features(tiny_dir, binary_clf, windows):
    from stc.backbone import load_backbone

    backbone = load_backbone(tiny_dir, device="cpu")
    text = " ".join(["a long review of the wonderful film that goes on"] * 12)  # ~130 tokens: 3+ windows of 48
    options = dict(max_length=48, windows=True, window_overlap=8) if windows else dict(max_length=64)
    clf = binary_clf
    activations = token_activations(backbone, text, clf.kept_columns_, **options)
    from stc.extract import extract_features

    expected = extract_features(backbone, [text], list(clf.kept_columns_), columns=clf.kept_columns_, **options)
    if windows:
        assert max(activations.windows) >= 2
    for key in clf.kept_columns_:
        np.testing.assert_allclose(pooled_activations(activations, key), expected[key][0], rtol=1e-5, atol=1e-5)


def test_pooled_activations_equal_transform(binary_clf, tiny_dir):
    from stc.backbone import load_backbone

    backbone = load_backbone(tiny_dir, device="cpu")
    activations = token_activations(backbone, TEXTS[1], binary_clf.kept_columns_, max_length=64)
    pooled = np.concatenate([pooled_activations(activations, key) for key in binary_clf.kept_columns_])
    np.testing.assert_allclose(pooled, binary_clf.transform([TEXTS[1]])[0], rtol=1e-5, atol=1e-5)


def test_max_pooled_neurons_name_the_token_where_they_peaked(multiclass_clf):
    clf = multiclass_clf
    text = "people said the shares and the bank did well"
    explanation = clf.explain(text, top_k=clf.n_features_)
    tokenizer = clf.readout_.load_backbone(device="cpu", check=False).tokenizer
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    peaks = [e for e in explanation["contributions"] if e["pooling"] == "max"]
    assert peaks
    for entry in peaks:
        peak = entry["peak"]
        # The peak is an actual token of the text, at its position, and its activation is the pooled maximum.
        assert tokens[peak["position"]] == peak["token"]
        assert peak["activation"] == pytest.approx(entry["activation"], rel=1e-6, abs=1e-6)
        if peak["span"] is not None:
            assert text[peak["span"][0]:peak["span"][1]].lower() == peak["token"].removeprefix("##")
    assert all("peak" not in e for e in explanation["contributions"] if e["pooling"] != "max")


def test_planted_keyword_decides_the_label(binary_clf):
    # The tiny random model still separates the keywords: on fresh planted texts the explanation's label follows
    # the planted word (this model: 18 of 20). The binary model reads mean pooling; max pooling alone
    # (multiclass_clf) barely separates them on random weights, a keyword seldom holding a neuron's maximum.
    texts, labels = planted_texts(2, per_class=10, seed=5)
    explained = [binary_clf.explain(text)["label"] for text in texts]
    assert np.mean(np.asarray(explained) == np.asarray(labels)) >= 0.8


def test_explain_survives_save_and_load(binary_clf, tmp_path):
    binary_clf.save(tmp_path / "model")
    loaded = stc.load(tmp_path / "model")
    assert loaded.explain(TEXTS[0]) == binary_clf.explain(TEXTS[0])


def test_explain_refuses_bad_input(binary_clf):
    with pytest.raises(TypeError, match="text must be a string"):
        binary_clf.explain(["a list"])
    with pytest.raises(ValueError, match="empty"):
        binary_clf.explain("   ")
    with pytest.raises(ValueError, match="top_k"):
        binary_clf.explain("fine", top_k=0)
    with pytest.raises(Exception, match="not fitted"):
        stc.STCClassifier().explain("fine")


@pytest.mark.parametrize("family", ["gpt2", "bert", "distilbert", "roberta", "llama"])
def test_token_level_sites_are_the_models_hidden_states_and_ffn_inputs(tiny_backbones, family):
    import torch

    backbone = tiny_backbones[family]
    text = "An ambitious story about memory, grief and the small rituals of a family."
    layers = range(1, backbone.num_layers + 1)
    columns = {f"hidden.L{layer}.mean": np.arange(backbone.hidden_size) for layer in [0, *layers]}
    columns |= {f"ffn.L{layer}.max": np.arange(backbone.ffn_size) for layer in layers}
    activations = token_activations(backbone, text, columns)
    # The reference: one plain forward of the whole model, its own hidden states, and the FFN output
    # projections' inputs read by hooks of this test.
    ids = torch.as_tensor([backbone.tokenizer(text)["input_ids"]])
    ffn_inputs = {}
    handles = [backbone.layer_map.ffn_out[layer - 1].register_forward_pre_hook(
        lambda module, args, layer=layer: ffn_inputs.__setitem__(layer, args[0][0].detach().float().numpy()))
        for layer in layers]
    try:
        with torch.inference_mode():
            output = backbone.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    for layer in [0, *layers]:
        np.testing.assert_allclose(activations.values[f"hidden.L{layer}.mean"],
                                   output.hidden_states[layer][0].float().numpy(), rtol=1e-5, atol=1e-5,
                                   err_msg=f"hidden layer {layer}")
    for layer in layers:
        np.testing.assert_allclose(activations.values[f"ffn.L{layer}.max"], ffn_inputs[layer], rtol=1e-5,
                                   atol=1e-5, err_msg=f"ffn layer {layer}")


def test_token_level_pass_stops_after_the_deepest_needed_block(tiny_backbones):
    backbone = tiny_backbones["bert"]
    calls = []
    handle = backbone.layer_map.blocks[-1].register_forward_hook(lambda *args: calls.append(1))
    try:
        token_activations(backbone, "a short text", {"ffn.L1.max": np.array([0, 1])})
        assert calls == []  # the last block never ran
        token_activations(backbone, "a short text", {f"hidden.L{backbone.num_layers}.max": np.array([0])})
        assert calls == [1]
    finally:
        handle.remove()


def test_a_readout_explains_without_its_estimator(binary_clf):
    readout = binary_clf.readout_
    backbone = readout.load_backbone(device="cpu")
    assert explain_prediction(readout, backbone, TEXTS[0]) == binary_clf.explain(TEXTS[0])
