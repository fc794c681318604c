"""The embedding baseline on multi-label targets (label sets or a 0/1 indicator), on the tiny BERT: seconds."""

from __future__ import annotations

import numpy as np
import pytest

from stc._multilabel import encode_label_sets, tune_thresholds
from stc.baselines import EmbeddingClassifier
from stc.heads import MultiLabelHead

from ._helpers import KEYWORDS, planted_label_sets

LABELS = sorted(KEYWORDS)


def _baseline(tiny_dir, tmp_path, **params) -> EmbeddingClassifier:
    return EmbeddingClassifier(tiny_dir, **{"pooling": "mean", "Cs": (0.1, 1.0), "device": "cpu",
                                            "store_dir": str(tmp_path), "show_progress_bar": False, **params})


@pytest.fixture(scope="module")
def label_sets():
    return planted_label_sets(80, seed=0)


@pytest.fixture(scope="module")
def fitted(tiny_dir, tmp_path_factory, label_sets):
    texts, sets = label_sets
    return _baseline(tiny_dir, tmp_path_factory.mktemp("stores")).fit(texts, sets)


def test_label_sets_in_label_tuples_out(fitted, label_sets):
    texts, _ = label_sets
    assert fitted.target_ == "label sets" and fitted.metric_ == "micro_f1"
    assert fitted.classes_.tolist() == LABELS
    predicted = fitted.predict(texts[:7])
    assert isinstance(predicted, list) and len(predicted) == 7
    assert all(isinstance(labels, tuple) and set(labels) <= set(LABELS) for labels in predicted)
    proba = fitted.predict_proba(texts[:7])
    assert proba.shape == (7, len(LABELS)) and ((proba >= 0) & (proba <= 1)).all()
    assert fitted.decision_function(texts[:7]).shape == (7, len(LABELS))
    # label sets: the ridge head's C chosen on the validation texts among the ridge's grid, as STC's
    from stc.head import MULTILABEL_CS

    assert set(fitted.val_scores_) == set(MULTILABEL_CS) and fitted.val_score_ == max(fitted.val_scores_.values())
    assert fitted.val_score_ == fitted.val_scores_[fitted.C_]
    assert 0.0 <= fitted.score(texts[:7], label_sets[1][:7]) <= 1.0


def test_predictions_are_the_probabilities_thresholded_per_label(fitted, label_sets):
    texts, _ = label_sets
    assert isinstance(fitted.head_, MultiLabelHead)
    assert fitted.thresholds_.shape == (len(LABELS),)
    np.testing.assert_array_equal(fitted.head_.thresholds, fitted.thresholds_)
    proba = fitted.predict_proba(texts)
    expected = [tuple(label for label, p, t in zip(LABELS, row, fitted.thresholds_) if p >= t) for row in proba]
    assert fitted.predict(texts) == expected


def test_thresholds_are_tuned_on_the_validation_decisions(tiny_dir, tmp_path, label_sets):
    texts, sets = label_sets
    train, val = slice(0, 60), slice(60, 80)
    model = _baseline(tiny_dir, tmp_path, Cs=(1.0,)).fit(texts[train], sets[train], X_val=texts[val],
                                                         y_val=sets[val])
    Y_val = encode_label_sets(sets[val], 20, classes=model.classes_)[1]
    tuned = 1.0 / (1.0 + np.exp(-tune_thresholds(model.decision_function(texts[val]), Y_val)))
    np.testing.assert_allclose(model.thresholds_, np.clip(tuned, 1e-9, 1 - 1e-9), rtol=1e-5)
    # the head is fitted on the training texts only (the validation ones choose C and the thresholds)
    np.testing.assert_allclose(model.head_.mean, model.transform(texts[train]).astype(np.float64).mean(axis=0),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.head_.mean, model.transform(texts).astype(np.float64).mean(axis=0), atol=1e-6)


def test_indicator_in_indicator_out(tiny_dir, tmp_path, label_sets):
    texts, sets = label_sets
    Y = encode_label_sets(sets, len(texts))[1]
    model = _baseline(tiny_dir, tmp_path, Cs=(1.0,)).fit(texts, Y)
    assert model.target_ == "indicator" and model.classes_.tolist() == [0, 1, 2]
    predicted = model.predict(texts[:5])
    assert isinstance(predicted, np.ndarray) and predicted.shape == (5, 3) and set(np.unique(predicted)) <= {0, 1}
    assert model.predict_proba(texts[:5]).shape == (5, 3)


def test_metric_auto_stays_accuracy_for_one_label_per_text(tiny_dir, tmp_path, label_sets):
    texts, sets = label_sets
    labels = ["some" if labels else "none" for labels in sets]
    model = _baseline(tiny_dir, tmp_path, Cs=(1.0,)).fit(texts, labels)
    assert model.target_ == "labels" and model.metric_ == "accuracy" and not hasattr(model, "head_")
    assert set(model.predict(texts[:5])) <= {"some", "none"} and model.predict_proba(texts[:5]).shape == (5, 2)


def test_bad_targets_refused(tiny_dir, tmp_path, label_sets):
    texts, sets = label_sets
    baseline = _baseline(tiny_dir, tmp_path, Cs=(1.0,))
    Y = encode_label_sets(sets, len(texts))[1].astype(np.int64)
    Y[3, 1] = 2
    with pytest.raises(ValueError, match="not a 0/1 indicator"):
        baseline.fit(texts, Y)
    with pytest.raises(ValueError, match="rows but there are"):
        baseline.fit(texts, Y[:10])
    with pytest.raises(ValueError, match="every text carries"):
        baseline.fit(texts, np.column_stack([np.ones(len(texts), dtype=int), Y[:, 0] % 2]))
    with pytest.raises(ValueError, match="does not apply to single-label"):
        _baseline(tiny_dir, tmp_path, metric="samples_f1").fit(texts, ["a" if i % 2 else "b" for i in range(80)])
    with pytest.raises(ValueError, match="same form"):
        baseline.fit(texts[:60], sets[:60], X_val=texts[60:], y_val=["a"] * 20)


def test_class_weights_follow_the_metric_as_stc_weighs_them(tiny_dir, tmp_path, label_sets):
    """A fair comparison: macro-F1 over single labels fits balanced, accuracy and label sets unweighted."""
    texts, sets = label_sets
    labels = ["rare" if i % 5 == 0 else "common" for i in range(len(texts))]
    for metric, expected in (("macro_f1", "balanced"), ("accuracy", None)):
        fitted = _baseline(tiny_dir, tmp_path, metric=metric).fit(texts, labels)
        assert fitted.class_weight_ == expected
        assert fitted.classifier_.named_steps["logreg"].class_weight == expected
    assert _baseline(tiny_dir, tmp_path).fit(texts, sets).class_weight_ is None
    with pytest.raises(ValueError, match="class_weight='balanced' does not apply to label sets"):
        _baseline(tiny_dir, tmp_path, class_weight="balanced").fit(texts, sets)
