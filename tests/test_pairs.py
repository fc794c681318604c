"""Text pairs: (text_a, text_b) tuples through the tokenizer's own pair encoding (segment ids where the model has
them, longest_first truncation, a documented template where there is no separator token), a store id that covers
both texts, and the estimator, stc fit/predict, serve and bundles on pairs; windows and ONNX export refused."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest
from fastapi.testclient import TestClient

import stc
from stc import Bundle
from stc.cli import main
from stc.extract import PAIR_TEMPLATE_SEPARATOR, TokenizedTexts, extract_features, tokenize_with
from stc.predictor import TorchPredictor
from stc.serving import ServeSettings, create_app
from stc.store import texts_hash

from ._helpers import FAST, FILLER, KEYWORDS, fit_tiny, save_tiny, write_table


def planted_pairs(n: int, seed: int = 0) -> tuple[list[tuple[str, str]], list[str]]:
    """Pairs whose label is the keyword class of the SECOND text; the first holds a keyword drawn independently of
    the label, so a model reading only the first text is at chance."""
    rng = random.Random(seed)
    pairs, labels = [], []
    for _ in range(n):
        label = rng.choice(["good", "bad"])
        decoy = rng.choice(sorted(KEYWORDS))
        first = " ".join(rng.sample(FILLER, 3) + [rng.choice(KEYWORDS[decoy])])
        second = " ".join([rng.choice(KEYWORDS[label])] + rng.sample(FILLER, 3))
        pairs.append((first, second))
        labels.append(label)
    return pairs, labels


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-bert"), "bert", tokenizer=tokenizer)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return tmp_path_factory.mktemp("stores")


@pytest.fixture(scope="module")
def clf(model_dir, stores):
    pairs, labels = planted_pairs(96)
    return stc.STCClassifier(model_dir, store_dir=str(stores), **FAST).fit(pairs, labels)


# --- tokenisation ---------------------------------------------------------------------------------------------------

def test_a_pair_is_the_tokenizers_pair_encoding_with_segment_ids(tokenizer):
    tokens = tokenize_with(tokenizer, [("a wonderful day", "in town")], max_length=32)
    expected = tokenizer("a wonderful day", "in town")
    assert tokens.input_ids[0] == expected["input_ids"]
    assert tokens.input_ids[0].count(tokenizer.sep_token_id) == 2  # [CLS] a [SEP] b [SEP]
    assert tokens.type_ids[0] == expected["token_type_ids"] and set(tokens.type_ids[0]) == {0, 1}


def test_a_long_pair_is_truncated_longest_first(tokenizer):
    short, long = "a wonderful day", " ".join(["story"] * 200)
    tokens = tokenize_with(tokenizer, [(short, long)], max_length=32)
    assert len(tokens.input_ids[0]) == 32
    kept = tokenizer.decode(tokens.input_ids[0][:tokens.type_ids[0].index(1)], skip_special_tokens=True)
    assert kept == short  # the short text kept whole, the long one cut


def test_a_tokenizer_without_a_separator_reads_the_documented_template(tokenizer):
    decoder_like = copy.deepcopy(tokenizer)
    decoder_like.sep_token = None
    tokens = tokenize_with(decoder_like, [("a wonderful day", "in town")], max_length=32)
    assert tokens.input_ids[0] == decoder_like("a wonderful day" + PAIR_TEMPLATE_SEPARATOR, "in town")["input_ids"]


def test_segment_ids_reach_the_model(tiny_backbones):
    backbone = tiny_backbones["bert"]
    pairs = [("a wonderful day", "in town"), ("what people said", "a dreadful story")]
    keys = ["hidden.L2.mean"]
    with_segments = extract_features(backbone, pairs, keys)["hidden.L2.mean"]
    tokens = tokenize_with(backbone.tokenizer, pairs, max_length=backbone.max_length)
    assert tokens.type_ids is not None
    # the same token ids without segment ids (all 0) read differently: the segment ids are an input
    without = TokenizedTexts(tokens.input_ids, tokens.text_index, tokens.window_index, tokens.n_windows)
    batch = np.arange(2)
    ids, mask = without.padded(batch, backbone.tokenizer.pad_token_id)
    assert without.padded_type_ids(batch) is None
    import torch

    with torch.inference_mode():
        zero_types = backbone.model(input_ids=ids, attention_mask=mask).last_hidden_state
        own_types = backbone.model(input_ids=ids, attention_mask=mask,
                                   token_type_ids=tokens.padded_type_ids(batch)).last_hidden_state
    assert not torch.allclose(zero_types, own_types)
    assert with_segments.shape == (2, backbone.hidden_size)


def test_the_store_id_covers_both_texts_and_their_order():
    hashes = {texts_hash([("a", "b")]), texts_hash([("b", "a")]), texts_hash(["a b"]), texts_hash(["ab"]),
              texts_hash(["a", "b"]), texts_hash([("a", "c")])}  # the last: only the second text differs
    assert len(hashes) == 6
    assert texts_hash(["a wonderful day"]) == texts_hash(["a wonderful day"])


# --- the estimator and its faces -------------------------------------------------------------------------------------

def test_a_model_of_pairs_reads_the_second_text_and_refuses_single_texts(clf, model_dir, stores, tmp_path):
    new, truth = planted_pairs(40, seed=1)
    assert clf.extraction_["pairs"] is True
    assert float(np.mean(clf.predict(new) == np.asarray(truth))) >= 0.8  # the label is in the second text only
    # control: the same fit on the first texts alone cannot find it
    pairs, labels = planted_pairs(96)
    first_only = stc.STCClassifier(model_dir, store_dir=str(stores), **FAST).fit([a for a, _ in pairs], labels)
    assert float(np.mean(first_only.predict([a for a, _ in new]) == np.asarray(truth))) < 0.7
    clf.save(tmp_path / "m")
    assert "It reads text pairs" in (tmp_path / "m" / "README.md").read_text()
    back = stc.load(tmp_path / "m")
    assert np.array_equal(back.predict_proba(new), clf.predict_proba(new))
    with pytest.raises(ValueError, match="X holds single texts but the model reads text pairs"):
        clf.predict(["a wonderful day"])
    explanation = clf.explain(new[0], top_k=2)
    assert explanation["probabilities"] == {c: float(p) for c, p in zip(clf.classes_, clf.predict_proba(new[:1])[0])}


def test_pairs_with_windows_and_mixed_inputs_are_refused(model_dir, tmp_path):
    pairs, labels = planted_pairs(20)
    with pytest.raises(ValueError, match="windows=True does not apply to text pairs"):
        stc.STCClassifier(model_dir, store_dir=str(tmp_path), windows=True, **FAST).fit(pairs, labels)
    with pytest.raises(TypeError, match=r"X\[1\] is 'a text'; every item must be a \(text_a, text_b\) pair"):
        stc.STCClassifier(model_dir, store_dir=str(tmp_path), **FAST).fit([pairs[0], "a text"], labels[:2])
    with pytest.raises(ValueError, match=r"X\[:\]\[1\]\[0\] is empty"):
        stc.STCClassifier(model_dir, store_dir=str(tmp_path), **FAST).fit([("a", " "), ("b", "c")], ["x", "y"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("family", ["bert", "distilbert", "gpt2"])
def test_every_family_reads_pairs_and_a_pair_model_exports_to_onnx(family, tokenizer, stores, tmp_path):
    """An encoder with segment ids (BERT), one without (DistilBERT: none are passed) and a decoder (GPT-2) fit and
    predict pairs; the BERT one, whose graph takes the segment ids, is exported and its ONNX runtime's
    probabilities are within 1e-4 of torch's (one export: the other families' graphs are tested in test_export)."""
    from stc.extract import takes_segment_ids

    model_dir = save_tiny(tmp_path / family, family, tokenizer=tokenizer)
    pairs, labels = planted_pairs(48)
    fitted = stc.STCClassifier(model_dir, store_dir=str(stores), **{**FAST, "poolings": ("mean",)}).fit(pairs, labels)
    new, _ = planted_pairs(6, seed=5)
    assert fitted.predict_proba(new).shape == (6, 2)
    takes = takes_segment_ids(fitted.readout_.load_backbone(device="cpu").model)
    assert takes == (family != "distilbert")
    if family != "bert":
        return
    from stc.export import OnnxPredictor, export_onnx

    predictor = OnnxPredictor(export_onnx(fitted, tmp_path / "onnx"))
    assert "token_type_ids" in {graph_input.name for graph_input in predictor.session.get_inputs()}
    np.testing.assert_allclose(predictor.predict_proba(new), fitted.predict_proba(new), atol=1e-4)
    with pytest.raises(ValueError, match="the model reads text pairs"):
        predictor.predict_proba(["a wonderful day"])


def test_cli_fit_and_predict_on_a_file_of_pairs(model_dir, stores, tmp_path):
    pairs, labels = planted_pairs(80, seed=2)
    data = write_table(tmp_path / "pairs.csv", {"premise": [a for a, _ in pairs], "hypothesis": [b for _, b in pairs],
                                                "label": labels})
    assert main(["fit", "--data", str(data), "--text-column", "premise", "--text-pair-column", "hypothesis",
                 "--model", model_dir, "--out", str(tmp_path / "m"), "--store-dir", str(stores), "--poolings", "mean",
                 "--etas", "0.5", "--final-Cs", "1.0", "--device", "cpu", "--quiet"]) == 0
    assert main(["predict", str(tmp_path / "m"), "--data", str(data), "--text-column", "premise",
                 "--text-pair-column", "hypothesis", "--out", str(tmp_path / "p.jsonl"), "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    model = stc.load(tmp_path / "m")
    assert [(row["text"], row["text_pair"]) for row in rows] == pairs
    assert [row["label"] for row in rows] == model.predict(pairs).tolist()


def test_serve_takes_pairs_for_a_pair_model_and_refuses_texts(clf):
    limits = ServeSettings(max_texts=8, max_chars=300, max_batch_size=8, max_wait_ms=2.0)
    new, _ = planted_pairs(4, seed=3)
    with TestClient(create_app(lambda: TorchPredictor(clf), limits)) as client:
        answer = client.post("/predict", json={"pairs": [list(pair) for pair in new]}).json()["predictions"]
        assert [row["label"] for row in answer] == clf.predict(new).tolist()
        refused = client.post("/predict", json={"texts": ["a wonderful day"]})
        assert refused.status_code == 422 and "the model reads text pairs" in refused.json()["error"]
        both = client.post("/predict", json={"texts": ["a"], "pairs": [["a", "b"]]})
        assert both.status_code == 422 and "either 'texts' or 'pairs'" in both.json()["error"]
        explained = client.post("/explain", json={"pair": list(new[0]), "top_k": 2}).json()
        assert explained["label"] == clf.predict(new[:1])[0]
        assert client.get("/metadata").json()["pairs"] is True


def test_a_bundle_refuses_a_pair_model_beside_a_single_text_one(clf, model_dir, stores):
    single = fit_tiny(model_dir, stores, 2)
    with pytest.raises(ValueError, match="pairs"):
        Bundle.from_models({"pairs": clf, "single": single})


def test_the_embedding_baseline_takes_pairs_the_same_way(model_dir, clf):
    from stc.baselines import EmbeddingClassifier

    pairs, labels = planted_pairs(96)
    baseline = EmbeddingClassifier(model=model_dir, show_progress_bar=False, device="cpu").fit(pairs, labels)
    new, _ = planted_pairs(8, seed=4)
    assert baseline.pairs_ is True and baseline.predict_proba(new).shape == (8, 2)
    with pytest.raises(ValueError, match="X holds single texts but the model reads text pairs"):
        baseline.predict(["a wonderful day"])
    # the embedding it reads is the one STC reads for the same pairs (same tokenisation, segment ids included)
    key = f"hidden.L{clf.backbone_['num_layers']}.{baseline.pooling_}"
    from stc.extract import extract_features

    backbone = clf.readout_.load_backbone(device="cpu")
    np.testing.assert_array_equal(baseline.transform(new), extract_features(backbone, new, [key])[key])
