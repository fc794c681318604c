"""Multi-label targets: label sets (or a 0/1 indicator) in, one binary head and threshold per label, label sets out,
through the estimator and every face (stc fit/predict/evaluate/explain/info, serve, export, bundles); thresholds
that are cross-fitted; and each bad input refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

import stc
from stc import Bundle
from stc._multilabel import cross_fitted_predictions, encode_label_sets, tune_thresholds
from stc.cli import main
from stc.heads import MultiLabelHead
from stc.predictor import TorchPredictor
from stc.folds import make_folds, split_rows
from stc.serving import ServeSettings, create_app

from ._helpers import FAST, KEYWORDS, fit_tiny, planted_label_sets, save_tiny, write_table

LABELS = sorted(KEYWORDS)  # bad, good, odd
SMALL = {**FAST, "poolings": ("mean",)}  # one pooling: half the arrays, the same points


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-bert"), "bert", tokenizer=tokenizer)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return tmp_path_factory.mktemp("stores")


@pytest.fixture(scope="module")
def clf(model_dir, stores):
    texts, label_sets = planted_label_sets(90)
    return stc.STCClassifier(model_dir, store_dir=str(stores), **SMALL).fit(texts, label_sets)


@pytest.fixture(scope="module")
def new():
    return planted_label_sets(40, seed=1)


def _micro_f1(predicted, truth) -> float:
    from sklearn.metrics import f1_score

    encode = lambda sets: encode_label_sets(sets, len(sets), classes=np.asarray(LABELS))[1]  # noqa: E731
    return float(f1_score(encode(truth), encode(predicted), average="micro"))


# --- the estimator ---------------------------------------------------------------------------------------------------

def test_label_sets_in_label_sets_out_with_a_head_and_threshold_per_label(clf, new):
    texts, truth = new
    assert clf.classes_.tolist() == LABELS and clf.target_ == "label sets" and clf.metric_ == "micro_f1"
    assert clf.selection_["metric"] == "micro_f1" and clf.temperature_ == 1.0  # no temperature for label sets
    predicted = clf.predict(texts)
    assert isinstance(predicted, list) and all(isinstance(p, tuple) for p in predicted)
    proba = clf.predict_proba(texts)
    assert proba.shape == (40, 3) and not np.allclose(proba.sum(axis=1), 1.0)  # independent labels
    head = clf.readout_.head
    assert isinstance(head, MultiLabelHead) and head.coef.shape == (3, clf.n_features_)
    assert ((head.thresholds > 0) & (head.thresholds < 1)).all()
    # a label is predicted exactly where its probability reaches its own threshold
    expected = [tuple(label for label, p, t in zip(LABELS, row, head.thresholds) if p >= t) for row in proba]
    assert predicted == expected
    # the keywords are planted: the labels are learnt, not guessed (chance micro-F1 is about 0.5)
    assert _micro_f1(predicted, truth) > 0.8
    assert 0.0 < clf.expected_score_ <= 1.0 and clf.val_score_se_ is not None


def test_an_indicator_array_gives_the_same_model_and_answers_in_kind(clf, model_dir, stores, new):
    texts, label_sets = planted_label_sets(90)
    indicator = np.array([[int(label in labels) for label in LABELS] for labels in label_sets])
    other = stc.STCClassifier(model_dir, store_dir=str(stores), **SMALL).fit(texts, indicator)
    assert other.target_ == "indicator" and other.classes_.tolist() == [0, 1, 2]
    assert np.array_equal(other.predict_proba(new[0]), clf.predict_proba(new[0]))
    predicted = other.predict(new[0])
    assert isinstance(predicted, np.ndarray) and predicted.shape == (40, 3) and set(np.unique(predicted)) <= {0, 1}
    assert [tuple(LABELS[j] for j in np.flatnonzero(row)) for row in predicted] == clf.predict(new[0])
    assert other.score(new[0], predicted) == 1.0  # subset accuracy of its own answers


def test_a_saved_multilabel_model_loads_with_its_thresholds_bit_for_bit(clf, new, tmp_path):
    clf.save(tmp_path / "model")
    document = json.loads((tmp_path / "model" / "stc_model.json").read_text())
    assert document["head_kind"] == "multilabel"
    back = stc.load(tmp_path / "model")
    assert np.array_equal(back.readout_.head.thresholds, clf.readout_.head.thresholds)
    assert np.array_equal(back.predict_proba(new[0]), clf.predict_proba(new[0]))
    assert back.predict(new[0]) == clf.predict(new[0]) and back.target_ == "label sets"
    card = (tmp_path / "model" / "README.md").read_text()
    assert "multi-label" in card and "| class weights | none (each label's own decision threshold" in card


def test_the_explanation_splits_each_predicted_labels_decision_by_neuron(clf):
    text = "a weird and wonderful day"
    explanation = clf.explain(text, top_k=3)
    proba = clf.predict_proba([text])[0]
    assert explanation["labels"] == list(clf.predict([text])[0])
    assert explanation["probabilities"] == {label: float(p) for label, p in zip(LABELS, proba)}
    explained = explanation["explained"]
    assert list(explained) == (explanation["labels"] or [LABELS[int(np.argmax(proba))]])
    decisions = clf.decision_function([text])[0]
    for label, part in explained.items():
        assert part["decision"] == pytest.approx(decisions[LABELS.index(label)])
        assert part["intercept"] + part["all_contributions_sum"] == pytest.approx(part["decision"], abs=1e-9)
        assert len(part["contributions"]) == 3


# --- thresholds -----------------------------------------------------------------------------------------------------

def test_the_head_is_one_ridge_fit_for_every_label_its_C_searched_on_the_ridges_grid(clf):
    # label sets: one ridge classifier for every label (stc._ridge) instead of a logistic regression per label, its
    # C searched among MULTILABEL_CS as the logistic regression's among final_Cs
    from stc.head import MULTILABEL_CS, MULTILABEL_STAGE_ONE_CS, ridge_alpha

    searched = set(clf.cv_results_["param_C"])
    assert clf.configuration_["C"] in MULTILABEL_CS and searched <= set(MULTILABEL_CS) and len(searched) > 1
    # stage 1 at the coarse grid (every other C), stage 2 at every C
    first = {C for C, stage in zip(clf.cv_results_["param_C"], clf.cv_results_["stage"]) if stage == 1}
    assert first == set(MULTILABEL_STAGE_ONE_CS) and len(first) == len(MULTILABEL_CS) // 2
    # every representation together (one readout serves every label): not each alone, as a single label's search
    sparse = {r for r, kind in zip(clf.cv_results_["param_representations"], clf.cv_results_["param_readout_kind"])
              if kind == "sparse"}
    assert sparse == {"hidden+ffn"}
    pipeline = clf.classifier_
    assert pipeline.named_steps["ridge"].alpha == pytest.approx(ridge_alpha(clf.configuration_["C"]))
    features = np.random.default_rng(0).normal(size=(5, clf.n_features_))
    np.testing.assert_allclose(pipeline.decision_function(features), clf.readout_.head.decision(features),
                               rtol=1e-6, atol=1e-9)
    from stc._summary import summary_lines
    assert any(f"C={clf.configuration_['C']:g}" in line for line in summary_lines(clf))


def test_calibration_folds_each_labels_sigmoid_into_its_weights_and_keeps_the_ranking():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    Y = np.column_stack([X[:, 0] + 0.5 * rng.normal(size=200) > 0.8, X[:, 1] - X[:, 2] > 0,
                         np.zeros(200, dtype=bool)]).astype(np.int64)
    Y[0, 2] = 1  # a rare label: one positive
    raw = MultiLabelHead(classes=np.array(["a", "b", "c"]), mean=np.zeros(4), scale=np.ones(4),
                         coef=0.1 * rng.normal(size=(3, 4)) + np.array([[1, 0, 0, 0], [0, 1, -1, 0], [0, 0, 0, 1]]),
                         intercept=np.zeros(3), thresholds=np.full(3, 0.5))
    decisions = raw.decision(X)
    head = raw.calibrated(decisions, Y)
    calibrated = head.decision(X)
    for j in range(3):  # an increasing affine map of each label's decision: the same ranking
        slope, offset = np.polyfit(decisions[:, j], calibrated[:, j], 1)
        assert slope > 0 and np.allclose(slope * decisions[:, j] + offset, calibrated[:, j])
    # the calibrated probabilities are Platt's: their mean matches each label's frequency (a logistic fit's score
    # equation), which the raw ridge-like decisions do not
    np.testing.assert_allclose(head.probabilities(X)[:, :2].mean(axis=0), Y[:, :2].mean(axis=0), atol=2e-3)
    # thresholds: each label's best F1 on the calibrated decisions, as probabilities
    from stc._multilabel import probability_thresholds
    np.testing.assert_allclose(head.thresholds, probability_thresholds(calibrated, Y))
    # a label with no positive keeps its decisions
    none = raw.calibrated(decisions, np.column_stack([Y[:, :2], np.zeros(200, dtype=np.int64)]))
    np.testing.assert_allclose(none.decision(X)[:, 2], decisions[:, 2])


def test_each_label_gets_the_threshold_with_its_best_f1():
    decisions = np.array([[3.0, -1.0], [2.0, -2.0], [1.0, 0.5], [-1.0, 1.0], [-2.0, 2.0]])
    truth = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 1]])
    thresholds = tune_thresholds(decisions, truth)
    # label 0: predicting the top two (3, 2) gives F1 0.8, the top four 0.857 (3 of 3 found, one wrong): cut at -1.5
    assert thresholds[0] == pytest.approx(-1.5)
    # label 1: the top three (2, 1, 0.5) are exactly its texts: F1 1, cut halfway between 0.5 and -1
    assert thresholds[1] == pytest.approx(-0.25)
    assert tune_thresholds(decisions, np.zeros_like(truth)).tolist() == [0.0, 0.0]  # no positive: the default


def test_no_block_is_thresholded_by_its_own_labels():
    # block 0's texts would be best cut at 0 on their own, the others' texts put the cut at 5: block 0 gets 5
    decisions = np.array([[1.0], [-1.0], [6.0], [4.0], [7.0], [3.0]])
    truth = np.array([[1], [0], [1], [0], [1], [0]])
    blocks = [np.array([0, 1]), np.array([2, 3]), np.array([4, 5])]
    predicted = cross_fitted_predictions(decisions, truth, blocks)
    assert predicted[:2, 0].tolist() == [0, 0]  # both under the others' cut, whatever their own labels say
    for block in blocks:  # each block by the thresholds of the others alone
        others = np.setdiff1d(np.arange(6), block)
        assert np.array_equal(predicted[block], decisions[block] > tune_thresholds(decisions[others], truth[others]))


def test_folds_and_splits_of_label_sets_are_iteratively_stratified():
    rng = np.random.default_rng(0)
    Y = (rng.random((200, 4)) < [0.5, 0.3, 0.1, 0.05]).astype(np.uint8)
    folds = make_folds(Y, 5, 0)
    held = np.sort(np.concatenate([val for _, val in folds]))
    assert np.array_equal(held, np.arange(200))  # every text held out once
    for train, val in folds:
        assert not set(train) & set(val)
        assert np.abs(Y[val].mean(axis=0) - Y.mean(axis=0)).max() < 0.06  # each label's share kept
    train, val = split_rows(Y, 0.2, 0)
    assert len(val) == 40 and np.abs(Y[val].mean(axis=0) - Y.mean(axis=0)).max() < 0.03


# --- bad input ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("y, message", [
    (np.array([[0, 2, 1]] * 3 + [[1, 0, 0]] * 3), r"not a 0/1 indicator matrix \(y\[0, 1\] is 2\)"),
    ([("good",), ("bad",), "odd", ("good",), ("bad",), ()], r"mixes label sets and plain labels: y\[2\] is 'odd'"),
    ([("good", "odd"), ("bad", "odd"), ("odd",), ("good", "odd"), ("odd",), ("bad", "odd")],
     r"every text carries label\(s\) \['odd'\]"),
    (np.array([[1, 0, 0], [0, 1, 0]] * 3), r"no text carries label\(s\) \[2\]"),
    ([("good",)] * 3 + [()] * 3, r"y holds 1 distinct label\(s\)"),
])
def test_bad_multilabel_targets_are_refused_by_name(model_dir, tmp_path, y, message):
    texts = [f"text {i}" for i in range(6)]
    with pytest.raises(ValueError, match=message):
        stc.STCClassifier(model_dir, store_dir=str(tmp_path), **FAST).fit(texts, y)
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_validation_labels_never_seen_in_training_and_mixed_forms_are_refused(model_dir, tmp_path):
    texts, label_sets = planted_label_sets(20)
    estimator = stc.STCClassifier(model_dir, store_dir=str(tmp_path), **FAST)
    with pytest.raises(ValueError, match=r"y_val holds labels never seen in training: \['sci-fi'\]"):
        estimator.fit(texts, label_sets, X_val=["a", "b"], y_val=[("good",), ("sci-fi",)])
    with pytest.raises(ValueError, match="y holds label sets but y_val holds one label per text"):
        estimator.fit(texts, label_sets, X_val=["a", "b"], y_val=["good", "bad"])
    with pytest.raises(ValueError, match="class_weight='balanced' does not apply to label sets"):
        stc.STCClassifier(model_dir, store_dir=str(tmp_path), class_weight="balanced", **FAST).fit(texts, label_sets)
    with pytest.raises(ValueError, match=r"metric='samples_f1' does not apply to single-label targets"):
        stc.STCClassifier(model_dir, store_dir=str(tmp_path), metric="samples_f1", **FAST).fit(
            texts, ["good"] * 10 + ["bad"] * 10)


def test_a_single_label_column_that_looks_like_joined_tags_names_the_separator(model_dir, tmp_path):
    texts = [f"text {i}" for i in range(32)]
    joined = ["bad;good", "good;odd", "bad;odd", "good"] * 8  # most labels hold ';', 4 "classes" of 3 tags
    with pytest.raises(ValueError, match=r"looks like tag sets joined by ';'.*--label-separator ';'"):
        stc.STCClassifier(model_dir, store_dir=str(tmp_path), **FAST).fit(texts, joined)
    # labels that merely hold a comma, and do not recombine, are labels
    control = ["Arts, Culture"] * 10 + ["Science, Tech"] * 10 + ["Sports"] * 10
    from stc._estimator import encode_targets

    assert encode_targets(control, 30)[2] == "labels"


# --- the faces ------------------------------------------------------------------------------------------------------

def _files(tmp_path, model_dir):
    """A CSV of planted label sets joined by ';' (with texts that carry none), and its path."""
    texts, label_sets = planted_label_sets(100, seed=2)
    return write_table(tmp_path / "tags.csv", {"text": texts, "label": [";".join(s) for s in label_sets]})


def test_cli_fit_predict_evaluate_on_a_file_of_label_sets(model_dir, stores, tmp_path, capsys):
    data = _files(tmp_path, model_dir)
    common = ["--device", "cpu", "--quiet"]
    assert main(["fit", "--data", str(data), "--label-separator", ";", "--model", model_dir, "--out",
                 str(tmp_path / "m"), "--store-dir", str(stores), "--poolings", "mean", "--etas", "0.5",
                 "--final-Cs", "1.0", *common]) == 0
    out = capsys.readouterr().out
    assert "metric micro_f1" in out and "test micro_f1:" in out
    assert main(["predict", str(tmp_path / "m"), "--data", str(data), "--out", str(tmp_path / "p.jsonl"),
                 *common]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    clf = stc.load(tmp_path / "m")
    texts = [row["text"] for row in rows]
    assert [tuple(row["labels"]) for row in rows] == clf.predict(texts)
    assert np.array_equal(np.array([[row["probabilities"][c] for c in LABELS] for row in rows]),
                          clf.predict_proba(texts))
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "m"), "--data", str(data), "--label-separator", ";", *common]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"} <= set(report)
    assert set(report["per_label"]) == set(LABELS)
    assert main(["info", str(tmp_path / "m")]) == 0
    assert "labels (multi-label, label sets" in capsys.readouterr().out


def test_cli_evaluate_with_a_label_the_model_never_saw_is_one_line(model_dir, clf, tmp_path, capsys):
    clf.save(tmp_path / "m")
    data = write_table(tmp_path / "new.csv", {"text": ["a wonderful day", "a weird day"], "label": ["good", "sci-fi"]})
    assert main(["evaluate", str(tmp_path / "m"), "--data", str(data), "--label-separator", ";", "--split",
                 "train", "--quiet"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("stc: error:")]
    assert len(errors) == 1 and "labels never seen in training: ['sci-fi']" in errors[0]


def test_serve_answers_label_sets_and_says_so_in_metadata(clf, new):
    limits = ServeSettings(max_texts=8, max_chars=300, max_batch_size=8, max_wait_ms=2.0)
    with TestClient(create_app(lambda: TorchPredictor(clf), limits)) as client:
        texts = new[0][:5]
        answer = client.post("/predict", json={"texts": texts}).json()["predictions"]
        assert [tuple(p["labels"]) for p in answer] == clf.predict(texts)
        assert np.array_equal(np.array([[p["probabilities"][c] for c in LABELS] for p in answer]),
                              clf.predict_proba(texts))
        metadata = client.get("/metadata").json()
        assert metadata["multilabel"] is True and metadata["classes"] == LABELS
        assert metadata["thresholds"] == dict(zip(LABELS, clf.readout_.head.thresholds.tolist()))


def test_onnx_export_keeps_the_labels_and_thresholds(clf, new, tmp_path):
    from stc.export import OnnxPredictor, export_onnx

    predictor = OnnxPredictor(export_onnx(clf, tmp_path / "onnx"))
    assert isinstance(predictor.head, MultiLabelHead)
    proba = predictor.predict_proba(new[0])
    np.testing.assert_allclose(proba, clf.predict_proba(new[0]), atol=1e-4)
    assert predictor.head.label_sets(predictor.head.labels_from_probabilities(proba)) == \
        [list(p) for p in clf.predict(new[0])]


def test_a_bundle_holds_a_multilabel_task_beside_a_single_label_one(clf, model_dir, stores, new, tmp_path, capsys):
    single = fit_tiny(model_dir, stores, 2)
    bundle = Bundle.from_models({"tags": clf, "sentiment": single})
    backbone = bundle.load_backbone(device="cpu")
    labels = bundle.predict(new[0], backbone=backbone)
    assert np.array_equal(bundle.predict_proba(new[0], backbone=backbone)["tags"], clf.predict_proba(new[0]))
    assert clf.readout_.head.label_sets(labels["tags"]) == [list(p) for p in clf.predict(new[0])]
    assert labels["sentiment"].tolist() == single.predict(new[0]).tolist()
    bundle.save(tmp_path / "bundle")
    texts = write_table(tmp_path / "texts.csv", {"text": new[0][:4]})
    assert main(["predict", str(tmp_path / "bundle"), "--data", str(texts), "--out", str(tmp_path / "b.jsonl"),
                 "--device", "cpu", "--quiet"]) == 0
    rows = [json.loads(line)["tasks"] for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [tuple(row["tags"]["labels"]) for row in rows] == clf.predict(new[0][:4])
    assert [row["sentiment"]["label"] for row in rows] == single.predict(new[0][:4]).tolist()


@pytest.mark.parametrize("seed", range(3))
def test_cross_fitted_predictions_threshold_each_block_on_the_others_rows(seed):
    rng = np.random.default_rng(seed)
    decisions = np.round(rng.normal(size=(47, 4)), 1)  # ties among the decisions
    Y = (rng.random((47, 4)) < 0.3).astype(np.uint8)
    Y[:, 3] = 0  # a label no row carries
    blocks = np.array_split(rng.permutation(47), 4)
    predicted = cross_fitted_predictions(decisions, Y, blocks)
    for block in blocks:
        others = np.setdiff1d(np.arange(47), block)
        expected = decisions[block] > tune_thresholds(decisions[others], Y[others])
        np.testing.assert_array_equal(predicted[block], expected)
    one = cross_fitted_predictions(decisions, Y, [np.arange(47)])
    np.testing.assert_array_equal(one, decisions > tune_thresholds(decisions, Y))


def test_a_label_set_model_saved_before_the_ridges_C_was_searched_still_loads(clf, new, tmp_path):
    # such a model's configuration and search rows hold C None (its penalty was chosen by leave-one-out)
    clf.save(tmp_path / "model")
    path = tmp_path / "model" / "stc_model.json"
    document = json.loads(path.read_text())
    document["configuration"]["C"] = None
    for row in document["search_results"]:
        row["C"] = None
    path.write_text(json.dumps(document))
    back = stc.load(tmp_path / "model")
    assert back.configuration_["C"] is None
    assert back.predict(new[0]) == clf.predict(new[0])
    np.testing.assert_allclose(back.classifier_.decision_function(np.ones((2, back.n_features_))),
                               back.readout_.head.decision(np.ones((2, back.n_features_))), rtol=1e-6, atol=1e-9)
    from stc._summary import summary_lines
    assert any("ridge penalty by leave-one-out" in line for line in summary_lines(back))
