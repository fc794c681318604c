"""ONNX export: fp32 parity with torch on every family, int8, the head in numpy, and refusals of bad inputs."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from sklearn.exceptions import NotFittedError

import stc
from stc.cli import main
from stc.export import OnnxPredictor, export_onnx
from stc.head import LinearHead
from stc.heads import MLPHead
from stc.predictor import TorchPredictor
from stc.runtimes import load_predictor
from stc.serving import create_app

from ._helpers import FAMILIES, NEW_TEXTS, fit_tiny, keep_every_site, planted_texts, save_tiny

# Encoders stop one block early (the graph is cut); decoders keep every block (the final norm is applied).
_LAYERS = {"gpt2": 3, "bert": 2, "distilbert": 2, "roberta": 2, "llama": 3}
_CLASSES = {"gpt2": 2, "bert": 3, "distilbert": 2, "roberta": 2, "llama": 3}


@pytest.fixture(scope="module")
def fitted(tokenizer, tmp_path_factory):
    """family -> a fitted tiny model keeping neurons of every site up to its exit layer (built on first use)."""
    cache = {}

    def get(family: str) -> stc.STCClassifier:
        if family not in cache:
            model_dir = save_tiny(tmp_path_factory.mktemp(f"tiny-{family}"), family, tokenizer=tokenizer)
            clf = fit_tiny(model_dir, tmp_path_factory.mktemp("stores"), _CLASSES[family])
            cache[family] = keep_every_site(clf, _LAYERS[family])
        return cache[family]
    return get


@pytest.fixture(scope="module")
def exported(fitted, tmp_path_factory):
    """family -> the ONNX export of ``fitted(family)`` (made on first use)."""
    cache = {}

    def get(family: str) -> Path:
        if family not in cache:
            cache[family] = export_onnx(fitted(family), tmp_path_factory.mktemp("export") / f"{family}-onnx")
        return cache[family]
    return get


@pytest.fixture(scope="module")
def exported_bert(exported):
    return exported("bert")


@pytest.fixture
def graph_of(monkeypatch):
    """``graph_of(directory)``: later exports take their fp32 graph from that export (of the same backbone and
    neurons) instead of tracing it again, which is most of an export's time. The rest of the export still runs,
    the check of the graph's features against torch's included."""
    from stc.export import _onnx

    def use(directory: Path) -> None:
        monkeypatch.setattr(_onnx, "_export_graph", lambda graph, inputs, path, opset_version: shutil.copyfile(
            directory / "model.onnx", path))
    return use


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_fp32_probabilities_equal_torch_for_every_family(family, fitted, exported):
    clf = fitted(family)
    predictor = OnnxPredictor(exported(family))
    expected = clf.predict_proba(NEW_TEXTS)
    np.testing.assert_allclose(predictor.predict_proba(NEW_TEXTS), expected, atol=1e-4, rtol=0)
    # the torch runtime is predict_proba itself: the same features through the same head
    assert np.array_equal(TorchPredictor(clf).predict_proba(NEW_TEXTS), expected)
    np.testing.assert_allclose(predictor.features(NEW_TEXTS), clf.transform(NEW_TEXTS), atol=1e-4, rtol=1e-4)
    assert predictor.head.plain_classes() == clf.classes_.tolist()
    # and the ONNX runtime's head is the model's, array for array
    for name in ("mean", "scale", "coef", "intercept"):
        assert np.array_equal(getattr(predictor.head, name), getattr(clf.readout_.head, name))


def test_the_graph_stops_at_the_exit_layer(exported_bert, fitted):
    from onnx import numpy_helper

    from stc.backbone import load_backbone

    graph = onnx.load(str(exported_bert / "model.onnx"))
    weights = sum(numpy_helper.to_array(t).size for t in graph.graph.initializer
                  if t.data_type == onnx.TensorProto.FLOAT)
    model = load_backbone(fitted("bert").model, device="cpu").model
    embeddings = sum(p.numel() for p in model.embeddings.parameters())
    block = sum(p.numel() for p in model.encoder.layer[0].parameters())
    # blocks 1-2 of 3 are in the graph, the third is not (the exporter folds a few small constants away)
    assert embeddings + 1.5 * block < weights < embeddings + 2.5 * block
    document = json.loads((exported_bert / "stc_onnx.json").read_text())
    assert document["exit_layer"] == 2 and document["quantization"] is None
    assert document["backbone"]["weights_sha256"] == fitted("bert").backbone_["weights_sha256"]
    assert len(document["kept_neurons"]) == LinearHead.from_files(exported_bert).n_features


@pytest.mark.parametrize("quantize", ["int8", "int8-ffn-out"])
def test_int8_export_is_quantised_and_stays_close(quantize, fitted, exported_bert, graph_of, tmp_path):
    clf = fitted("bert")
    graph_of(exported_bert)  # quantised from the fp32 graph of the same model
    out = export_onnx(clf, tmp_path / "int8", quantize=quantize)
    fp32_matmuls = sum(node.op_type == "MatMul" for node in onnx.load(str(exported_bert / "model.onnx")).graph.node)
    nodes = onnx.load(str(out / "model.onnx")).graph.node
    quantised = sum(node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for node in nodes)
    # tiny BERT cut after block 2: 6 weight matrices per block, of which 1 is the FFN output projection
    assert quantised == (12 if quantize == "int8" else 2)
    assert sum(node.op_type == "MatMul" for node in nodes) == fp32_matmuls - quantised
    assert json.loads((out / "stc_onnx.json").read_text())["quantization"] == quantize
    texts, _ = planted_texts(3, per_class=8, seed=1)
    int8 = OnnxPredictor(out)
    np.testing.assert_allclose(int8.predict_proba(texts).sum(axis=1), 1.0, atol=1e-9)
    # Raw features stay close; the accuracy change is measured on the MR demo model in benchmarks/bench_export.py.
    correlation = np.corrcoef(int8.features(texts).ravel(), clf.transform(texts).ravel())[0, 1]
    assert correlation > 0.999


@pytest.mark.parametrize("family", ["distilbert", "llama"])  # two classes (sigmoid) and three (softmax)
def test_a_temperature_is_applied_by_every_runtime(family, fitted, exported, graph_of, tmp_path):
    """Needs ``predict_proba`` to divide the decision values by ``temperature_`` (issue 13, part 3)."""
    graph_of(exported(family))  # the temperature is in the head, not the graph
    clf = copy.deepcopy(fitted(family))
    clf.readout_ = replace(clf.readout_, head=replace(clf.readout_.head, temperature=2.0))
    decision = clf.decision_function(NEW_TEXTS)
    logits = (decision[:, None] if decision.ndim == 1 else decision) / 2.0
    if logits.shape[1] == 1:
        expected = np.hstack([1 / (1 + np.exp(logits)), 1 / (1 + np.exp(-logits))])
    else:
        expected = np.exp(logits - logits.max(axis=1, keepdims=True))
        expected /= expected.sum(axis=1, keepdims=True)
    onnx_predictor = OnnxPredictor(export_onnx(clf, tmp_path / "tempered"))
    assert onnx_predictor.head.temperature == 2.0
    for probabilities in (onnx_predictor.predict_proba(NEW_TEXTS), TorchPredictor(clf).predict_proba(NEW_TEXTS)):
        np.testing.assert_allclose(probabilities, expected, atol=1e-4, rtol=0)
    for predictor in (onnx_predictor, TorchPredictor(clf)):  # served by either runtime
        with TestClient(create_app(lambda: predictor)) as client:
            answer = client.post("/predict", json={"texts": NEW_TEXTS}).json()["predictions"]
            assert client.get("/metadata").json()["temperature"] == 2.0
        served = np.array([[row["probabilities"][str(c)] for c in clf.classes_] for row in answer])
        np.testing.assert_allclose(served, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(clf.predict_proba(NEW_TEXTS), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["distilbert", "llama"])  # two classes (sigmoid) and three (softmax)
def test_an_mlp_head_runs_in_the_onnx_export_as_in_torch(family, fitted, exported, graph_of, tmp_path):
    """The export applies the model's own head beside the graph: an MLP head (seeded random weights, 8 units) gives
    the torch runtime's probabilities within 1e-4, and the export reads it back as an MLP head, array for array."""
    graph_of(exported(family))  # the head is not in the graph
    clf = copy.deepcopy(fitted(family))
    head, rng = clf.readout_.head, np.random.default_rng(0)
    mlp = MLPHead(classes=head.classes, mean=head.mean, scale=head.scale, temperature=1.3,
                  hidden_coef=rng.normal(size=(8, head.n_features)), hidden_intercept=rng.normal(size=8),
                  coef=rng.normal(size=(head.coef.shape[0], 8)), intercept=rng.normal(size=head.coef.shape[0]))
    clf.readout_ = replace(clf.readout_, head=mlp, configuration={**clf.readout_.configuration, "head": "mlp"})
    expected = clf.predict_proba(NEW_TEXTS)
    assert not np.allclose(expected, fitted(family).predict_proba(NEW_TEXTS), atol=1e-3)  # another head indeed
    predictor = OnnxPredictor(export_onnx(clf, tmp_path / "mlp"))
    assert type(predictor.head) is MLPHead
    for name, array in mlp.arrays().items():
        assert np.array_equal(predictor.head.arrays()[name], array), name
    np.testing.assert_allclose(predictor.predict_proba(NEW_TEXTS), expected, atol=1e-4, rtol=0)
    assert np.array_equal(TorchPredictor(clf).predict_proba(NEW_TEXTS), expected)
    explanation = predictor.explain(NEW_TEXTS[0], top_k=3)
    assert explanation["local_linear"] is True and explanation["label"] in clf.classes_.tolist()


def test_export_of_an_unfitted_model_is_a_clear_error(tmp_path):
    with pytest.raises(NotFittedError):
        export_onnx(stc.STCClassifier("minilm"), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_export_refuses_a_backbone_that_is_not_the_fitted_one(fitted, tmp_path):
    clf = copy.deepcopy(fitted("bert"))
    clf.readout_ = replace(clf.readout_, backbone=replace(clf.readout_.backbone, sha256="0" * 64))
    with pytest.raises(ValueError, match="differ from the ones this model was fitted on"):
        export_onnx(clf, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("tamper", ["columns", "windows"])
def test_export_refuses_a_tampered_model(tamper, fitted, tmp_path):
    clf = copy.deepcopy(fitted("bert"))
    readout = clf.readout_
    if tamper == "columns":
        key = next(iter(readout.kept_columns))
        clf.readout_ = replace(readout, kept_columns={**readout.kept_columns, key: np.array([0, 1, 10_000])})
        message = "outside its"
    else:
        clf.readout_ = replace(readout, extraction=replace(readout.extraction, windows=True))
        message = "windows=True"
    with pytest.raises(ValueError, match=message):
        export_onnx(clf, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_readout_whose_head_does_not_fit_its_neurons_cannot_be_made(fitted):
    readout = fitted("bert").readout_
    with pytest.raises(ValueError, match="array logreg.coef must be"):
        replace(readout.head, coef=readout.head.coef[:, :-1])


def test_an_export_of_format_version_1_still_loads(fitted, exported_bert, tmp_path):
    """Version 1 held the head's arrays as JSON lists in stc_onnx.json; such a directory gives the same answers."""
    out = shutil.copytree(exported_bert, tmp_path / "v1")
    head = LinearHead.from_files(out)
    document = json.loads((out / "stc_onnx.json").read_text())
    document.pop("head_sha256")
    document.update(format_version=1, head={"classes": head.plain_classes(), "temperature": head.temperature,
                                            **{name: getattr(head, name).tolist()
                                               for name in ("mean", "scale", "coef", "intercept")}})
    (out / "stc_onnx.json").write_text(json.dumps(document))
    for name in ("head.json", "head.safetensors"):
        (out / name).unlink()
    assert np.array_equal(OnnxPredictor(out).predict_proba(NEW_TEXTS), OnnxPredictor(exported_bert).predict_proba(
        NEW_TEXTS))


@pytest.mark.parametrize("swap", ["tokenizer", "graph", "backbone", "json", "head"])
def test_an_export_refuses_a_tokenizer_or_backbone_mismatch(swap, exported_bert, tmp_path):
    out = shutil.copytree(exported_bert, tmp_path / "copy")
    expected_backbone = None
    if swap == "tokenizer":  # another vocabulary: the same ids would mean other words
        vocab = out / "tokenizer" / "tokenizer.json"
        document = json.loads(vocab.read_text())
        document["model"]["vocab"]["[unused1]"], document["model"]["vocab"]["[unused2]"] = \
            document["model"]["vocab"]["[unused2]"], document["model"]["vocab"]["[unused1]"]
        vocab.write_text(json.dumps(document))
        message = "not the tokenizer"
    elif swap == "graph":
        (out / "model.onnx").write_bytes((out / "model.onnx").read_bytes()[:-16] + b"\0" * 16)
        message = "not the graph"
    elif swap == "head":  # another head over the same neurons: other answers
        head = LinearHead.from_files(out)
        replace(head, coef=-head.coef).to_files(out)
        message = "not the head that was exported"
    elif swap == "backbone":
        expected_backbone = "f" * 64
        message = "exported from backbone weights"
    else:
        (out / "stc_onnx.json").write_text("{not json")
        message = "not valid JSON"
    with pytest.raises(ValueError, match=message):
        OnnxPredictor(out, backbone_sha256=expected_backbone)


def test_cli_export_then_predict_with_the_onnx_runtime(fitted, tmp_path, capsys):
    clf = fitted("bert")
    clf.save(tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    (tmp_path / "texts.txt").write_text("\n".join(NEW_TEXTS[:4]) + "\n")
    for runtime, model_dir in (("onnx", tmp_path / "onnx"), ("torch", tmp_path / "model")):
        out = tmp_path / f"{runtime}.jsonl"
        assert main(["predict", str(model_dir), "--data", str(tmp_path / "texts.txt"), "--out", str(out),
                     "--runtime", runtime, "--quiet"]) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        got = np.array([[row["probabilities"][c] for c in clf.classes_] for row in rows])
        np.testing.assert_allclose(got, clf.predict_proba(NEW_TEXTS[:4]), atol=1e-4, rtol=0)
    assert isinstance(load_predictor(tmp_path / "onnx", runtime="onnx"), OnnxPredictor)


def test_cli_export_and_onnx_predict_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
    assert "stc_model.json is missing" in capsys.readouterr().err
    (tmp_path / "texts.txt").write_text("one\n")
    assert main(["predict", str(tmp_path / "empty"), "--runtime", "onnx", "--data", str(tmp_path / "texts.txt"),
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "stc_onnx.json is missing" in capsys.readouterr().err
