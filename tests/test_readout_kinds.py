"""Every face on a model of every readout kind: sparse (kept neurons at η), dense (every neuron of one array, no η)
and hybrid (both). Issue 21, point 7: ``stc report`` on a dense model failed in ``float(config["eta"])``.

One tiny cross-validated fit scores candidates of all three kinds; ``with_readout`` makes a model of each from it.
The expected words are written out here, not read from stc's own helper, so a face that drops them fails.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from html import escape

import numpy as np
import pytest
from fastapi.testclient import TestClient

from stc.cli import main
from stc.predictor import TorchPredictor
from stc.serving import create_app

from ._helpers import FIGURES, NEW_TEXTS, WIDTHS, fit_tiny, planted_texts, save_tiny, with_readout

#: the three kinds of candidate a fitted model can have chosen (stc.aggregate)
READOUT_KINDS = ("sparse", "dense", "hybrid")


@pytest.fixture(scope="module")
def models(tokenizer, tmp_path_factory):
    """kind -> a fitted tiny model reading the best candidate of that kind its search scored."""
    model_dir = save_tiny(tmp_path_factory.mktemp("tiny-bert"), tokenizer=tokenizer)
    fitted = fit_tiny(model_dir, tmp_path_factory.mktemp("stores"), 2)
    return {kind: with_readout(fitted, kind) for kind in READOUT_KINDS}


@pytest.fixture(scope="module")
def saved(models, tmp_path_factory):
    """kind -> the directory ``save`` wrote the model of that kind into (with its README.md)."""
    root = tmp_path_factory.mktemp("models")
    for kind, clf in models.items():
        clf.save(root / kind)
    return {kind: root / kind for kind in models}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """The planted texts as a CSV with train, validation and test splits, as ``stc report --data`` reads it."""
    path = tmp_path_factory.mktemp("data") / "planted.csv"
    rows = ["text,label,split"]
    for split, (per_class, seed) in {"train": (16, 0), "validation": (4, 2), "test": (6, 1)}.items():
        rows += [f"{text},{label},{split}" for text, label in zip(*planted_texts(2, per_class, seed))]
    path.write_text("\n".join(rows) + "\n")
    return path


def described(config: dict) -> str:
    """The readout in the words the faces use (written out: not stc's helper)."""
    kind = config["readout"]
    if kind == "dense":
        return f"dense readout: every neuron of {config['dense_key']}"
    sparse = (f"the neurons kept at η = {config['eta']:g} of {config['representations']} · {config['poolings']}, "
              f"layers up to {config['exit_layer']}")
    return f"sparse readout: {sparse}" if kind == "sparse" else \
        f"hybrid readout: every neuron of {config['dense_key']} plus {sparse}"


@pytest.mark.parametrize("kind", READOUT_KINDS)
def test_the_builder_gives_a_fitted_model_of_each_kind(models, kind):
    clf = models[kind]
    config, kept = clf.configuration_, clf.kept_columns_
    assert config["readout"] == kind and clf.n_features_ == sum(map(len, kept.values())) == config["n_features"]
    if kind == "dense":
        assert config["eta"] is None and list(kept) == [config["dense_key"]]
        assert kept[config["dense_key"]].tolist() == list(range(WIDTHS["hidden"]))
    elif kind == "hybrid":
        assert len(kept[config["dense_key"]]) == WIDTHS["hidden"] and len(kept) > 1 and config["eta"] is not None
    else:
        assert config["dense_key"] is None and config["eta"] is not None
    assert set(clf.predict(NEW_TEXTS)) <= set(clf.classes_)


@pytest.mark.parametrize("kind", READOUT_KINDS)
def test_stc_report_on_a_model_of_each_readout_kind(saved, models, data_file, kind, tmp_path, capsys):
    (tmp_path / "score.json").write_text(json.dumps({"val_score": 0.5}))  # no embedding baseline to fit
    out = tmp_path / "report"
    assert main(["report", str(saved[kind]), "--out", str(out), "--data", str(data_file), "--embedding-score",
                 str(tmp_path / "score.json"), "--top-k", "3", "--texts-per-neuron", "1", "--quiet"]) == 0, \
        capsys.readouterr().err
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    clf = models[kind]
    config = clf.configuration_
    summary = json.loads((out / "configuration.json").read_text())
    assert summary["readout"] == kind and summary["eta"] == config["eta"]
    assert summary["readout_description"] == described(config)
    page = (out / "index.html").read_text()
    assert escape(described(config)) in page
    # where the η is shown: the η, or for a dense readout the array it reads in its place
    assert ('data-check="eta"' in page) == (kind != "dense")
    kept = json.loads((out / "kept_per_layer.json").read_text())
    assert kept["eta"] == config["eta"] and sum(r["kept"] for r in kept["by_key"]) == clf.n_features_
    # the η curves still draw the stage-1 sparse candidates; a dense readout marks no η and no set as chosen
    eta = json.loads((out / "metric_vs_eta.json").read_text())
    stage1 = [r for r in clf.search_results_ if r["stage"] == 1 and r["readout"] == "sparse"]
    assert sum(len(s["etas"]) for s in eta["series"]) == len(stage1) > 0
    assert eta["chosen"]["eta"] == config["eta"]
    # the exit curves are the sparse leader's; the dense and hybrid candidates of stage 2 are points of their own
    exit_curve = json.loads((out / "metric_vs_exit.json").read_text())
    stage2 = [r for r in clf.search_results_ if r["stage"] == 2]
    assert sum(len(s["exit_layers"]) for s in exit_curve["series"]) == sum(r["readout"] == "sparse" for r in stage2)
    assert sorted(p["readout"] for p in exit_curve["other_readouts"]) == sorted(
        r["readout"] for r in stage2 if r["readout"] != "sparse")
    assert exit_curve["chosen"]["readout"] == kind


def test_the_eta_and_exit_figures_draw_a_dense_model_whose_search_scored_no_sparse_candidate(models, tmp_path):
    from stc.report._data import eta_curves, exit_curve, kept_per_layer
    from stc.report._figures import save_figure

    clf = copy.deepcopy(models["dense"])
    record = clf.readout_.record
    clf.readout_ = replace(clf.readout_, record=replace(record, search_results=[
        r for r in record.search_results if r["readout"] == "dense"]))
    for name, data in (("kept_per_layer", kept_per_layer(clf)), ("kept_vs_eta", eta_curves(clf)),
                       ("metric_vs_eta", eta_curves(clf)), ("metric_vs_exit", exit_curve(clf))):
        save_figure(name, data, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    assert eta_curves(clf)["series"] == [] and "no sparse candidate" in eta_curves(clf)["note"]


@pytest.mark.parametrize("kind", READOUT_KINDS)
def test_stc_explain_on_a_model_of_each_readout_kind(saved, models, kind, capsys):
    text = NEW_TEXTS[0]
    assert main(["explain", str(saved[kind]), text, "--json", "--top-k", "4"]) == 0
    explanation = json.loads(capsys.readouterr().out)
    clf = models[kind]
    row = explanation["explained_row"]
    assert explanation["n_features"] == clf.n_features_ and len(explanation["contributions"]) == 4
    assert {c["key"] for c in explanation["contributions"]} <= set(clf.kept_columns_)
    np.testing.assert_allclose(explanation["all_contributions_sum"][row] + explanation["intercept"][row],
                               explanation["decision"][row], atol=1e-9)
    assert explanation["probability"] == pytest.approx(clf.predict_proba([text]).max(), abs=1e-5)
    assert main(["explain", str(saved[kind]), text]) == 0
    assert capsys.readouterr().out.startswith(f"label: {explanation['label']}")


@pytest.mark.parametrize("kind", READOUT_KINDS)
def test_stc_info_on_a_model_of_each_readout_kind(saved, models, kind, capsys):
    assert main(["info", str(saved[kind])]) == 0
    printed = capsys.readouterr().out
    config = models[kind].configuration_
    assert f"configuration: readout={kind} " in printed and "eta=None" not in printed
    assert (f" eta={config['eta']} " in printed) == (kind != "dense")
    if kind != "sparse":
        assert f"the {kind} readout won: every neuron of {config['dense_key']}" in printed


@pytest.mark.parametrize("kind", READOUT_KINDS)
def test_the_model_card_of_a_model_of_each_readout_kind(saved, models, kind):
    card = (saved[kind] / "README.md").read_text()
    config = models[kind].configuration_
    section = card.split("## Chosen configuration")[1].split("## Kept neurons per layer")[0]
    assert f"The {described(config)}." in section
    table = dict(line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")
                 and not line.startswith("| setting"))
    table = {name.strip(): value.strip() for name, value in table.items()}
    assert table["readout"] == kind and "None" not in table.values()
    assert table.get("dense_key") == config["dense_key"]
    assert table["eta"] == (str(config["eta"]) if kind != "dense" else
                            "none (a dense readout keeps every neuron of its array)")
    assert f"a logistic regression on {models[kind].n_features_} neurons" in card


def _readout_record(clf) -> dict:
    config = clf.configuration_
    return {"kind": config["readout"], "eta": config["eta"], "dense_key": config["dense_key"],
            "exit_layer": config["exit_layer"], "representations": config["representations"],
            "poolings": config["poolings"], "description": described(config)}


@pytest.mark.parametrize("kind", READOUT_KINDS)
def test_serve_metadata_on_a_model_of_each_readout_kind(models, kind):
    clf = models[kind]
    with TestClient(create_app(lambda: TorchPredictor(clf))) as client:
        metadata = client.get("/metadata").json()
        predictions = client.post("/predict", json={"texts": NEW_TEXTS[:2]}).json()["predictions"]
    assert metadata["readout"] == _readout_record(clf)
    assert metadata["configuration"] == clf.configuration_ and metadata["exit_layer"] == clf.exit_layer_
    assert metadata["n_kept_neurons"] == clf.n_features_
    assert [p["label"] for p in predictions] == clf.predict(NEW_TEXTS[:2]).tolist()


@pytest.mark.parametrize("kind", READOUT_KINDS)
def test_onnx_export_of_a_model_of_each_readout_kind(saved, models, kind, tmp_path, capsys):
    from stc.export import OnnxPredictor

    out = tmp_path / "onnx"
    assert main(["export", str(saved[kind]), "--out", str(out)]) == 0, capsys.readouterr().err
    predictor, clf = OnnxPredictor(out), models[kind]
    np.testing.assert_allclose(predictor.predict_proba(NEW_TEXTS), clf.predict_proba(NEW_TEXTS), atol=1e-4, rtol=0)
    metadata = predictor.metadata()
    assert metadata["readout"] == _readout_record(clf) and metadata["exit_layer"] == clf.exit_layer_
    assert metadata["n_kept_neurons"] == clf.n_features_


@pytest.mark.parametrize("configuration, problem", [
    ({"readout": "embedding"}, "'readout' must be one of"),
    ({"readout": "dense", "eta": 0.5, "dense_key": "hidden.L1.mean"}, "'eta' of a dense readout must be null"),
    ({"readout": "hybrid", "eta": 0.5, "dense_key": None}, "'dense_key' of a hybrid readout must name an array"),
    ({"readout": "sparse", "eta": None}, "'eta' of a sparse readout must be a number"),
])
def test_a_readout_refuses_a_configuration_of_no_known_kind(models, configuration, problem):
    readout = models["sparse"].readout_
    with pytest.raises(ValueError, match=problem):
        replace(readout, configuration={**readout.configuration, **configuration})
