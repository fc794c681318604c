"""The report: every figure with its JSON, numbers that are the model's, a page that fetches nothing; the CLI."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

import stc
from stc.calibration import expected_calibration_error, log_loss, probabilities, reliability_table
from stc.cli import main
from stc.report import build_report, read_embedding_score
from stc.report._cli import format_explanation

from ._helpers import FIGURES, SPARSE_FIT, fit_tiny, planted_dataset


@pytest.fixture(scope="module")
def saved_models(tiny_dir, tmp_path_factory):
    """n_classes -> directory of a saved tiny model (binary: mean+max; three classes: max only)."""
    root = tmp_path_factory.mktemp("models")
    directories = {}
    for n_classes, poolings in ((2, ("mean", "max")), (3, ("max",))):
        clf = fit_tiny(tiny_dir, root / "stores", n_classes, poolings=poolings, **SPARSE_FIT)
        clf.save(root / f"model-{n_classes}")
        directories[n_classes] = root / f"model-{n_classes}"
    return directories


@pytest.fixture(scope="module")
def reports(saved_models, tmp_path_factory):
    """n_classes -> (classifier, report directory), built through the library call."""
    built = {}
    for n_classes, directory in saved_models.items():
        clf = stc.load(directory)
        out = tmp_path_factory.mktemp(f"report-{n_classes}")
        build_report(clf, planted_dataset(n_classes), out, top_k=6, texts_per_neuron=2)
        built[n_classes] = (clf, out)
    return built


@pytest.mark.parametrize("n_classes", [2, 3])
def test_every_figure_is_written_as_png_with_its_json(reports, n_classes):
    _, out = reports[n_classes]
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        json.loads((out / f"{name}.json").read_text())
    assert (out / "index.html").is_file() and (out / "report.json").is_file()


@pytest.mark.parametrize("n_classes", [2, 3])
def test_page_is_self_contained(reports, n_classes):
    _, out = reports[n_classes]
    page = (out / "index.html").read_text()
    # No resource is fetched: no src/href other than inline data, no CSS url() or @import.
    assert re.findall(r"""(?:src|href)\s*=\s*["'](?!data:)""", page) == []
    assert "@import" not in page and "url(" not in page and "<link" not in page
    assert page.count('src="data:image/png;base64,') == len(FIGURES)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_search_table_shows_the_best_candidates_of_cv_results_and_marks_the_chosen(reports, n_classes):
    clf, out = reports[n_classes]
    search = json.loads((out / "report.json").read_text())["search"]
    results = clf.cv_results_
    assert search["n_candidates"] == len(results["mean_test_score"])
    top = [row["rank"] for row in search["rows"][:10]]  # the best ten by rank (then the chosen one, if not there)
    assert top == sorted(top) and top[0] == 1
    for row in search["rows"]:
        assert row["mean"] == results["mean_test_score"][row["index"]]
        assert row["kind"] == results["param_readout_kind"][row["index"]]
    assert [row["index"] for row in search["rows"] if row["chosen"]] == [clf.best_index_]
    page = (out / "index.html").read_text()
    assert "The search: its best candidates" in page and page.count("<tr class=chosen>") == 1


@pytest.mark.parametrize("n_classes", [2, 3])
def test_key_numbers_are_the_models(reports, n_classes):
    clf, out = reports[n_classes]
    config = json.loads((out / "configuration.json").read_text())
    assert config["n_features"] == clf.n_features_ == sum(len(c) for c in clf.kept_columns_.values())
    assert config["exit_layer"] == clf.exit_layer_ and config["val_score"] == clf.val_score_
    assert config["eta"] == clf.configuration_["eta"] and config["classes"] == clf.classes_.tolist()
    dataset = planted_dataset(n_classes)
    predicted = clf.predict(dataset.test.texts)
    assert config["test_score"] == pytest.approx(np.mean(predicted == np.asarray(dataset.test.labels)))
    matrix = np.asarray(json.loads((out / "confusion_matrix.json").read_text())["matrix"])
    correct = (predicted == np.asarray(dataset.test.labels)).sum()
    assert matrix.sum() == len(dataset.test) and np.trace(matrix) == correct


@pytest.mark.parametrize("n_classes", [2, 3])
def test_reliability_diagram_holds_the_calibration_functions_numbers_on_the_test_texts(reports, n_classes):
    clf, out = reports[n_classes]
    data = json.loads((out / "reliability.json").read_text())
    assert json.loads((out / "report.json").read_text())["reliability"] == data
    test = planted_dataset(n_classes).test
    codes = np.searchsorted(clf.classes_, np.asarray(test.labels))
    calibrated = clf.predict_proba(test.texts)
    uncalibrated = probabilities(clf.decision_function(test.texts), 1.0)
    expected = [uncalibrated, calibrated] if clf.temperature_ != 1.0 else [calibrated]
    assert [c["temperature"] for c in data["curves"]][-1] == pytest.approx(clf.temperature_)
    assert data["n"] == len(test) and data["n_bins"] == 15 and len(data["curves"]) == len(expected)
    for curve, proba in zip(data["curves"], expected):
        assert curve["ece"] == pytest.approx(expected_calibration_error(proba, codes, 15), abs=1e-9)
        assert curve["log_loss"] == pytest.approx(log_loss(proba, codes), abs=1e-9)
        assert curve["accuracy"] == pytest.approx(np.mean(proba.argmax(axis=1) == codes))
        table = reliability_table(proba, codes, 15)
        assert [b["count"] for b in curve["bins"]] == [b["count"] for b in table]
        for got, want in zip(curve["bins"], table):
            assert got["confidence"] == pytest.approx(want["confidence"], abs=1e-9)
            assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-9)
    # The caption carries the same numbers.
    page = (out / "index.html").read_text()
    for index, curve in enumerate(data["curves"]):
        for field in ("ece", "log_loss"):
            assert f'data-check="{field}-{index}" data-value="{curve[field]!r}"' in page


def test_reliability_data_from_planted_decisions(tmp_path):
    from stc.report._data import reliability
    from stc.report._figures import save_figure

    # Decisions +-3 (p = 0.953 under T = 1) on 10 texts, of which 7 are right: one bin, confidence 0.953, accuracy 0.7.
    decisions = np.array([3.0] * 5 + [-3.0] * 5)
    codes = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1])
    alone = reliability(decisions, codes, 1.0)
    assert [c["name"] for c in alone["curves"]] == ["the model's probabilities"]
    filled = [b for b in alone["curves"][0]["bins"] if b["count"]]
    assert len(filled) == 1 and filled[0]["count"] == 10 and filled[0]["accuracy"] == pytest.approx(0.7)
    assert alone["curves"][0]["ece"] == pytest.approx(1 / (1 + np.exp(-3)) - 0.7)
    # A temperature of 3 brings the decisions to +-1 (p = 0.731): the second curve is much closer to 0.7.
    both = reliability(decisions, codes, 3.0)
    assert [c["temperature"] for c in both["curves"]] == [1.0, 3.0]
    assert both["curves"][1]["ece"] == pytest.approx(1 / (1 + np.exp(-1)) - 0.7)
    assert both["curves"][0] == {**alone["curves"][0], "name": "before calibration"}
    assert both["curves"][0]["accuracy"] == both["curves"][1]["accuracy"] == pytest.approx(0.7)
    save_figure("reliability", {**both, "split": "test"}, tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_eta_curves_leave_out_dense_readouts_which_have_no_eta():
    from types import SimpleNamespace

    from stc.report._data import eta_curves

    row = {"stage": 1, "representations": "hidden", "poolings": "mean", "C": 1.0, "n_features": 10}
    model = SimpleNamespace(metric_="accuracy", kept_counts_=None, configuration_={
        "representations": "hidden", "poolings": "mean", "eta": 0.5, "exit_layer": 3}, search_results_=[
        {**row, "eta": None, "readout": "dense", "C": 0.1, "n_features": 384, "val_score": 0.7},
        {**row, "eta": 0.5, "readout": "sparse", "val_score": 0.8},
        {**row, "eta": 0.1, "readout": "sparse", "n_features": 3, "val_score": 0.6}])
    data = eta_curves(model)
    assert data["series"] == [{"representations": "hidden", "poolings": "mean", "etas": [0.1, 0.5],
                               "val_scores": [0.6, 0.8], "n_features": [3, 10]}]
    assert data["C"] == 1.0


def test_layer_curve_holds_every_probe_and_the_embedding_score(reports):
    clf, out = reports[2]
    curve = json.loads((out / "layer_curve.json").read_text())
    points = {(s["representation"], s["pooling"], layer): score for s in curve["series"]
              for layer, score in zip(s["layers"], s["val_scores"])}
    assert points == {(r["representation"], r["pooling"], r["layer"]): r["val_score"] for r in clf.probe_scores_}
    embedding = curve["embedding"]
    assert embedding["layer"] == clf.backbone_["num_layers"] and 0.0 <= embedding["val_score"] <= 1.0


def test_kept_counts_agree_with_the_models_columns_and_search(reports):
    clf, out = reports[2]
    kept = json.loads((out / "kept_per_layer.json").read_text())
    assert {r["key"]: r["kept"] for r in kept["by_key"]} == {k: len(v) for k, v in clf.kept_columns_.items()}
    # The per-layer counts from the exit-layer search add up, at the chosen exit layer, to the model's features.
    upto_exit = sum(r["kept"] for r in kept["by_layer_all_depths"] if r["layer"] <= clf.exit_layer_)
    assert upto_exit == clf.n_features_
    exit_curve = json.loads((out / "metric_vs_exit.json").read_text())
    assert exit_curve["chosen"]["val_score"] == clf.val_score_
    assert any(clf.exit_layer_ in s["exit_layers"] for s in exit_curve["series"])
    eta = json.loads((out / "metric_vs_eta.json").read_text())
    assert sorted({e for s in eta["series"] for e in s["etas"]}) == sorted(clf.etas)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_top_neurons_name_their_layer_weight_and_most_activating_training_texts(reports, n_classes):
    clf, out = reports[n_classes]
    neurons = json.loads((out / "top_neurons.json").read_text())
    weights = np.asarray(clf.readout_.head.coef)
    strength = np.sqrt((weights ** 2).sum(axis=0))
    assert [n["feature"] for n in neurons] == list(np.argsort(-strength, kind="stable")[:6])
    train = planted_dataset(n_classes).train
    for neuron in neurons:
        assert clf.kept_neurons_[neuron["feature"]] == neuron["neuron"]
        assert list(neuron["weights"].values()) == pytest.approx(weights[:, neuron["feature"]].tolist())
        activations = [t["activation"] for t in neuron["top_texts"]]
        assert activations == sorted(activations, reverse=True) and len(activations) == 2
        # The top text really is the training text with the largest pooled activation of this neuron.
        pooled = clf.transform(train.texts)[:, neuron["feature"]]
        assert activations[0] == pytest.approx(pooled.max(), rel=1e-4, abs=1e-5)
        for text in neuron["top_texts"]:
            if neuron["pooling"] == "max":
                start, end = text["peak"]["span"]
                assert text["peak"]["activation"] == pytest.approx(text["activation"], rel=1e-5, abs=1e-6)
                assert "<mark" in (out / "index.html").read_text() and 0 <= start < end <= len(text["text"])
            else:
                assert "peak" not in text


def test_embedding_score_is_read_from_json(tmp_path):
    (tmp_path / "score.json").write_text(json.dumps({"val_score": 0.75, "pooling": "mean", "layer": 6}))
    assert read_embedding_score(tmp_path / "score.json")["val_score"] == 0.75
    (tmp_path / "demo.json").write_text(json.dumps({"rows": [{"method": "STC", "val": 0.8},
                                                             {"method": "last-layer embedding", "val": 0.7,
                                                              "exit_layer": 6}]}))
    assert read_embedding_score(tmp_path / "demo.json")["val_score"] == 0.7
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="no embedding score"):
        read_embedding_score(tmp_path / "bad.json")


def test_cli_report_and_explain(saved_models, tmp_path, capsys):
    data = tmp_path / "planted.csv"
    dataset = planted_dataset(2)
    rows = [("text", "label", "split")] + [(t, y, name) for name, split in (
        ("train", dataset.train), ("validation", dataset.validation), ("test", dataset.test))
        for t, y in zip(split.texts, split.labels)]
    data.write_text("\n".join(",".join(row) for row in rows) + "\n")
    (tmp_path / "score.json").write_text(json.dumps({"val_score": 0.5}))
    assert main(["report", str(saved_models[2]), "--out", str(tmp_path / "out"), "--data", str(data),
                 "--embedding-score", str(tmp_path / "score.json"), "--top-k", "3", "--quiet"]) == 0
    assert "report written to" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "configuration.json").read_text())["embedding_val_score"] == 0.5

    assert main(["explain", str(saved_models[2]), "a wonderful day in town", "--json"]) == 0
    explanation = json.loads(capsys.readouterr().out)
    assert explanation == stc.load(saved_models[2]).explain("a wonderful day in town")
    assert main(["explain", str(saved_models[2]), "a wonderful day in town", "--top-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == format_explanation(stc.load(saved_models[2]).explain("a wonderful day in town",
                                                                                    top_k=3)).strip()
    assert printed.startswith(f"label: {explanation['label']}")

    assert main(["explain", str(tmp_path / "missing"), "text"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(saved_models[2]), "--out", str(tmp_path / "o2"), "--data", str(data),
                 "--top-k", "0", "--no-embedding"]) == 2
    assert "top_k must be a positive integer" in capsys.readouterr().err


def test_per_layer_counts_across_eta_are_drawn_when_the_model_records_them(saved_models, tmp_path):
    from stc.report._data import eta_curves
    from stc.report._figures import save_figure

    clf = stc.load(saved_models[2])
    assert eta_curves(clf)["kept_per_layer_by_eta"] is not None  # fitted models record their counts
    etas = list(clf.etas)
    # Planted counts: each key keeps (position of η in the grid + 1) × (layer + 1) neurons.
    counts = {"etas": etas, "counts": {key: [(i + 1) * (int(key.split(".")[1][1:]) + 1) for i in range(len(etas))]
                                       for key in clf.kept_columns_}}
    clf.readout_ = replace(clf.readout_, record=replace(clf.readout_.record, kept_counts=counts))
    data = eta_curves(clf)
    per_layer = data["kept_per_layer_by_eta"]
    chosen = clf.configuration_
    for layer, counts in zip(per_layer["layers"], per_layer["counts"]):
        keys = [k for k in clf.kept_columns_ if int(k.split(".")[1][1:]) == layer
                and k.split(".")[0] in chosen["representations"].split("+")
                and k.split(".")[2] in chosen["poolings"].split("+")]
        assert counts == [(i + 1) * (layer + 1) * len(keys) for i in range(len(etas))]
    assert data["note"] is None
    save_figure("kept_vs_eta", data, tmp_path / "kept_vs_eta.png")
    assert (tmp_path / "kept_vs_eta.png").read_bytes()[:4] == b"\x89PNG"
