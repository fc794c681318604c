"""Bundles: several tasks on one backbone read from one forward pass, each task's answers bit for bit its own
model's; refusals of models that cannot share a pass; save/load; stc bundle and stc predict on a bundle."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

import stc
from stc import Bundle
from stc.cli import main
from stc.readout import Readout

from ._helpers import NEW_TEXTS, fit_tiny, keep_every_site, save_tiny


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-bert"), "bert", tokenizer=tokenizer)


@pytest.fixture(scope="module")
def models(model_dir, tmp_path_factory):
    """Three tasks on the tiny BERT: two classes, three classes (other poolings), and one reading every site."""
    stores = tmp_path_factory.mktemp("stores")
    sentiment = fit_tiny(model_dir, stores, 2)
    topic = fit_tiny(model_dir, stores, 3, poolings=("max", "first"))
    everything = keep_every_site(fit_tiny(model_dir, stores, 2, calibrate=False), 3)
    return {"sentiment": sentiment, "topic": topic, "everything": everything}


def test_each_task_of_a_bundle_answers_bit_for_bit_as_its_own_model(models, model_dir):
    bundle = Bundle.from_models(models)
    backbone = bundle.load_backbone(device="cpu")
    probabilities = bundle.predict_proba(NEW_TEXTS, backbone=backbone)
    labels = bundle.predict(NEW_TEXTS, backbone=backbone)
    assert list(probabilities) == ["sentiment", "topic", "everything"]
    for name, clf in models.items():
        assert np.array_equal(probabilities[name], clf.predict_proba(NEW_TEXTS))
        assert labels[name].tolist() == clf.predict(NEW_TEXTS).tolist()
    assert bundle.exit_layer == max(clf.exit_layer_ for clf in models.values()) == 3
    union = bundle.union_columns
    for clf in models.values():  # every task's neurons are in the one pass
        for key, columns in clf.kept_columns_.items():
            assert set(columns.tolist()) <= set(union[key].tolist())
    assert sum(map(len, union.values())) <= sum(clf.n_features_ for clf in models.values())


def test_asking_for_some_tasks_runs_only_what_they_read(models):
    bundle = Bundle.from_models(models)
    backbone = bundle.load_backbone(device="cpu")
    some = bundle.predict_proba(NEW_TEXTS, backbone=backbone, tasks=["topic"])
    assert list(some) == ["topic"] and np.array_equal(some["topic"], models["topic"].predict_proba(NEW_TEXTS))
    assert bundle.subset(["topic"]).exit_layer == models["topic"].exit_layer_
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['tone'\]: this bundle has"):
        bundle.predict_proba(NEW_TEXTS, backbone=backbone, tasks=["tone"])


def test_models_that_cannot_share_a_pass_are_refused_naming_the_field(models, tokenizer, tmp_path):
    other = fit_tiny(save_tiny(tmp_path / "other", "distilbert", tokenizer=tokenizer), tmp_path / "stores", 2)
    with pytest.raises(ValueError, match="task 'other' differs from task 'sentiment' in its backbone weights sha256"):
        Bundle.from_models({"sentiment": models["sentiment"], "other": other})
    readout = models["topic"].readout_
    shorter = replace(readout, extraction=replace(readout.extraction, max_length=32))
    with pytest.raises(ValueError, match=f"in its max_length \\(32 vs {readout.extraction.max_length}\\)"):
        Bundle.from_models([models["sentiment"], shorter], names=["sentiment", "short"])
    with pytest.raises(ValueError, match="task name"):
        Bundle.from_models([models["sentiment"]], names=["no spaces please"])
    with pytest.raises(ValueError, match="names must differ"):
        Bundle.from_models([models["sentiment"], models["topic"]], names=["a", "a"])


def test_a_saved_bundle_loads_the_same_and_damage_is_named(models, tmp_path):
    bundle = Bundle.from_models(models)
    bundle.save(tmp_path / "bundle")
    loaded = Bundle.load(tmp_path / "bundle")
    backbone = loaded.load_backbone(device="cpu")
    assert loaded.names == bundle.names
    for name, proba in loaded.predict_proba(NEW_TEXTS, backbone=backbone).items():
        assert np.array_equal(proba, models[name].predict_proba(NEW_TEXTS))
    bundle.save(tmp_path / "bundle")  # replacing a bundle is allowed
    with pytest.raises(ValueError, match="is not an stc bundle; refusing to replace it"):
        (tmp_path / "precious").mkdir()
        (tmp_path / "precious" / "notes.txt").write_text("mine")
        bundle.save(tmp_path / "precious")
    assert (tmp_path / "precious" / "notes.txt").read_text() == "mine"
    (tmp_path / "bundle" / "tasks" / "topic" / "stc_model.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        Bundle.load(tmp_path / "bundle")
    with pytest.raises(ValueError, match="stc_bundle.json is missing"):
        Bundle.load(tmp_path)


def test_cli_bundle_then_predict_one_row_per_text_with_every_task(models, tmp_path, capsys):
    directories = []
    for name, clf in models.items():
        clf.save(tmp_path / name)
        directories.append(str(tmp_path / name))
    assert main(["bundle", *directories, "--out", str(tmp_path / "bundle")]) == 0
    assert "3 tasks (sentiment, topic, everything)" in capsys.readouterr().err
    (tmp_path / "texts.txt").write_text("\n".join(NEW_TEXTS) + "\n")
    assert main(["predict", str(tmp_path / "bundle"), "--data", str(tmp_path / "texts.txt"), "--out",
                 str(tmp_path / "out.jsonl"), "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["text"] for row in rows] == NEW_TEXTS
    for name, clf in models.items():
        expected = clf.predict_proba(NEW_TEXTS)
        got = np.array([[row["tasks"][name]["probabilities"][str(c)] for c in clf.classes_] for row in rows])
        assert np.array_equal(got, expected)
        assert [row["tasks"][name]["label"] for row in rows] == clf.predict(NEW_TEXTS).tolist()
    capsys.readouterr()
    assert main(["info", str(tmp_path / "bundle")]) == 0
    info = capsys.readouterr().out
    assert "bundle of 3 tasks" in info and all(f"  {name}: classes" in info for name in models)
    assert main(["bundle", directories[0], "--out", str(tmp_path / "b2"), "--names", "a,b"]) == 2
    assert Readout.from_files(tmp_path / "bundle" / "tasks" / "topic").n_features == models["topic"].n_features_
    assert stc.Bundle is Bundle


def test_a_bundle_is_served_with_every_task_per_text_and_tasks_to_pick_some(models, tmp_path):
    from fastapi.testclient import TestClient

    from stc.runtimes import load_predictor
    from stc.serving import create_app

    Bundle.from_models(models).save(tmp_path / "bundle")
    predictor = load_predictor(tmp_path / "bundle", device="cpu")
    with TestClient(create_app(lambda: predictor)) as client:
        answer = client.post("/predict", json={"texts": NEW_TEXTS}).json()["predictions"]
        for name, clf in models.items():
            got = np.array([[row["tasks"][name]["probabilities"][str(c)] for c in clf.classes_] for row in answer])
            assert np.array_equal(got, clf.predict_proba(NEW_TEXTS))
        some = client.post("/predict?tasks=topic", json={"texts": NEW_TEXTS[:2]}).json()["predictions"]
        assert [list(row["tasks"]) for row in some] == [["topic"], ["topic"]]
        unknown = client.post("/predict?tasks=tone", json={"texts": NEW_TEXTS[:2]})
        assert unknown.status_code == 422 and "unknown task(s) ['tone']" in unknown.json()["error"]
        metadata = client.get("/metadata").json()
        assert list(metadata["tasks"]) == ["sentiment", "topic", "everything"] and metadata["exit_layer"] == 3
        explained = client.post("/explain", json={"text": NEW_TEXTS[0]}).json()
        assert set(explained["tasks"]) == set(models)


def test_stc_export_of_a_bundle_is_one_graph_whose_tasks_match_torch(models, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from stc.runtimes import load_predictor
    from stc.serving import create_app

    Bundle.from_models(models).save(tmp_path / "bundle")
    assert main(["export", str(tmp_path / "bundle"), "--out", str(tmp_path / "onnx")]) == 0
    document = json.loads((tmp_path / "onnx" / "stc_onnx.json").read_text())
    union = Bundle.from_models(models).union_columns
    assert document["format_version"] == 3 and list(document["tasks"]) == list(models)
    assert sum(map(len, document["kept_columns"].values())) == sum(map(len, union.values()))  # one graph, the union
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    predictor = load_predictor(tmp_path / "onnx", runtime="onnx")
    onnx = predictor.predict_proba(NEW_TEXTS)
    for name, clf in models.items():
        np.testing.assert_allclose(onnx[name], clf.predict_proba(NEW_TEXTS), atol=1e-4)
    # stc predict on the export: one row per text with every task, as on the bundle itself; the bundle's own
    # directory with --runtime onnx is refused, naming the export to make
    (tmp_path / "texts.txt").write_text("\n".join(NEW_TEXTS) + "\n")
    assert main(["predict", str(tmp_path / "onnx"), "--runtime", "onnx", "--data", str(tmp_path / "texts.txt"),
                 "--out", str(tmp_path / "out.jsonl"), "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["text"] for row in rows] == NEW_TEXTS
    for name, clf in models.items():
        got = np.array([[row["tasks"][name]["probabilities"][str(c)] for c in clf.classes_] for row in rows])
        np.testing.assert_allclose(got, clf.predict_proba(NEW_TEXTS), atol=1e-4)
    assert [row["tasks"]["topic"]["label"] for row in rows] == models["topic"].predict(NEW_TEXTS).tolist()
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "bundle"), "--runtime", "onnx", "--data", str(tmp_path / "texts.txt"),
                 "--out", str(tmp_path / "refused.jsonl"), "--quiet"]) == 2
    assert "stc export BUNDLE_DIR" in capsys.readouterr().err
    with TestClient(create_app(lambda: predictor)) as client:
        answer = client.post("/predict?tasks=topic", json={"texts": NEW_TEXTS[:2]}).json()["predictions"]
        assert [row["tasks"]["topic"]["label"] for row in answer] == models["topic"].predict(NEW_TEXTS[:2]).tolist()
        assert list(client.get("/metadata").json()["tasks"]) == list(models)
    # a task's head swapped for another's is refused by its hash
    (tmp_path / "onnx" / "tasks" / "topic" / "head.safetensors").write_bytes(
        (tmp_path / "onnx" / "tasks" / "sentiment" / "head.safetensors").read_bytes())
    with pytest.raises(ValueError, match="is not the head that was exported"):
        load_predictor(tmp_path / "onnx", runtime="onnx")
