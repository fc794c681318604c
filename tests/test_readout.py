"""The readout: a fitted model's state as one immutable value, computing exactly what scikit-learn computed, and
saved and loaded without a bit of it changing."""

from __future__ import annotations

import copy
import json
import pickle
from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest

import stc
from stc import STCClassifier
from stc.aggregate import make_final_classifier
from stc.calibration import probabilities
from stc.head import LinearHead
from stc.readout import Readout

from ._helpers import NEW_TEXTS, fit_tiny, planted_texts, save_tiny


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-bert"), tokenizer=tokenizer)


@pytest.fixture(scope="module", params=[2, 3], ids=["two classes", "three classes"])
def clf(request, model_dir, tmp_path_factory) -> STCClassifier:
    return fit_tiny(model_dir, tmp_path_factory.mktemp("stores"), request.param, calibrate=request.param == 2)


def _assert_same_readout(a: Readout, b: Readout) -> None:
    for name in ("mean", "scale", "coef", "intercept", "classes"):
        left, right = getattr(a.head, name), getattr(b.head, name)
        assert left.dtype == right.dtype and np.array_equal(left, right)
    assert list(a.kept_columns) == list(b.kept_columns)
    assert all(np.array_equal(a.kept_columns[key], b.kept_columns[key]) for key in a.kept_columns)
    assert (a.temperature, a.scores, a.extraction, a.backbone) == (b.temperature, b.scores, b.extraction, b.backbone)
    assert a.configuration == b.configuration and a.params == b.params and a.record == b.record


def test_the_head_computes_bit_for_bit_what_the_scikit_learn_pipeline_computes_in_float64(clf):
    """A pipeline fitted on planted features and the head read from it: the same decision values bit for bit (the
    pipeline given float64 features, the head float32 ones: it casts once, then computes in float64), the same
    labels, and the probabilities of those decision values."""
    rng = np.random.default_rng(0)
    readout = clf.readout_
    texts, labels = planted_texts(len(clf.classes_))
    features = (rng.normal(size=(len(texts), readout.n_features)) * 3 + 1).astype(np.float32)
    pipeline = make_final_classifier(1.0, 0).fit(features, np.searchsorted(clf.classes_, labels))
    head = LinearHead.from_pipeline(pipeline, clf.classes_, temperature=1.7)
    readout = replace(readout, head=head)
    new = (rng.normal(size=(50, readout.n_features)) * 3).astype(np.float32)
    decision = pipeline.decision_function(new.astype(np.float64))
    assert readout.head.decision(new).dtype == np.float64 and np.array_equal(readout.head.decision(new), decision)
    assert np.array_equal(readout.head.labels(new), clf.classes_[pipeline.predict(new.astype(np.float64))])
    assert np.array_equal(readout.head.probabilities(new), probabilities(decision, 1.7))
    untempered = replace(head, temperature=1.0).probabilities(new)
    np.testing.assert_allclose(untempered, pipeline.predict_proba(new.astype(np.float64)), rtol=0, atol=1e-12)
    # and the scikit-learn view rebuilt from the head is that pipeline
    rebuilt = head.to_pipeline(1.0, 0)
    assert np.array_equal(rebuilt.decision_function(new.astype(np.float64)), decision)


def test_a_head_written_to_files_reads_back_bit_for_bit_and_damage_is_named(clf, tmp_path):
    head = clf.readout_.head
    head.to_files(tmp_path)
    again = LinearHead.from_files(tmp_path)
    for name in ("mean", "scale", "coef", "intercept", "classes"):
        assert np.array_equal(getattr(again, name), getattr(head, name))
    assert again.temperature == head.temperature
    features = clf.transform(NEW_TEXTS)
    assert np.array_equal(again.probabilities(features), head.probabilities(features))
    document = json.loads((tmp_path / "head.json").read_text())
    (tmp_path / "head.json").write_text(json.dumps({**document, "kind": "forest"}))
    with pytest.raises(ValueError, match="head kind 'forest'"):
        LinearHead.from_files(tmp_path)
    (tmp_path / "head.json").write_text(json.dumps({**document, "temperature": 0}))
    with pytest.raises(ValueError, match="temperature"):
        LinearHead.from_files(tmp_path)


def test_predictions_go_through_the_readout(clf):
    features = clf.transform(NEW_TEXTS)
    readout = clf.readout_
    assert np.array_equal(clf.predict_proba(NEW_TEXTS), readout.probabilities(features))
    assert np.array_equal(clf.decision_function(NEW_TEXTS), readout.decision(features))
    assert clf.predict(NEW_TEXTS).tolist() == readout.labels(features).tolist()
    backbone = readout.load_backbone(device="cpu")  # a readout on its own: no estimator needed
    assert np.array_equal(readout.features(backbone, NEW_TEXTS), features)


def test_save_and_load_give_the_same_readout_and_the_same_bits(clf, tmp_path):
    clf.save(tmp_path / "model")
    loaded = STCClassifier.load(tmp_path / "model")
    _assert_same_readout(loaded.readout_, replace(clf.readout_, params=clf.get_params()))
    assert np.array_equal(loaded.predict_proba(NEW_TEXTS), clf.predict_proba(NEW_TEXTS))
    loaded.save(tmp_path / "again")  # and once more: nothing drifts
    again = stc.load(tmp_path / "again")
    _assert_same_readout(again.readout_, loaded.readout_)
    assert np.array_equal(again.predict_proba(NEW_TEXTS), clf.predict_proba(NEW_TEXTS))
    assert (tmp_path / "model" / "stc_model.json").read_text() == (tmp_path / "again" / "stc_model.json").read_text()
    _assert_same_readout(Readout.from_files(tmp_path / "again"), again.readout_)


def test_the_fitted_attributes_read_the_readout_and_are_read_only(clf):
    readout = clf.readout_
    assert clf.temperature_ == readout.temperature and clf.exit_layer_ == readout.exit_layer
    assert clf.kept_neurons_ == readout.neuron_names and clf.n_features_ == readout.n_features
    assert clf.backbone_["weights_sha256"] == readout.backbone.sha256
    assert clf.extraction_["max_length"] == readout.extraction.max_length
    with pytest.raises(AttributeError):
        clf.temperature_ = 2.0
    with pytest.raises(FrozenInstanceError):
        readout.temperature = 2.0
    with pytest.raises(ValueError, match="read-only"):
        readout.head.coef[0, 0] = 1.0
    with pytest.raises(TypeError):
        readout.kept_columns["hidden.L1.mean"] = np.array([0])
    clf.kept_columns_[next(iter(readout.kept_columns))][0] = 10**6  # a copy: the model does not change
    assert int(next(iter(readout.kept_columns.values()))[0]) != 10**6
    with pytest.raises(ValueError, match="temperature"):
        replace(readout.head, temperature=-1.0)


def test_a_fitted_estimator_can_still_be_copied_and_pickled(clf):
    for twin in (copy.deepcopy(clf), pickle.loads(pickle.dumps(clf))):
        assert np.array_equal(twin.predict_proba(NEW_TEXTS[:2]), clf.predict_proba(NEW_TEXTS[:2]))
        assert not twin.readout_.head.coef.flags.writeable and twin.readout_.params == clf.readout_.params


def test_a_format_1_model_loads_with_temperature_1_and_no_estimates(clf, tmp_path):
    clf.save(tmp_path / "model")
    path = tmp_path / "model" / "stc_model.json"
    document = json.loads(path.read_text())
    for name in ("estimates", "temperature", "selection", "fit_timings"):  # what version 2 added, or later
        document.pop(name)
    document["format_version"] = 1
    path.write_text(json.dumps(document))
    loaded = stc.load(tmp_path / "model")
    assert loaded.temperature_ == 1.0 and loaded.val_score_se_ is None and loaded.expected_score_ is None
    assert loaded.selection_ is None and loaded.val_score_ == clf.val_score_
    untempered = replace(clf.readout_.head, temperature=1.0)
    assert np.array_equal(loaded.predict_proba(NEW_TEXTS), untempered.probabilities(clf.transform(NEW_TEXTS)))


def test_an_unfitted_estimator_has_no_readout():
    with pytest.raises(AttributeError):
        STCClassifier().readout_
    assert not hasattr(STCClassifier(), "temperature_")


def test_predict_refuses_a_backbone_other_than_the_fitted_one_in_one_line(model_dir, tokenizer, tmp_path):
    """``set_params(model=...)`` after fit would otherwise read another model's neurons without a word."""
    clf = fit_tiny(model_dir, tmp_path / "stores")
    fitted = clf.predict_proba(NEW_TEXTS[:2])
    other = save_tiny(tmp_path / "other", "distilbert", tokenizer=tokenizer)  # same widths and depth, other weights
    clf.set_params(model=other)
    for method in (clf.predict, clf.predict_proba, clf.transform):
        with pytest.raises(ValueError) as refused:
            method(NEW_TEXTS[:2])
        message = str(refused.value)
        assert "\n" not in message and clf.readout_.backbone.sha256[:12] in message
        assert f"model={other!r} is not the backbone this model was fitted on" in message
    with pytest.raises(ValueError, match="is not the backbone this model was fitted on"):
        clf.explain(NEW_TEXTS[0])
    clf.set_params(model=model_dir)
    assert np.array_equal(clf.predict_proba(NEW_TEXTS[:2]), fitted)  # set back: the same model again


def test_cv_results_hold_every_candidate_in_scikit_learns_convention(clf, tmp_path):
    results = clf.cv_results_
    n = len(clf.search_results_)
    assert n > 1 and all(len(column) == n for column in results.values())
    assert {"param_readout_kind", "param_representations", "param_poolings", "param_eta", "param_exit_layer",
            "param_C", "params", "n_features", "mean_test_score", "se_test_score", "rank_test_score"} <= set(results)
    n_blocks = clf.selection_["n_blocks"]
    splits = np.array([results[f"split{k}_test_score"] for k in range(n_blocks)], dtype=float)
    means = np.array(results["mean_test_score"])
    if clf.selection_["protocol"] == "cv":  # the ranking score is the mean over folds
        np.testing.assert_allclose(splits.mean(axis=0), means, rtol=1e-12)
    best = clf.best_index_
    assert results["params"][best]["eta"] == clf.configuration_["eta"]
    assert results["param_C"][best] == clf.configuration_["C"]
    ranks = np.array(results["rank_test_score"])
    assert ranks.min() == 1 and np.all(means[ranks == 1] == means.max())
    assert np.all(np.diff(means[np.argsort(ranks, kind="stable")]) <= 0)  # rank order is score order
    clf.save(tmp_path / "m")
    loaded = STCClassifier.load(tmp_path / "m", check_backbone=False)
    assert loaded.cv_results_ == results and loaded.best_index_ == best


def test_cv_score_is_a_deprecated_name_of_val_score(clf):
    """cv_score_ always equalled val_score_: the old names still read, with a FutureWarning naming the new ones."""
    with pytest.warns(FutureWarning, match="read val_score_"):
        assert clf.cv_score_ == clf.val_score_
    with pytest.warns(FutureWarning, match="read val_score_se_"):
        assert clf.cv_score_se_ == clf.val_score_se_
    assert clf.val_score_se_ is not None and clf.val_score_se_ == clf.readout_.scores.validation_se
