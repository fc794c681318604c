"""STCClassifier end to end on the real MiniLM with real sentences; persistence; the store shared with the embedding
baseline. The scikit-learn contract (labels of any type, clone, pipelines, cross-validation, NotFittedError) is
checked on tiny models in test_estimator.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone

import stc
from stc import STCClassifier

# A small search keeps these tests to seconds; the full default grid runs in `stc demo`.
FAST = dict(poolings=("mean", "max"), etas=(0.05, 0.5), probe_Cs=(0.05, 0.5), final_Cs=(0.1, 1.0),
            show_progress_bar=False)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("stores"))


@pytest.fixture(scope="module")
def fitted(mr_small, store_dir):
    clf = STCClassifier("minilm", store_dir=store_dir, **FAST)
    return clf.fit(mr_small.train.texts, mr_small.train.labels, X_val=mr_small.validation.texts,
                   y_val=mr_small.validation.labels)


def test_fit_on_real_sentences_beats_chance_and_names_its_neurons(fitted, mr_small):
    assert set(fitted.classes_) == {"negative", "positive"}
    assert fitted.score(mr_small.test.texts, mr_small.test.labels) > 0.6
    assert 1 <= fitted.exit_layer_ <= 6
    assert fitted.n_features_ == len(fitted.kept_neurons_) > 0
    representation, layer, pooling, index = fitted.kept_neurons_[0].split(".")
    assert representation in ("hidden", "ffn") and pooling in ("mean", "max") and int(layer[1:]) <= fitted.exit_layer_
    assert len(fitted.probe_scores_) == (7 + 6) * 2  # hidden L0..L6 and ffn L1..L6, two poolings
    # stages 1 and 2 (linear heads), and 3: the MLP heads tried on the best linear candidate's neurons
    assert {row["stage"] for row in fitted.search_results_} == {1, 2, 3}
    assert {row["head"] for row in fitted.search_results_ if row["stage"] == 3} == {"mlp"}


def test_predict_proba_columns_follow_classes(fitted, mr_small):
    texts = mr_small.test.texts[:20]
    probabilities = fitted.predict_proba(texts)
    assert probabilities.shape == (20, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(fitted.classes_[probabilities.argmax(axis=1)], fitted.predict(texts))
    decision = fitted.decision_function(texts)
    np.testing.assert_array_equal(decision > 0, probabilities[:, 1] > 0.5)


def test_predict_runs_no_deeper_than_the_exit_layer(fitted, mr_small):
    backbone = fitted._load_backbone()
    deeper = backbone.layer_map.blocks[fitted.exit_layer_:]
    calls = []
    handles = [block.register_forward_hook(lambda *args: calls.append(1)) for block in deeper]
    try:
        fitted.predict(mr_small.test.texts[:8])
    finally:
        for handle in handles:
            handle.remove()
    assert calls == []


def test_save_then_load_gives_identical_predictions(fitted, mr_small, tmp_path):
    texts = mr_small.test.texts[:30]
    before = fitted.predict_proba(texts)
    fitted.save(tmp_path / "model")
    document = json.loads((tmp_path / "model" / "stc_model.json").read_text())
    assert document["backbone"]["weights_sha256"] == fitted.backbone_["weights_sha256"]
    loaded = stc.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(texts), before)
    assert loaded.kept_neurons_ == fitted.kept_neurons_
    assert loaded.get_params() == fitted.get_params()


def test_a_changed_backbone_hash_is_refused_at_load(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    path = tmp_path / "model" / "stc_model.json"
    document = json.loads(path.read_text())
    document["backbone"]["weights_sha256"] = "0" * 64
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="differ from the ones this model was fitted on"):
        stc.load(tmp_path / "model")


def test_second_fit_reuses_the_activation_store(fitted, mr_small, store_dir):
    again = clone(fitted).fit(mr_small.train.texts, mr_small.train.labels, X_val=mr_small.validation.texts,
                              y_val=mr_small.validation.labels)
    assert again.store_path_ == fitted.store_path_
    assert again.kept_neurons_ == fitted.kept_neurons_


def test_embedding_baseline_reuses_the_store_stc_extracted(fitted, mr_small, store_dir, monkeypatch):
    import stc.baselines.embedding as embedding_module
    from stc.baselines import EmbeddingClassifier
    from stc.extract import extract_features

    monkeypatch.setattr(embedding_module, "extract_features", lambda *a, **k: pytest.fail("extracted again"))
    baseline = EmbeddingClassifier("minilm", pooling="mean", store_dir=store_dir, show_progress_bar=False)
    baseline.fit(mr_small.train.texts, mr_small.train.labels, X_val=mr_small.validation.texts,
                 y_val=mr_small.validation.labels)
    monkeypatch.setattr(embedding_module, "extract_features", extract_features)
    direct = extract_features(fitted._load_backbone(), mr_small.train.texts[:5], ["hidden.L6.mean"])["hidden.L6.mean"]
    np.testing.assert_allclose(baseline.transform(mr_small.train.texts[:5]), direct)
    assert baseline.score(mr_small.test.texts, mr_small.test.labels) > 0.6


def test_embedding_baseline_without_store_reuse_extracts_its_own_features(fitted, mr_small, store_dir,
                                                                          monkeypatch):
    import stc.baselines.embedding as embedding_module
    from stc.baselines import EmbeddingClassifier

    monkeypatch.setattr(embedding_module, "find_stored", lambda *a, **k: pytest.fail("read STC's store"))
    texts = mr_small.train.texts[:40]
    labels = mr_small.train.labels[:40]
    baseline = EmbeddingClassifier("minilm", pooling="mean", store_dir=store_dir, reuse_store=False, Cs=(1.0,),
                                   show_progress_bar=False).fit(texts, labels)
    assert baseline.n_features_ == 384


# --- fit_store: the public seam for a store built elsewhere (on the tiny BERT: seconds) ----------------------------

@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, tokenizer):
    from ._helpers import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny-bert"), "bert", tokenizer=tokenizer)


def _same_model(a: STCClassifier, b: STCClassifier) -> None:
    for name in ("mean", "scale", "coef", "intercept"):
        np.testing.assert_array_equal(getattr(a.readout_.head, name), getattr(b.readout_.head, name))
    assert a.kept_neurons_ == b.kept_neurons_ and a.configuration_ == b.configuration_
    for name in ("search_results_", "probe_scores_", "selection_", "validation_", "temperature_", "expected_score_",
                 "best_index_", "backbone_", "extraction_"):
        assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize("cv, given", [("auto", True), (None, False)])
def test_fit_store_on_the_store_fit_built_gives_the_same_model(tiny_bert, tmp_path, cv, given):
    from stc.store import ActivationStore

    from ._helpers import FAST, planted_texts as planted

    texts, labels = planted(2, per_class=20)
    val_texts, val_labels = planted(2, per_class=5, seed=1)
    extra = dict(X_val=val_texts, y_val=val_labels) if given else {}
    fitted = STCClassifier(tiny_bert, store_dir=str(tmp_path), cv=cv, **FAST).fit(texts, labels, **extra)
    store = ActivationStore(fitted.store_path_)
    rows = np.arange(len(texts), len(texts) + len(val_texts)) if given else None
    again = STCClassifier(tiny_bert, cv=cv, **FAST).fit_store(store, labels + (val_labels if given else []),
                                                              validation_rows=rows)
    _same_model(fitted, again)
    assert again.store_path_ == fitted.store_path_
    assert "extract" in fitted.fit_timings_ and "extract" not in again.fit_timings_


def test_fit_store_refuses_a_store_it_cannot_read(tiny_bert, tmp_path):
    from stc.store import ActivationStore

    from ._helpers import FAST, planted_texts as planted

    texts, labels = planted(2, per_class=12)
    store = ActivationStore(STCClassifier(tiny_bert, store_dir=str(tmp_path), **FAST).fit(texts, labels).store_path_)
    STCClassifier(tiny_bert, **FAST).fit_store(store, labels)  # the control: this store fits
    with pytest.raises(ValueError, match=r"has no 'hidden.L0.first' \(7 of the 14"):
        STCClassifier(tiny_bert, **{**FAST, "poolings": ("mean", "first")}).fit_store(store, labels)
    with pytest.raises(ValueError, match="y has 5 labels but there are 24 texts"):
        STCClassifier(tiny_bert, **FAST).fit_store(store, labels[:5])
    with pytest.raises(ValueError, match="was extracted with max_length=None, not 16"):
        STCClassifier(tiny_bert, max_length=16, **FAST).fit_store(store, labels)
    with pytest.raises(ValueError, match="validation_rows must be distinct indices of the 24 rows"):
        STCClassifier(tiny_bert, **FAST).fit_store(store, labels, validation_rows=[3, 3])
    with pytest.raises(ValueError, match=r"validation_rows include some that no other row has: \['bad'\]"):
        STCClassifier(tiny_bert, **FAST).fit_store(store, labels, validation_rows=np.arange(12, 24))
    store.meta["weights_sha256"] = "0" * 64  # as if extracted from another backbone
    with pytest.raises(ValueError, match=r"was extracted from weights \(sha256 000000000000…\) that differ"):
        STCClassifier(tiny_bert, **FAST).fit_store(store, labels)
