"""The stc command: fit, predict, evaluate, info, extract, demo, and one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from stc.cli import main

FAST = ["--quiet", "--max-length", "64"]


@pytest.fixture(scope="module")
def data_files(tmp_path_factory, mr_small):
    folder = tmp_path_factory.mktemp("cli-data")
    train = folder / "train.csv"
    with open(train, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "polarity", "split"])
        for split, part in (("train", mr_small.train), ("validation", mr_small.validation), ("test", mr_small.test)):
            for text, label in zip(part.texts[:100], part.labels[:100]):
                writer.writerow([text, label, split])
    unlabelled = folder / "new.txt"
    unlabelled.write_text("\n".join(mr_small.test.texts[:12]) + "\n", encoding="utf-8")
    return folder, train, unlabelled


@pytest.fixture(scope="module")
def model_dir(data_files, tmp_path_factory):
    folder, train, _ = data_files
    out = tmp_path_factory.mktemp("cli-model") / "model"
    code = main(["fit", "--data", str(train), "--text-column", "sentence", "--label-column", "polarity",
                 "--out", str(out), "--store-dir", str(folder / "stores"), "--poolings", "mean,max",
                 "--etas", "0.1,0.5", "--probe-Cs", "0.1,1", "--final-Cs", "1", *FAST])
    assert code == 0
    return out


def test_fit_saves_a_model_that_info_describes(model_dir, capsys):
    assert (model_dir / "stc_model.json").is_file()
    assert main(["info", str(model_dir)]) == 0
    printed = capsys.readouterr().out
    assert "exit layer:" in printed and "kept neurons:" in printed and "negative" in printed
    assert "candidates; the best 5 by held-out accuracy (* the chosen one):" in printed
    chosen = [line for line in printed.splitlines() if line.startswith("  * ")]
    assert len(chosen) == 1  # the chosen candidate is shown, marked once


def test_predict_writes_jsonl_and_csv_with_probabilities(model_dir, data_files, tmp_path):
    _, _, unlabelled = data_files
    assert main(["predict", str(model_dir), "--data", str(unlabelled), "--out", str(tmp_path / "p.jsonl"),
                 "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 12
    assert rows[0]["label"] in ("negative", "positive")
    assert abs(sum(rows[0]["probabilities"].values()) - 1.0) < 1e-6
    assert main(["predict", str(model_dir), "--data", str(unlabelled), "--out", str(tmp_path / "p.csv"),
                 "--quiet"]) == 0
    with open(tmp_path / "p.csv", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 12 and set(table[0]) == {"text", "label", "p_negative", "p_positive"}
    assert [row["label"] for row in table] == [row["label"] for row in rows]


def test_evaluate_prints_accuracy_and_macro_f1_from_one_pass_over_the_texts(model_dir, data_files, mr_small, capsys,
                                                                             monkeypatch):
    import stc.readout
    from stc import load
    from stc._metrics import score

    _, train, _ = data_files
    texts_seen = []
    extract = stc.readout.extract_features

    def counting_extract(backbone, texts, *args, **kwargs):
        texts_seen.extend(texts)
        return extract(backbone, texts, *args, **kwargs)

    monkeypatch.setattr(stc.readout, "extract_features", counting_extract)
    assert main(["evaluate", str(model_dir), "--data", str(train), "--text-column", "sentence",
                 "--label-column", "polarity", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["split"] == "test" and report["n"] == 100 and 0.5 < report["accuracy"] <= 1.0
    assert len(texts_seen) == 100  # the backbone ran once over the test texts, not once per metric
    truth = mr_small.test.labels[:100]
    predicted = load(model_dir).predict(mr_small.test.texts[:100])
    assert report["accuracy"] == round(score(truth, predicted, "accuracy"), 6)
    assert report["macro_f1"] == round(score(truth, predicted, "macro_f1"), 6)
    from stc.calibration import expected_calibration_error, log_loss

    proba = load(model_dir).predict_proba(mr_small.test.texts[:100])
    codes = np.searchsorted(load(model_dir).classes_, np.asarray(truth))
    assert report["ece"] == round(expected_calibration_error(proba, codes), 6)
    assert report["log_loss"] == round(log_loss(proba, codes), 6)


def test_fit_prints_the_expected_test_score_and_refuses_a_bad_cv(model_dir, data_files, tmp_path, capsys):
    assert main(["info", str(model_dir)]) == 0
    printed = capsys.readouterr().out
    assert "expected test accuracy:" in printed and "5-fold cross-validation" in printed
    _, train, _ = data_files
    assert main(["fit", "--data", str(train), "--text-column", "sentence", "--label-column", "polarity",
                 "--out", str(tmp_path / "m"), "--cv", "1", "--quiet"]) == 2
    assert "cv must be 'auto', None or an integer >= 2, got 1" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_fit_that_would_not_fit_in_memory_is_refused_in_one_line_naming_the_knob(model_dir, data_files, tmp_path,
                                                                                   capsys, monkeypatch):
    folder, train, _ = data_files
    monkeypatch.setenv("STC_MEMORY_LIMIT", "1MB")  # the store is already extracted: the probes are the first stage
    assert main(["fit", "--data", str(train), "--text-column", "sentence", "--label-column", "polarity",
                 "--out", str(tmp_path / "m"), "--store-dir", str(folder / "stores"), "--poolings", "mean,max",
                 "--etas", "0.1,0.5", "--probe-Cs", "0.1,1", "--final-Cs", "1", *FAST]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("stc: error: one probe of ") and "but 1 MiB is available" in error
    assert "representations" in error and "STC_MEMORY_LIMIT" in error
    assert not (tmp_path / "m").exists()


def test_evaluate_says_how_much_of_a_file_it_scored_and_all_scores_every_text(model_dir, data_files, mr_small,
                                                                              capsys):
    from stc import load
    from stc._metrics import score

    _, train, _ = data_files
    columns = ["--text-column", "sentence", "--label-column", "polarity", "--quiet"]
    assert main(["evaluate", str(model_dir), "--data", str(train), *columns]) == 0
    note = "the test split: 100 of the 300 texts read from the file (--split all scores every one)"
    assert note in capsys.readouterr().err
    assert main(["evaluate", str(model_dir), "--data", str(train), "--split", "all", *columns]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert report["split"] == "all" and report["n"] == 300 and "split:" not in captured.err
    texts = [t for part in (mr_small.train, mr_small.validation, mr_small.test) for t in part.texts[:100]]
    truth = [y for part in (mr_small.train, mr_small.validation, mr_small.test) for y in part.labels[:100]]
    assert report["accuracy"] == round(score(truth, load(model_dir).predict(texts), "accuracy"), 6)


def test_evaluate_refuses_labels_the_model_never_saw(model_dir, tmp_path, capsys):
    path = tmp_path / "other.csv"
    path.write_text("text,label\nfine film,neutral\nawful film,negative\n", encoding="utf-8")
    assert main(["evaluate", str(model_dir), "--data", str(path), "--split", "train", "--quiet"]) == 2
    assert "labels the model never saw: ['neutral']" in capsys.readouterr().err


def test_errors_are_one_line_and_a_nonzero_exit(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("stc: error:") and error.count("\n") == 1
    assert main(["fit", "--data", "no-such-dataset", "--out", str(tmp_path / "m")]) == 2
    assert "no-such-dataset" in capsys.readouterr().err


def test_a_label_column_of_joined_tags_without_the_separator_is_one_line_naming_it(tmp_path, capsys):
    path = tmp_path / "films.csv"
    genres = ["Comedy;Drama", "Drama;Horror", "Comedy;Horror", "Drama"]  # most labels hold ';'
    path.write_text("text,genres\n" + "".join(f"film {i},{genres[i % 4]}\n" for i in range(40)), encoding="utf-8")
    code = main(["fit", "--data", str(path), "--label-column", "genres", "--out", str(tmp_path / "model")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("stc: error:")]
    assert code == 2 and len(errors) == 1
    assert "looks like tag sets joined by ';'" in errors[0] and "--label-separator ';'" in errors[0]
    assert not (tmp_path / "model").exists()


def test_info_lists_the_multilabel_films_dataset(capsys):
    assert main(["info"]) == 0
    assert "  films: Films from Wikidata (CC0), multi-label" in capsys.readouterr().out


def test_extract_in_two_shards_completes_the_store(data_files, tiny_dir, tmp_path, capsys):
    _, train, _ = data_files
    common = ["extract", "--data", str(train), "--text-column", "sentence", "--label-column", "polarity",
              "--split", "train", "--model", tiny_dir, "--representations", "hidden", "--poolings", "mean",
              "--store-dir", str(tmp_path), "--token-budget", "256", "--shard-size", "30", *FAST]
    assert main(common + ["--shard", "1/2"]) == 0
    assert "shard 1/2 done" in capsys.readouterr().out
    assert main(common + ["--shard", "0/2"]) == 0
    assert "store complete" in capsys.readouterr().out


def test_python_dash_m_stc_help_runs():
    result = subprocess.run([sys.executable, "-m", "stc", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("fit", "predict", "evaluate", "extract", "info", "demo"):
        assert command in result.stdout


def test_demo_runs_on_a_small_slice(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--limit", "60", "--out", str(out), "--store-dir", str(tmp_path / "stores"),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "STC" in printed and "last-layer embedding" in printed and "exit layer" in printed
    summary = json.loads((out / "demo_summary.json").read_text())
    assert [row["method"] for row in summary["rows"]] == ["STC", "last-layer embedding"]
