"""Property tests (hypothesis) of the model loader and the data readers on mutated and random input.

Example counts: stc_model.json field mutations 150, stc_model.json random bytes 60, arrays.safetensors byte flips
100, labelled CSV/TSV/JSONL from random rows 3 x 50 and from rows of random words 3 x 20, labelled files from
random bytes 5 x 30, .txt texts 60 (730 in all).
A load either raises ValueError/TypeError or gives a model whose arrays fit together and whose predictions are
finite probabilities; a reader either raises ValueError or gives clean texts and one label per text.

Since refusing is always allowed, a loader or reader that refused everything would pass the property alone. So each
test first checks an untouched control (the saved model, a well-formed file) that must load, and counts what the
examples gave: both outcomes must occur, each often enough to show the property was exercised on both sides. Where
random input almost never loads (random bytes as a labelled file), the control is the loading side, or a second
property on well-formed random input is (random rows).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
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


def _check_loads_or_refuses(directory: Path, *, check_backbone: bool = True) -> str:
    """The property: a clear ValueError/TypeError ("refused"), or a consistent model that predicts finite
    probabilities ("loaded")."""
    try:
        clf = stc.load(directory, check_backbone=check_backbone)
    except (ValueError, TypeError):
        return "refused"
    n_features = sum(len(columns) for columns in clf.kept_columns_.values())
    coef = clf.readout_.head.coef
    assert clf.n_features_ == n_features == coef.shape[1] == len(clf.kept_neurons_)
    assert coef.shape[0] == (1 if len(clf.classes_) == 2 else len(clf.classes_)) >= 1
    if not check_backbone:
        return "loaded"
    try:
        probabilities = clf.predict_proba(["a good movie", "awful film"])
    except (ValueError, TypeError):
        return "refused"
    assert probabilities.shape == (2, len(clf.classes_))
    assert np.isfinite(probabilities).all()
    return "loaded"


def _assert_both_outcomes(outcomes: Counter, accepted: str, at_least: float) -> None:
    """Both outcomes occurred, each in at least a fraction ``at_least`` of the examples run."""
    runs = sum(outcomes.values())
    assert set(outcomes) <= {accepted, "refused"}, outcomes
    assert runs >= 20, f"only {runs} examples ran"
    assert outcomes[accepted] >= at_least * runs and outcomes["refused"] >= at_least * runs, outcomes


# --- the model loader ---------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)
SECTIONS = ("params", "classes", "backbone", "extraction", "configuration")


def _control(saved: Path) -> None:
    """The untouched copy loads and predicts: the fixture and the check can say "loaded" at all."""
    directory = _fresh_copy(saved)
    assert _check_loads_or_refuses(directory) == "loaded"
    shutil.rmtree(directory.parent)


def test_load_with_a_mutated_json_field_refuses_or_stays_consistent(saved):
    _control(saved)
    original_model = json.loads((saved / "stc_model.json").read_text())["params"]["model"]
    outcomes = Counter()

    @fuzz_settings(150)
    @given(data=st.data())
    def mutate(data):
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
        model_renamed = document.get("params", {}).get("model") != original_model \
            if isinstance(document.get("params"), dict) else False
        outcomes[_check_loads_or_refuses(directory, check_backbone=not model_renamed)] += 1
        shutil.rmtree(directory.parent)

    mutate()
    _assert_both_outcomes(outcomes, "loaded", 0.05)


def test_load_with_random_bytes_as_its_json_refuses(saved):
    _control(saved)
    outcomes = Counter()

    @fuzz_settings(60)
    @given(content=st.binary(max_size=400) | st.text(max_size=400).map(lambda text: text.encode("utf-8")))
    def replace_json(content):
        directory = _fresh_copy(saved)
        (directory / "stc_model.json").write_bytes(content)
        with pytest.raises((ValueError, TypeError)):
            stc.load(directory)
        outcomes["refused"] += 1
        shutil.rmtree(directory.parent)

    replace_json()
    assert outcomes["refused"] >= 20  # refusing is the whole property here; the control shows it is not a given


def test_load_with_damaged_arrays_refuses_or_stays_consistent(saved):
    _control(saved)
    outcomes = Counter()

    @fuzz_settings(100)
    @given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1,
                          max_size=6),
           keep=st.floats(0.0, 1.0), arrays_only=st.booleans())
    def damage(flips, keep, arrays_only):
        directory = _fresh_copy(saved)
        path = directory / "arrays.safetensors"
        data = bytearray(path.read_bytes())
        start = 0
        if arrays_only:  # the JSON header is most of a small model's file: flips anywhere seldom reach the numbers
            start, flips, keep = 8 + int.from_bytes(data[:8], "little"), flips[:1], 1.0
        for where, byte in flips:
            data[start + int(where * (len(data) - start))] = byte
        if keep < 0.2:  # sometimes also cut the file short
            data = data[:int(len(data) * keep * 5)]
        path.write_bytes(bytes(data))
        outcomes[_check_loads_or_refuses(directory)] += 1
        shutil.rmtree(directory.parent)

    damage()
    _assert_both_outcomes(outcomes, "loaded", 0.05)


# --- the data readers -----------------------------------------------------------------------------------------

CELLS = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", " ", "text", "label", "pos", "0", "1", '"', '""', ",", "\t", "\n", "\r\n", "NaN", "null"])
#: cells of rows that can be read: letters and digits, no delimiter or quote
WORDS = st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=12)


def _check_split_or_value_error(path: Path) -> str:
    """The property: a ValueError ("refused"), or a split of clean texts with one label each ("read")."""
    try:
        split = read_labelled_file(path)
    except ValueError:
        return "refused"
    assert len(split.texts) == len(split.labels) >= 1
    assert all(isinstance(text, str) and text.strip() for text in split.texts)
    assert all(label is not None and label == label for label in split.labels)  # no None, no NaN
    return "read"


def _write_rows(header: list[str], rows: list[list[str]], suffix: str, mangle: bool = False) -> Path:
    """A labelled file of ``rows`` under ``header`` (JSONL with ``mangle``: every third line, the first included,
    left as comma-joined cells)."""
    path = Path(tempfile.mkdtemp(prefix="stc-fuzz-")) / f"data{suffix}"
    if suffix == ".jsonl":
        lines = [",".join(row) if mangle and i % 3 == 0 else json.dumps(dict(zip(header, row)))
                 for i, row in enumerate(rows)]
    else:
        delimiter = "," if suffix == ".csv" else "\t"
        lines = [delimiter.join(header)] + [delimiter.join(row) for row in rows]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _write_bytes(content: bytes, name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="stc-fuzz-")) / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_reading_random_rows_gives_a_split_or_a_value_error(suffix):
    good = [["x", "y"], ["a fine film", "pos"], ["a dull one", "neg"], ["more of it", "pos"]]
    control = _write_rows(["text", "label"], good, suffix)  # through the writer of the examples: it must read
    assert _check_split_or_value_error(control) == "read"
    shutil.rmtree(control.parent)
    outcomes = Counter()

    @fuzz_settings(50)
    @given(header=st.lists(CELLS, min_size=0, max_size=4), rows=st.lists(st.lists(CELLS, max_size=4), max_size=6),
           use_real_header=st.booleans(), mangle=st.booleans())
    def read_rows(header, rows, use_real_header, mangle):
        if use_real_header:
            header = ["text", "label"] + header[:2]
        path = _write_rows(header, rows, suffix, mangle)
        outcomes[_check_split_or_value_error(path)] += 1
        shutil.rmtree(path.parent)

    # rows of random words under the real header: a reader must take every such file, texts and labels as written
    @fuzz_settings(20)
    @given(rows=st.lists(st.lists(WORDS, min_size=2, max_size=2), min_size=1, max_size=6))
    def read_clean_rows(rows):
        path = _write_rows(["text", "label"], rows, suffix)
        outcomes[_check_split_or_value_error(path)] += 1
        split = read_labelled_file(path)
        assert list(split.texts) == [row[0] for row in rows] and len(split.labels) == len(rows)
        shutil.rmtree(path.parent)

    read_rows()
    refused = outcomes["refused"]
    read_clean_rows()
    assert refused >= 0.25 * 50 and outcomes["read"] >= 20, outcomes


PREFIXES = [b"", b"text,label\n", b"\xef\xbb\xbftext\tlabel\n", b'{"text": "a", "label": 1}\n']


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_reading_random_bytes_gives_a_split_or_a_value_error(suffix):
    control = _write_bytes({".csv": b"text,label\nfine,1\n", ".tsv": b"text\tlabel\nfine\t1\n",
                            ".jsonl": b'{"text": "fine", "label": 1}\n', ".json": b'[{"text": "fine", "label": 1}]',
                            ".parquet": _parquet_bytes()}[suffix], f"data{suffix}")
    assert _check_split_or_value_error(control) == "read"
    shutil.rmtree(control.parent)
    outcomes = Counter()

    @fuzz_settings(30)
    @given(content=st.binary(max_size=300), prefix=st.sampled_from(PREFIXES))
    def read_bytes(content, prefix):
        path = _write_bytes(prefix + content, f"data{suffix}")
        outcomes[_check_split_or_value_error(path)] += 1
        shutil.rmtree(path.parent)

    read_bytes()
    # random bytes are almost never a labelled file: the control above is the side that reads
    assert sum(outcomes.values()) >= 25 and outcomes["refused"] >= 20, outcomes


def _parquet_bytes() -> bytes:
    import io

    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"text": ["fine"], "label": [1]}).to_parquet(buffer)
    return buffer.getvalue()


def test_reading_texts_to_classify_gives_clean_texts_or_a_value_error():
    control = _write_bytes(b"a first text\n\na second one\n", "new.txt")
    assert read_texts(control) == ["a first text", "a second one"]
    shutil.rmtree(control.parent)
    outcomes = Counter()

    @fuzz_settings(60)
    @given(content=st.binary(max_size=300) | st.text(max_size=300).map(lambda text: text.encode("utf-8", "replace")))
    def read(content):
        path = _write_bytes(content, "new.txt")
        try:
            texts = read_texts(path)
        except ValueError:
            outcomes["refused"] += 1
        else:
            assert texts and all(isinstance(text, str) and text.strip() for text in texts)
            outcomes["read"] += 1
        shutil.rmtree(path.parent)

    read()
    _assert_both_outcomes(outcomes, "read", 0.1)
