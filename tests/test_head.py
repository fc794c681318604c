"""The head: one arithmetic behind every face. The same probabilities, bit for bit, from ``predict_proba``,
``stc predict``, ``stc serve`` (torch) and ``explain``; a head's checks and its scikit-learn view."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from stc.cli import main
from stc.head import LinearHead, codes_from_decision, linear_decision, make_final_classifier
from stc.predictor import TorchPredictor
from stc.serving import create_app

from ._helpers import NEW_TEXTS, READOUT_KINDS, fit_tiny, keep_every_site, save_tiny, with_readout


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-bert"), "bert", tokenizer=tokenizer)


@pytest.fixture(scope="module", params=[2, 3], ids=["two classes", "three classes"])
def clf(request, model_dir, tmp_path_factory):
    fitted = fit_tiny(model_dir, tmp_path_factory.mktemp("stores"), request.param, calibrate=True)
    # every site read (max-pooled neurons among them, so explain's token peaks run too), a temperature != 1
    fitted = keep_every_site(fitted, 2)
    fitted.readout_ = replace(fitted.readout_, head=replace(fitted.readout_.head, temperature=1.3))
    return fitted


def _served(predictor, texts: list[str], classes) -> np.ndarray:
    with TestClient(create_app(lambda: predictor)) as client:
        answer = client.post("/predict", json={"texts": texts}).json()["predictions"]
    return np.array([[row["probabilities"][str(c)] for c in classes] for row in answer])


def test_every_face_gives_predict_probas_probabilities_bit_for_bit(clf, tmp_path):
    """The same texts give the same float64 probabilities through predict_proba, stc predict, stc serve (torch) and
    explain: one head computes them all from the same features."""
    expected = clf.predict_proba(NEW_TEXTS)
    classes = clf.classes_.tolist()
    # stc predict: JSONL writes floats by their repr, so its numbers round-trip exactly
    clf.save(tmp_path / "model")
    (tmp_path / "texts.txt").write_text("\n".join(NEW_TEXTS) + "\n")
    assert main(["predict", str(tmp_path / "model"), "--data", str(tmp_path / "texts.txt"),
                 "--out", str(tmp_path / "out.jsonl"), "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert np.array_equal(np.array([[row["probabilities"][str(c)] for c in classes] for row in rows]), expected)
    # stc serve with the torch runtime
    assert np.array_equal(_served(TorchPredictor(clf), NEW_TEXTS, classes), expected)
    # explain, text by text, and the explanation served: bit for bit predict_proba of the text alone. (A text in a
    # batch is padded to its batch-mates' length, which moves the last float32 bits of its features; the head adds
    # nothing to that: the same features give the same bits.)
    predictor = TorchPredictor(clf)
    for text, row in zip(NEW_TEXTS, expected):
        explanation = clf.explain(text, top_k=50)
        alone = clf.predict_proba([text])[0]
        assert [explanation["probabilities"][str(c)] for c in classes] == alone.tolist()
        np.testing.assert_allclose(alone, row, rtol=0, atol=1e-5)
        assert predictor.explain(text, top_k=50)["probabilities"] == explanation["probabilities"]
        assert any("peak" in entry for entry in explanation["contributions"])  # token peaks were looked up


def test_a_temperature_changes_the_probabilities_and_not_the_labels(clf):
    """The head divides by its temperature: a head at T = 1 gives other probabilities, and the same labels."""
    features = clf.transform(NEW_TEXTS)
    head = clf.readout_.head
    untempered = replace(head, temperature=1.0)
    assert not np.array_equal(head.probabilities(features), untempered.probabilities(features))
    assert np.array_equal(head.labels(features), untempered.labels(features))
    assert np.array_equal(TorchPredictor(clf).predict_proba(NEW_TEXTS), head.probabilities(features))


@pytest.fixture(scope="module")
def cross_validated(model_dir, tmp_path_factory):
    """A tiny model fitted with cross-validation: its search scored candidates of every readout kind."""
    return fit_tiny(model_dir, tmp_path_factory.mktemp("cv-stores"), cv=3)


@pytest.mark.parametrize("kind", READOUT_KINDS)
def test_every_readout_kind_predicts_through_its_head(kind, cross_validated):
    fitted = with_readout(cross_validated, kind)
    features = fitted.transform(NEW_TEXTS)
    assert fitted.readout_.chosen.kind == kind
    assert np.array_equal(fitted.predict_proba(NEW_TEXTS), fitted.readout_.head.probabilities(features))
    assert np.array_equal(TorchPredictor(fitted).predict_proba(NEW_TEXTS), fitted.predict_proba(NEW_TEXTS))


def test_the_head_refuses_what_it_cannot_compute_with():
    good = dict(classes=np.array(["a", "b", "c"]), mean=np.zeros(4), scale=np.ones(4), coef=np.ones((3, 4)),
                intercept=np.zeros(3))
    head = LinearHead(**good)
    with pytest.raises(ValueError, match="shape \\(n_texts, 4\\)"):
        head.probabilities(np.ones((2, 5)))
    with pytest.raises(ValueError, match="NaN or infinity"):
        head.probabilities(np.array([[np.nan, 0, 0, 0]]))
    for change, message in ((dict(classes=np.array(["a"])), "at least two labels"),
                            (dict(coef=np.ones((1, 4))), "logreg.coef must be finite"),  # 3 classes need 3 rows
                            (dict(scale=np.array([1.0, 0.0, 1.0, 1.0])), "scale.scale must be positive"),
                            (dict(intercept=np.array([0.0, np.inf, 0.0])), "logreg.intercept must be finite"),
                            (dict(temperature=float("nan")), "temperature")):
        with pytest.raises(ValueError, match=message):
            LinearHead(**{**good, **change})


def test_the_decision_the_codes_and_the_contributions_agree_on_planted_weights():
    """Two classes: one decision row, its sign the label; each row's contributions sum to its decision."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = (X[:, 2] - X[:, 4] > 0).astype(int)
    head = LinearHead.from_pipeline(make_final_classifier(1.0).fit(X, y), np.array(["no", "yes"]))
    decision = head.decision(X)
    assert decision.shape == (200,) and head.binary
    assert np.array_equal(codes_from_decision(decision), (decision > 0).astype(int))
    assert (head.labels(X) == np.array(["no", "yes"])[y]).mean() > 0.95
    assert set(np.argsort(-np.abs(head.coef[0]))[:2]) == {2, 4}  # the planted features weigh most
    contributions = head.contributions(X[0])
    np.testing.assert_allclose(contributions.sum() + head.intercept[0], decision[0], rtol=0, atol=1e-12)
    standardised = (X[:1] - head.mean) / head.scale
    assert np.array_equal(linear_decision(standardised, head.coef, head.intercept).reshape(-1), decision[:1])


def test_the_same_features_give_the_same_bits_whatever_their_memory_layout(clf):
    """A face may hold its features F-ordered or as a strided view (a bundle slices a union); the head computes
    in one layout, so the bits cannot depend on it."""
    features = clf.transform(NEW_TEXTS)
    head = clf.readout_.head
    expected = head.probabilities(features)
    wide = np.zeros((features.shape[0], features.shape[1] * 2), dtype=features.dtype)
    wide[:, ::2] = features
    for layout in (np.asfortranarray(features), wide[:, ::2], features.astype(np.float64)):
        assert np.array_equal(head.probabilities(layout), expected)
