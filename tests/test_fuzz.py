"""Property tests (hypothesis) of the model loader and the data readers on mutated and random input.

Example counts: stc_model.json field mutations 150, stc_model.json random bytes 60, arrays.safetensors byte flips
100, labelled CSV/TSV/JSONL from random rows 150, labelled files from random bytes 150, .txt texts 60 (670 in all).
A load either raises ValueError/TypeError or gives a model whose arrays fit together and whose predictions are
finite probabilities; a reader either raises ValueError or gives clean texts and one label per text.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stc
from stc import STCClassifier
from stc.data import read_labelled_file, read_texts

from ._helpers import LABELS, TEXTS, save_tiny, small_params


def fuzz_settings(examples: int):
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tiny_dir = save_tiny(tmp_path_factory.mktemp("tiny-bert"))
    clf = STCClassifier(tiny_dir, store_dir=str(tmp_path_factory.mktemp("stores")), max_length=32,
                        **small_params()).fit(TEXTS, LABELS)
    directory = tmp_path_factory.mktemp("saved") / "model"
    clf.save(directory)
    return directory


def _fresh_copy(saved: Path) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="stc-fuzz-")) / "model"
    shutil.copytree(saved, directory)
    return directory


def _check_loads_or_refuses(directory: Path, *, check_backbone: bool = True) -> None:
    """The property: a clear ValueError/TypeError, or a consistent model that predicts finite probabilities."""
    try:
        clf = stc.load(directory, check_backbone=check_backbone)
    except (ValueError, TypeError):
        return
    n_features = sum(len(columns) for columns in clf.kept_columns_.values())
    coef = clf.readout_.coef
    assert clf.n_features_ == n_features == coef.shape[1] == len(clf.kept_neurons_)
    assert coef.shape[0] == (1 if len(clf.classes_) == 2 else len(clf.classes_)) >= 1
    if not check_backbone:
        return
    try:
        probabilities = clf.predict_proba(["a good movie", "awful film"])
    except (ValueError, TypeError):
        return
    assert probabilities.shape == (2, len(clf.classes_))
    assert np.isfinite(probabilities).all()


# --- the model loader ---------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)
SECTIONS = ("params", "classes", "backbone", "extraction", "configuration")


@fuzz_settings(150)
@given(data=st.data())
def test_load_with_a_mutated_json_field_refuses_or_stays_consistent(saved, data):
    directory = _fresh_copy(saved)
    path = directory / "stc_model.json"
    document = json.loads(path.read_text())
    section = data.draw(st.sampled_from(("top",) + SECTIONS + ("kept_columns",)), label="section")
    value = data.draw(JSON_VALUES, label="value")
    if section == "top":
        document[data.draw(st.sampled_from(sorted(document)), label="field")] = value
    elif section == "kept_columns":
        document["kept_columns"][0] = value
    else:
        field = data.draw(st.sampled_from(sorted(document[section]) + ["unexpected"]), label="field")
        document[section][field] = value
    path.write_text(json.dumps(document))
    # a renamed backbone would be looked up on the hub; that path is covered by the unknown-model tests
    model_renamed = document.get("params", {}).get("model") != json.loads((saved / "stc_model.json").read_text()
                                                                             )["params"]["model"] \
        if isinstance(document.get("params"), dict) else False
    _check_loads_or_refuses(directory, check_backbone=not model_renamed)
    shutil.rmtree(directory.parent)


@fuzz_settings(60)
@given(content=st.binary(max_size=400) | st.text(max_size=400).map(lambda text: text.encode("utf-8")))
def test_load_with_random_bytes_as_its_json_refuses(saved, content):
    directory = _fresh_copy(saved)
    (directory / "stc_model.json").write_bytes(content)
    with pytest.raises((ValueError, TypeError)):
        stc.load(directory)
    shutil.rmtree(directory.parent)


@fuzz_settings(100)
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6),
       keep=st.floats(0.0, 1.0))
def test_load_with_damaged_arrays_refuses_or_stays_consistent(saved, flips, keep):
    directory = _fresh_copy(saved)
    path = directory / "arrays.safetensors"
    data = bytearray(path.read_bytes())
    for where, byte in flips:
        data[int(where * len(data))] = byte
    if keep < 0.2:  # sometimes also cut the file short
        data = data[:int(len(data) * keep * 5)]
    path.write_bytes(bytes(data))
    _check_loads_or_refuses(directory)
    shutil.rmtree(directory.parent)


# --- the data readers -----------------------------------------------------------------------------------------

CELLS = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", " ", "text", "label", "pos", "0", "1", '"', '""', ",", "\t", "\n", "\r\n", "NaN", "null"])


def _check_split_or_value_error(path: Path) -> None:
    try:
        split = read_labelled_file(path)
    except ValueError:
        return
    assert len(split.texts) == len(split.labels) >= 1
    assert all(isinstance(text, str) and text.strip() for text in split.texts)
    assert all(label is not None and label == label for label in split.labels)  # no None, no NaN


@fuzz_settings(150)
@given(header=st.lists(CELLS, min_size=0, max_size=4), rows=st.lists(st.lists(CELLS, max_size=4), max_size=6),
       suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]), use_real_header=st.booleans())
def test_reading_random_rows_gives_a_split_or_a_value_error(header, rows, suffix, use_real_header):
    if use_real_header:
        header = ["text", "label"] + header[:2]
    folder = Path(tempfile.mkdtemp(prefix="stc-fuzz-"))
    path = folder / f"data{suffix}"
    if suffix == ".jsonl":
        lines = [json.dumps(dict(zip(header, row))) if i % 3 else ",".join(row) for i, row in enumerate(rows)]
    else:
        delimiter = "," if suffix == ".csv" else "\t"
        lines = [delimiter.join(header)] + [delimiter.join(row) for row in rows]
    path.write_text("\n".join(lines), encoding="utf-8")
    _check_split_or_value_error(path)
    shutil.rmtree(folder)


@fuzz_settings(150)
@given(content=st.binary(max_size=300), prefix=st.sampled_from([b"", b"text,label\n", b"\xef\xbb\xbftext\tlabel\n",
                                                                b'{"text": "a", "label": 1}\n']),
       suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".parquet"]))
def test_reading_random_bytes_gives_a_split_or_a_value_error(content, prefix, suffix):
    folder = Path(tempfile.mkdtemp(prefix="stc-fuzz-"))
    path = folder / f"data{suffix}"
    path.write_bytes(prefix + content)
    _check_split_or_value_error(path)
    shutil.rmtree(folder)


@fuzz_settings(60)
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(lambda text: text.encode("utf-8", "replace")))
def test_reading_texts_to_classify_gives_clean_texts_or_a_value_error(content):
    folder = Path(tempfile.mkdtemp(prefix="stc-fuzz-"))
    path = folder / "new.txt"
    path.write_bytes(content)
    try:
        texts = read_texts(path)
    except ValueError:
        shutil.rmtree(folder)
        return
    assert texts and all(isinstance(text, str) and text.strip() for text in texts)
    shutil.rmtree(folder)
