"""stc.data with label sets (multi-label data): reading them from files, the dataset type, splits and subsamples.

The offline multi-label corpus ``films`` is tested with the other corpora in ``test_data.py``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stc.data import Split, TextDataset, load_dataset, read_labelled_file, stratified_split
from stc.data._splits import stratified_subsample

from ._helpers import write_table

GENRES = ["Comedy;Drama", "Drama", "Comedy; Romance;", "Action;Comedy;Action", "Drama;Romance", "Action"]
GENRE_SETS = [("Comedy", "Drama"), ("Drama",), ("Comedy", "Romance"), ("Action", "Comedy"), ("Drama", "Romance"),
              ("Action",)]


def tagged(n_texts: int, seed: int = 0, *, empty: bool = False) -> tuple[list[str], list[tuple[str, ...]]]:
    """Texts with planted label sets: four labels of falling frequency and one rare label; a text that draws none
    carries "drama" unless ``empty`` (a CSV cell cannot hold the empty set)."""
    rng = np.random.default_rng(seed)
    prevalence = {"drama": 0.5, "comedy": 0.3, "crime": 0.15, "war": 0.06, "music": 0.015}
    label_sets = [tuple(sorted(name for name, p in prevalence.items() if rng.random() < p)) for _ in range(n_texts)]
    if not empty:
        label_sets = [names or ("drama",) for names in label_sets]
    return [f"film {i}" for i in range(n_texts)], label_sets


def multilabel_file(path: Path, label_sets, split=None) -> Path:
    """A file whose label column holds ``;``-joined label sets (JSON lists in .jsonl)."""
    labels = [list(names) if path.suffix == ".jsonl" else ";".join(names) for names in label_sets]
    columns = {"text": [f"film {i}" for i in range(len(label_sets))], "label": labels}
    return write_table(path, {**columns, **({"split": split} if split else {})})


# --- reading label sets from files ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_a_separator_splits_each_label_into_a_sorted_set_without_spaces_empties_or_repeats(tmp_path, suffix):
    path = write_table(tmp_path / f"films{suffix}", {"text": [f"t{i}" for i in range(6)], "label": GENRES})
    assert read_labelled_file(path, label_separator=";").labels == GENRE_SETS


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_a_list_in_the_label_field_is_a_label_set_without_a_separator(tmp_path, suffix):
    lists = [["Drama", "Comedy"], ["Drama"], [], [" War ", "War"]]
    path = write_table(tmp_path / f"films{suffix}", {"text": ["a", "b", "c", "d"], "label": lists})
    assert read_labelled_file(path).labels == [("Comedy", "Drama"), ("Drama",), (), ("War",)]


def test_a_jsonl_label_column_mixing_lists_and_plain_labels_is_one_error_naming_both_lines(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"text": "a", "label": ["x", "y"]}\n{"text": "b", "label": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"mixes label sets and plain labels: .*line 1 holds the list \['x', 'y'\], "
                                         r".*line 2 the str 'x'") as raised:
        read_labelled_file(path)
    assert "\n" not in str(raised.value)


def test_a_missing_label_beside_lists_is_named_as_missing(tmp_path):
    path = tmp_path / "missing.jsonl"
    path.write_text('{"text": "a", "label": ["x"]}\n{"text": "b", "label": null}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: the label is missing \(None\)"):
        read_labelled_file(path)


@pytest.mark.parametrize(("label", "problem"), [(["x", 3], r"strings only, got int 3"),
                                                (["x", " "], r"holds an empty label")])
def test_a_label_set_that_is_not_a_list_of_names_names_the_line(tmp_path, label, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "a", "label": label}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1: .*" + problem):
        read_labelled_file(path)


def test_a_label_of_nothing_but_separators_names_the_row(tmp_path):
    path = write_table(tmp_path / "f.csv", {"text": ["a", "b"], "label": ["x;y", " ; "]})
    with pytest.raises(ValueError, match=r"row 2 \(line 3\): the label ' ; ' holds no label name"):
        read_labelled_file(path, label_separator=";")


@pytest.mark.parametrize("separator", ["", 3])
def test_the_separator_must_be_a_non_empty_string(tmp_path, separator):
    path = write_table(tmp_path / "f.csv", {"text": ["a"], "label": ["x"]})
    with pytest.raises(ValueError, match="label_separator must be a non-empty string"):
        read_labelled_file(path, label_separator=separator)


def test_a_separator_that_no_label_contains_is_a_warning_and_each_text_gets_one_label(tmp_path, caplog):
    path = write_table(tmp_path / "f.csv", {"text": ["a", "b", "c"], "label": ["x", "y", "x"]})
    with caplog.at_level(logging.WARNING, logger="stc.data"):
        split = read_labelled_file(path, label_separator="|")
    assert split.labels == [("x",), ("y",), ("x",)]
    assert "no label in column 'label' contains the label separator '|'" in caplog.text
    assert "--label-separator" in caplog.text


def test_a_separator_that_labels_contain_gives_no_warning(tmp_path, caplog):
    path = write_table(tmp_path / "f.csv", {"text": ["a", "b", "c"], "label": ["x", "x|y", "y"]})
    with caplog.at_level(logging.WARNING, logger="stc.data"):
        read_labelled_file(path, label_separator="|")
    assert caplog.text == ""


@pytest.mark.parametrize("separator", [";", "|", ","])
def test_a_single_label_read_of_tag_sets_warns_and_names_the_option(tmp_path, caplog, separator):
    labels = [label.replace(";", separator) for label in GENRES]
    path = write_table(tmp_path / "f.csv", {"text": [f"t{i}" for i in range(6)], "label": labels})
    with caplog.at_level(logging.WARNING, logger="stc.data"):
        split = read_labelled_file(path)
    assert split.labels == labels  # still read as one class each: a warning, not a change
    assert f"4 of 6 labels in column 'label' contain {separator!r}" in caplog.text
    assert f"--label-separator {separator!r}" in caplog.text and "\n" not in caplog.messages[0]


def test_a_single_label_read_whose_labels_seldom_hold_a_separator_does_not_warn(tmp_path, caplog):
    labels = ["positive", "negative", "mixed, mostly positive", "positive"]  # 1 of 4: a label, not a tag set
    path = write_table(tmp_path / "f.csv", {"text": list("abcd"), "label": labels})
    with caplog.at_level(logging.WARNING, logger="stc.data"):
        read_labelled_file(path)
    assert caplog.text == ""


# --- load_dataset / load_file_dataset with label sets ----------------------------------------------------------


def test_a_file_of_label_sets_is_a_multilabel_dataset_split_80_10_10_and_scored_with_micro_f1(tmp_path):
    texts, label_sets = tagged(500)
    dataset = load_dataset(multilabel_file(tmp_path / "films.csv", label_sets), label_separator=";")
    assert dataset.multilabel and dataset.metric == "micro_f1"
    assert dataset.classes == ["comedy", "crime", "drama", "music", "war"]
    assert "an iteratively stratified 80/10/10" in dataset.description
    parts = (dataset.train, dataset.validation, dataset.test)
    assert sorted(t for part in parts for t in part.texts) == sorted(texts)
    assert abs(len(dataset.test) - 50) <= 5
    everything = Counter(name for names in label_sets for name in names)
    for part, fraction in zip(parts, (0.8, 0.1, 0.1)):
        assert all(abs(part.label_counts().get(name, 0) - fraction * n) < 1 for name, n in everything.items())


def test_a_label_every_text_carries_is_an_error_naming_it(tmp_path):
    label_sets = [("film", "drama"), ("film",), ("comedy", "film")] * 10
    with pytest.raises(ValueError, match=r"label 'film' is carried by every text \(30 of 30\)"):
        load_dataset(multilabel_file(tmp_path / "f.csv", label_sets), label_separator=";")


def test_a_label_no_training_text_carries_is_an_error_naming_it(tmp_path):
    label_sets = [("drama",), ("comedy",)] * 10 + [("war",), ("drama", "war")]
    split = ["train"] * 20 + ["test"] * 2
    with pytest.raises(ValueError, match=r"label 'war' is carried by no training text \(only by 2 validation or "
                                         r"test texts\)"):
        load_dataset(multilabel_file(tmp_path / "f.jsonl", label_sets, split))


def test_a_label_every_training_text_carries_is_an_error_naming_it(tmp_path):
    label_sets = [("drama",), ("comedy", "drama")] * 10 + [("comedy",)] * 4
    split = ["train"] * 20 + ["validation"] * 2 + ["test"] * 2
    with pytest.raises(ValueError, match=r"label 'drama' is carried by every training text \(20 of 20\)"):
        load_dataset(multilabel_file(tmp_path / "f.csv", label_sets, split), label_separator=";")


def test_multilabel_splits_are_deterministic_and_ignore_the_row_order(tmp_path):
    rows = list(zip(*tagged(300)))

    def load(name: str, rows: list, seed: int = 3) -> TextDataset:
        columns = {"text": [text for text, _ in rows], "label": [";".join(names) for _, names in rows]}
        return load_dataset(write_table(tmp_path / name, columns), label_separator=";", seed=seed)

    forward, again, backward = load("f.csv", rows), load("f.csv", rows), load("b.csv", rows[::-1])
    for part in ("train", "validation", "test"):
        assert getattr(forward, part).texts == getattr(again, part).texts == getattr(backward, part).texts
        assert getattr(forward, part).labels == getattr(backward, part).labels
    assert set(forward.test.texts) != set(load("f.csv", rows, seed=4).test.texts)


def test_limit_caps_each_multilabel_split_exactly_keeping_label_shares(tmp_path):
    _, label_sets = tagged(2000)
    dataset = load_dataset(multilabel_file(tmp_path / "f.csv", label_sets), label_separator=";", limit=100)
    assert [len(part) for part in (dataset.train, dataset.validation, dataset.test)] == [100, 100, 100]
    share = Counter(name for names in label_sets for name in names)
    for name in ("drama", "comedy", "crime"):
        assert abs(dataset.train.label_counts()[name] - 100 * share[name] / 2000) <= 2
    assert "capped at 100 texts (iteratively stratified" in dataset.description
    assert load_dataset(multilabel_file(tmp_path / "f.csv", label_sets), label_separator=";",
                        limit=100).train.texts == dataset.train.texts


def test_a_separator_for_a_named_dataset_is_refused():
    with pytest.raises(ValueError, match=r"label_separator \(--label-separator\) is for files.*'films' \(its labels "
                                         r"are label sets already\)"):
        load_dataset("films", label_separator=";")


# --- the dataset type and the splits -------------------------------------------------------------------------------


def test_a_dataset_of_label_sets_says_it_is_multilabel_and_counts_each_label():
    train = Split(["a", "b", "c"], [("drama",), ("comedy", "drama"), ()])
    dataset = TextDataset("films", train, None, Split(["d"], [("war",)]), "micro_f1", "planted")
    assert dataset.multilabel and dataset.classes == ["comedy", "drama", "war"]
    assert train.label_counts() == {"comedy": 1, "drama": 2}
    single = TextDataset("mr", Split(["a", "b"], ["pos", "neg"]), None, None, "accuracy", "planted")
    assert not single.multilabel and single.classes == ["neg", "pos"]


@pytest.mark.parametrize(("labels", "problem"), [
    ([("drama",), "drama"], r"train mixes label sets and plain labels: labels\[0\] is \('drama',\), labels\[1\]"),
    ([("drama", "comedy")], r"labels\[0\] is \('drama', 'comedy'\); a label set is a tuple of distinct"),
    ([("drama", "drama")], r"a label set is a tuple of distinct"),
    ([(" drama",)], r"a label set is a tuple of distinct, non-blank, stripped"),
    ([(1, 2)], r"a label set is a tuple of distinct"),
])
def test_a_label_set_that_is_not_canonical_is_refused(labels, problem):
    with pytest.raises(ValueError, match=problem):
        TextDataset("x", Split(["t"] * len(labels), labels), None, None, "micro_f1", "")


def test_splits_of_different_kinds_are_refused():
    with pytest.raises(ValueError, match=r"mixes label sets and plain labels across its splits \(train: label sets, "
                                         r"test: plain labels\)"):
        TextDataset("x", Split(["a"], [("drama",)]), None, Split(["b"], ["drama"]), "micro_f1", "")


@pytest.mark.parametrize(("labels", "metric", "allowed"), [
    ([("drama",)], "accuracy", r"\('micro_f1', 'macro_f1'\) for a multi-label"),
    (["drama"], "micro_f1", r"\('accuracy', 'macro_f1'\) for a single-label"),
])
def test_the_metric_must_suit_the_kind_of_dataset(labels, metric, allowed):
    with pytest.raises(ValueError, match=allowed):
        TextDataset("x", Split(["a"], labels), None, None, metric, "")


@settings(max_examples=40, deadline=None)
@given(n_texts=st.integers(3, 120), seed=st.integers(0, 2**32 - 1))
def test_stratified_split_of_label_sets_is_a_partition_keeping_each_text_with_its_set(n_texts, seed):
    texts, label_sets = tagged(n_texts, seed % 1000, empty=True)
    parts = stratified_split(texts, label_sets, (0.7, 0.1, 0.2), seed)
    assert sorted(t for part in parts for t in part.texts) == sorted(texts)
    assert all(label_sets[int(t.split()[1])] == y for part in parts for t, y in zip(part.texts, part.labels))


def test_stratified_split_of_label_sets_keeps_each_label_share_better_than_chance():
    texts, label_sets = tagged(1000, seed=1)
    train, validation, test = stratified_split(texts, label_sets, (0.7, 0.1, 0.2), seed=0)
    counts = Counter(name for names in label_sets for name in names)
    for part, fraction in ((train, 0.7), (validation, 0.1), (test, 0.2)):
        assert all(abs(part.label_counts().get(name, 0) - fraction * n) < 1 for name, n in counts.items())


def test_subsample_of_label_sets_hits_the_limit_exactly_for_any_limit():
    texts, label_sets = tagged(97, empty=True)
    split = Split(texts, label_sets)
    for limit in (1, 2, 10, 50, 96):
        kept = stratified_subsample(split, limit, seed=0)
        assert len(kept) == limit and set(kept.texts) <= set(texts)
        assert kept.texts == [t for t in texts if t in set(kept.texts)]  # in the split's order
