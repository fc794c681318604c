"""The MLP head (``stc.heads.MLPHead``): deterministic fits, files and scikit-learn round trips, explanations."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from stc.head import LinearHead
from stc.heads import MLPHead, fit_head_estimator, head_from_pipeline, mlp_possible


def _xor(n: int, seed: int = 0, n_features: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Features whose label is the XOR of the signs of the first two (shifted, so each also says a little)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)) * 3.0 + 1.0
    return X, ((X[:, 0] > 1.5) ^ (X[:, 1] > 1.5)).astype(np.int64)


@pytest.fixture(scope="module")
def fitted():
    """(features, labels, the fitted pipeline, its head) of a two-class XOR; and a three-class one."""
    X, y = _xor(400)
    y3 = y + (X[:, 2] > 3.0)
    made = {}
    for name, labels in (("two", y), ("three", y3)):
        pipeline = fit_head_estimator("mlp", 1.0, 0, None, X, labels)
        made[name] = X, labels, pipeline, head_from_pipeline(pipeline, np.array(["a", "b", "c"])[:labels.max() + 1])
    return made


def test_two_fits_with_one_random_state_give_the_same_bits_and_another_seed_does_not(fitted):
    X, y, _, head = fitted["two"]
    again = head_from_pipeline(fit_head_estimator("mlp", 1.0, 0, None, X, y), head.classes)
    other = head_from_pipeline(fit_head_estimator("mlp", 1.0, 1, None, X, y), head.classes)
    for name, array in head.arrays().items():
        assert np.array_equal(array, again.arrays()[name]), name
    assert not np.array_equal(head.hidden_coef, other.hidden_coef)
    assert np.array_equal(head.probabilities(X), again.probabilities(X))


@pytest.mark.parametrize("classes", ["two", "three"])
def test_the_head_computes_what_scikit_learn_fitted_and_learns_the_xor(classes, fitted):
    X, y, pipeline, head = fitted[classes]
    assert head.kind == "mlp" and head.binary == (classes == "two") and head.n_hidden == 64
    np.testing.assert_allclose(head.probabilities(X), pipeline.predict_proba(X), rtol=0, atol=1e-12)
    assert np.array_equal(head.labels(X), head.classes[pipeline.predict(X)])
    linear = fit_head_estimator("linear", 1.0, 0, None, X, y)
    assert (pipeline.predict(X) == y).mean() > (linear.predict(X) == y).mean() + 0.15
    # and back: the pipeline rebuilt from the head's arrays (STCClassifier.classifier_) gives the same numbers
    rebuilt = head.to_pipeline(1.0)
    np.testing.assert_allclose(rebuilt.predict_proba(X), head.probabilities(X), rtol=0, atol=1e-12)
    assert np.array_equal(rebuilt.predict(X), pipeline.predict(X))


@pytest.mark.parametrize("classes", ["two", "three"])
def test_a_saved_head_reads_back_as_an_mlp_head_with_the_same_bits(classes, fitted, tmp_path):
    X, _, _, head = fitted[classes]
    head = MLPHead(**{**{name: getattr(head, name) for name in ("classes", "mean", "scale", "coef", "intercept",
                                                                 "hidden_coef", "hidden_intercept")},
                      "temperature": 1.7})
    head.to_files(tmp_path)
    assert sorted(LinearHead.from_files(tmp_path).arrays()) == sorted(
        ["scale.mean", "scale.scale", "mlp.hidden.coef", "mlp.hidden.intercept", "mlp.output.coef",
         "mlp.output.intercept"])
    for loaded in (LinearHead.from_files(tmp_path), MLPHead.from_files(tmp_path), copy.deepcopy(head),
                   pickle.loads(pickle.dumps(head))):
        assert type(loaded) is MLPHead and loaded.temperature == 1.7
        assert np.array_equal(loaded.probabilities(X), head.probabilities(X))
        assert np.array_equal(loaded.decision(X), head.decision(X))


def test_the_head_refuses_arrays_that_do_not_fit_together(fitted):
    _, _, _, head = fitted["two"]
    fields = {name: getattr(head, name) for name in ("classes", "mean", "scale", "coef", "intercept", "hidden_coef",
                                                     "hidden_intercept")}
    with pytest.raises(ValueError, match=r"array mlp\.hidden\.coef must be finite float32/float64 of shape \(64, 6\)"):
        MLPHead(**{**fields, "hidden_coef": head.hidden_coef[:, :5]})
    with pytest.raises(ValueError, match=r"array mlp\.output\.coef .* shape \(1, 64\)"):
        MLPHead(**{**fields, "coef": head.coef[:, :10]})
    with pytest.raises(ValueError, match=r"mlp\.hidden\.intercept"):
        MLPHead(**{**fields, "hidden_intercept": None})
    with pytest.raises(ValueError, match="head kind 'linear' is not a mlp head"):  # a linear head's file, read as an MLP's
        MLPHead.from_parts({"kind": "linear", "classes": {"type": "str", "values": ["a", "b"]}}, {})


@pytest.mark.parametrize("classes", ["two", "three"])
def test_its_explanation_is_the_local_linear_map_and_sums_to_the_decision(classes, fitted):
    X, _, _, head = fitted[classes]
    names = [f"hidden.L1.mean.{i}" for i in range(X.shape[1])]
    for row in X[:5]:
        explanation = head.explain(row, names, top_k=3)
        assert explanation["local_linear"] is True and len(explanation["contributions"]) == 3
        assert explanation["decision"] == head.decision(row[None]).reshape(-1).tolist()
        # the local map's terms and its intercept make the decision (the ReLU network is linear around the text)
        np.testing.assert_allclose(np.add(explanation["all_contributions_sum"], explanation["intercept"]),
                                   explanation["decision"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(head.contributions(row).sum(axis=1) + head.local_head(row).intercept,
                                   head.decision(row[None]).reshape(-1), rtol=0, atol=1e-9)
        assert explanation["probabilities"] == {str(c): float(p) for c, p in
                                                zip(head.classes, head.probabilities(row[None])[0])}
    assert head.feature_weights().shape == (1 if classes == "two" else 3, X.shape[1])


def test_an_mlp_head_needs_ten_texts_of_each_class_in_every_training_split():
    y = np.array([0] * 30 + [1] * 12)
    assert mlp_possible(y, [np.arange(42)])
    assert not mlp_possible(y, [np.arange(42), np.arange(33)])  # 3 texts of class 1 in the second split
    assert not mlp_possible(np.eye(2, dtype=np.int64)[y], [np.arange(42)])  # label sets: no MLP head
