"""Untrusted files: loading never runs code from them, and a tampered model directory is a clear error."""

from __future__ import annotations

import inspect
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import stc
import stc.backbone
from stc import STCClassifier

from ._helpers import LABELS, TEXTS, save_tiny, small_params

SOURCE = Path(stc.__file__).parent


@pytest.fixture(scope="module")
def saved(tiny_dir, tmp_path_factory):
    """A fitted two-class model saved once; each test tampers with its own copy."""
    clf = STCClassifier(tiny_dir, store_dir=str(tmp_path_factory.mktemp("stores")), **small_params())
    clf.fit(TEXTS, LABELS)
    directory = tmp_path_factory.mktemp("saved") / "model"
    clf.save(directory)
    return directory, clf


@pytest.fixture
def model_copy(saved, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(saved[0], directory)
    return directory


# --- no code execution --------------------------------------------------------------------------------------------

# Unpickling calls, pickle-based loaders, opt-ins to code from files, eval/exec; importing an exception is fine.
_UNSAFE = re.compile(r"\bpickle\.(load|loads|Unpickler)\b|from pickle import .*\b(load|loads|Unpickler)\b|"
                     r"cloudpickle|\bdill\b|joblib\.(load|dump)|torch\.load\(|allow_pickle\s*=\s*True|"
                     r"weights_only\s*=\s*False|trust_remote_code\s*=\s*True\s*[,)]|(?<![.\w])eval\(|(?<![.\w])exec\(")


def test_the_source_has_no_pickle_eval_or_remote_code():
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if _UNSAFE.search(code):
                found.append(f"{path.relative_to(SOURCE)}:{number}: {line.strip()}")
    assert found == []
    assert len(list(SOURCE.rglob("*.py"))) > 10  # the scan really read the package


def test_loading_and_predicting_never_unpickle(saved, monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("an unpickler was called")

    for target, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)
    stc.backbone.clear_backbone_cache()  # really read the backbone from disk, not the memory cache
    directory, clf = saved
    loaded = stc.load(directory)
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS[:4]), clf.predict_proba(TEXTS[:4]))


def test_trust_remote_code_is_off_by_default():
    from stc.baselines import EmbeddingClassifier
    from stc.cli import build_parser

    assert STCClassifier().trust_remote_code is False
    assert EmbeddingClassifier().get_params().get("trust_remote_code", False) is False
    assert inspect.signature(stc.backbone.load_backbone).parameters["trust_remote_code"].default is False
    assert "trust-remote-code" not in build_parser().format_help()


def _marker_payload(marker: Path) -> str:
    return f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"


def test_a_model_with_custom_code_is_refused_without_running_it(tiny_dir, tmp_path):
    evil = tmp_path / "evil-model"
    shutil.copytree(tiny_dir, evil)
    marker = tmp_path / "code-ran"
    config = json.loads((evil / "config.json").read_text())
    config.update(model_type="evil-net", auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                                                   "AutoModel": "modeling_evil.EvilModel"})
    (evil / "config.json").write_text(json.dumps(config))
    for module in ("configuration_evil.py", "modeling_evil.py"):
        (evil / module).write_text(_marker_payload(marker))
    with pytest.raises(ValueError, match="cannot load model"):
        stc.backbone.load_backbone(str(evil), device="cpu")
    with pytest.raises(ValueError, match="cannot load model"):
        STCClassifier(str(evil), **small_params()).fit(TEXTS, LABELS)
    assert not marker.exists()


def test_a_model_file_cannot_switch_on_remote_code(saved, tiny_dir, tmp_path):
    """A model directory whose JSON asks for trust_remote_code and points at a backbone with custom code."""
    evil = tmp_path / "evil-model"
    shutil.copytree(tiny_dir, evil)
    marker = tmp_path / "code-ran"
    config = json.loads((evil / "config.json").read_text())
    config.update(model_type="evil-net", auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                                                   "AutoModel": "modeling_evil.EvilModel"})
    (evil / "config.json").write_text(json.dumps(config))
    for module in ("configuration_evil.py", "modeling_evil.py"):
        (evil / module).write_text(_marker_payload(marker))
    directory = tmp_path / "model"
    shutil.copytree(saved[0], directory)
    _edit_json(lambda doc: doc["params"].update(trust_remote_code=True, model=str(evil)))(directory)
    with pytest.raises(ValueError, match="pass trust_remote_code=True to load only if you trust"):
        stc.load(directory)
    with pytest.raises(ValueError, match="trust_remote_code"):
        stc.load(directory, check_backbone=False)
    assert not marker.exists()


class _TouchOnUnpickle:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_backbone_weights_are_never_unpickled(saved, tiny_dir, tmp_path):
    """A model directory sent with a copied backbone whose weights are a pickle that runs code when loaded."""
    directory = tmp_path / "model"
    shutil.copytree(saved[0], directory)
    backbone = directory / "backbone"
    shutil.copytree(tiny_dir, backbone)
    (backbone / "model.safetensors").unlink()
    marker = tmp_path / "pickle-ran"
    with open(backbone / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"embeddings.word_embeddings.weight": _TouchOnUnpickle(marker)}, handle)
    path = directory / "stc_model.json"
    document = json.loads(path.read_text())
    document["backbone"]["copied"] = True
    path.write_text(json.dumps(document))
    stc.backbone.clear_backbone_cache()
    with pytest.raises(ValueError, match="cannot load"):
        stc.load(directory)
    assert not marker.exists()


# --- tampered or damaged model directories -------------------------------------------------------------------------

def _edit_json(edit):
    def apply(directory: Path) -> None:
        path = directory / "stc_model.json"
        document = json.loads(path.read_text())
        edit(document)
        path.write_text(json.dumps(document))
    return apply


def _edit_arrays(edit):
    def apply(directory: Path) -> None:
        arrays = load_file(str(directory / "arrays.safetensors"))
        edit(arrays)
        save_file(arrays, str(directory / "arrays.safetensors"))
    return apply


def _rename_key(directory: Path, new_key: str) -> None:
    """Move the first kept array to another (representation, layer, pooling), in the JSON and in the arrays."""
    old_key = {}
    _edit_json(lambda doc: (old_key.setdefault("name", doc["kept_columns"][0]),
                            doc["kept_columns"].__setitem__(0, new_key)))(directory)
    _edit_arrays(lambda a: a.update({f"columns.{new_key}": a.pop(f"columns.{old_key['name']}")}))(directory)


def _truncate(name: str, keep: float):
    def apply(directory: Path) -> None:
        data = (directory / name).read_bytes()
        (directory / name).write_bytes(data[:int(len(data) * keep)])
    return apply


TAMPERINGS = [  # (case, tampering, message fragment)
    ("config missing", lambda d: (d / "stc_model.json").unlink(), "stc_model.json is missing"),
    ("config truncated", _truncate("stc_model.json", 0.5), "is not valid JSON"),
    ("config not UTF-8", lambda d: (d / "stc_model.json").write_bytes(b'{"format": "\xff\xfe"}'), "not valid JSON"),
    ("config is a list", lambda d: (d / "stc_model.json").write_text("[1, 2]"), "not an stc model file"),
    ("format renamed", _edit_json(lambda doc: doc.update(format="other")), "not an stc model file"),
    ("format version from the future", _edit_json(lambda doc: doc.update(format_version=99)), "format version 99"),
    ("params not an object", _edit_json(lambda doc: doc.update(params=[1])), "'params' is missing or not a dict"),
    ("unknown parameter", _edit_json(lambda doc: doc["params"].update(evil=1)), "unexpected parameters"),
    ("one class only", _edit_json(lambda doc: doc["classes"].update(values=["pos"])), "at least two labels"),
    ("class values of the wrong type", _edit_json(lambda doc: doc["classes"].update(type="int")),
     "'classes' values are not all int"),
    ("kept key that is no feature", _edit_json(lambda doc: doc.update(kept_columns=["hidden.L1.median"])),
     "not a feature key"),
    ("kept key without its columns", _edit_json(lambda doc: doc["kept_columns"].append("ffn.L1.max")),
     "column indices of ffn.L1.max are missing"),
    ("layer deeper than the backbone", lambda d: _rename_key(d, "hidden.L9.mean"), "hidden.L9.mean"),
    ("arrays missing", lambda d: (d / "arrays.safetensors").unlink(), "arrays.safetensors cannot be read"),
    ("arrays truncated", _truncate("arrays.safetensors", 0.7), "arrays.safetensors cannot be read"),
    ("arrays replaced by junk", lambda d: (d / "arrays.safetensors").write_bytes(b"\x00" * 100), "cannot be read"),
    ("coef of the wrong shape", _edit_arrays(lambda a: a.update({"logreg.coef": np.zeros((3, 2))})),
     "array logreg.coef must be"),
    ("coef of an integer dtype", _edit_arrays(lambda a: a.update({"logreg.coef": a["logreg.coef"].astype(np.int32)})),
     "array logreg.coef must be finite float32/float64"),
    ("coef holds NaN", _edit_arrays(lambda a: a["logreg.coef"].__setitem__((0, 0), np.nan)), "array logreg.coef"),
    ("intercept missing", _edit_arrays(lambda a: a.pop("logreg.intercept")), "array logreg.intercept"),
    ("zero scale", _edit_arrays(lambda a: a["scale.scale"].__setitem__(0, 0.0)), "scale.scale must be positive"),
    ("float column indices", _edit_arrays(lambda a: a.update({k: v.astype(np.float64) for k, v in a.items()
                                                               if k.startswith("columns.")})),
     "are missing or not non-negative int64"),
    ("negative column index", _edit_arrays(lambda a: [v.__setitem__(0, -1) for k, v in a.items()
                                                      if k.startswith("columns.")]),
     "are missing or not non-negative int64"),
    ("column index past the layer width", _edit_arrays(lambda a: [v.__setitem__(0, 999) for k, v in a.items()
                                                                  if k.startswith("columns.")]),
     "column index 999"),
    ("copied backbone missing", _edit_json(lambda doc: doc["backbone"].update(copied=True)),
     "backbone/ copy is missing"),
    ("weights hash edited", _edit_json(lambda doc: doc["backbone"].update(weights_sha256="0" * 64)),
     "differ from the ones this model was fitted on"),
    ("exit layer not a number", _edit_json(lambda doc: doc["configuration"].update(exit_layer="two")), "exit_layer"),
    ("C not a number", _edit_json(lambda doc: doc["configuration"].update(C=None)), "'C'"),
    ("max_length not a number", _edit_json(lambda doc: doc["extraction"].update(max_length="long")), "max_length"),
    ("windows not a boolean", _edit_json(lambda doc: doc["extraction"].update(windows="yes")), "windows"),
    ("token budget negative", _edit_json(lambda doc: doc["params"].update(token_budget=-5)), "token_budget"),
    ("device unknown here", _edit_json(lambda doc: doc["params"].update(device="nosuchdevice")),
     "cannot load its backbone"),
    ("remote code switched on", _edit_json(lambda doc: doc["params"].update(trust_remote_code=True)),
     "trust_remote_code"),
]


@pytest.mark.parametrize("case, tamper, fragment", TAMPERINGS, ids=[t[0] for t in TAMPERINGS])
def test_a_tampered_model_directory_is_a_clear_error(case, tamper, fragment, model_copy):
    tamper(model_copy)
    with pytest.raises(ValueError) as raised:
        stc.load(model_copy)
    message = str(raised.value)
    assert fragment in message
    assert str(model_copy) in message  # says which model is damaged


def test_a_backbone_whose_weights_changed_on_disk_is_refused(tiny_dir, tmp_path):
    backbone = Path(save_tiny(tmp_path / "backbone", seed=0))
    clf = STCClassifier(str(backbone), store_dir=str(tmp_path / "stores"), **small_params()).fit(TEXTS, LABELS)
    clf.save(tmp_path / "model")
    save_tiny(backbone, seed=1)  # someone swapped the weights behind the same path
    stc.backbone.clear_backbone_cache()
    with pytest.raises(ValueError, match="differ from the ones this model was fitted on"):
        stc.load(tmp_path / "model")
