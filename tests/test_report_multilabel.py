"""The report of a multi-label model: per-label scores in place of the confusion matrix, each label's strongest
neurons, reliability pooled over (text, label) pairs, the embedding card, and ``stc report --label-separator``."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sklearn.metrics import f1_score, log_loss, precision_recall_fscore_support

import stc
from stc._multilabel import encode_label_sets
from stc.cli import main
from stc.data import Split, TextDataset
from stc.report import build_report

from ._helpers import FAST, planted_label_sets, planted_texts, write_table

#: the figures of a multi-label report: the confusion matrix gives way to per_label, label_neurons is added
ML_FIGURES = ("layer_curve", "kept_per_layer", "kept_vs_eta", "metric_vs_eta", "metric_vs_exit", "per_label",
              "reliability", "top_neurons", "label_neurons")


def label_set_dataset() -> TextDataset:
    train, validation, test = (planted_label_sets(n, seed) for n, seed in ((80, 0), (20, 2), (30, 1)))
    return TextDataset("planted-sets", Split(*train), Split(*validation), Split(*test), "micro_f1",
                       "planted keywords of 0 to 3 labels among filler words")


@pytest.fixture(scope="module")
def model_dir(tiny_dir, tmp_path_factory):
    """A saved tiny multi-label model fitted on the dataset's training label sets."""
    root = tmp_path_factory.mktemp("ml-model")
    train = label_set_dataset().train
    clf = stc.STCClassifier(tiny_dir, store_dir=str(root / "stores"), **FAST).fit(train.texts, train.labels)
    assert clf.readout_.multilabel
    clf.save(root / "model")
    return root / "model"


@pytest.fixture(scope="module")
def report(model_dir, tmp_path_factory):
    """(classifier, report directory, page text), built through the library call with the embedding baseline."""
    clf = stc.load(model_dir)
    clf.set_params(show_progress_bar=False)
    out = tmp_path_factory.mktemp("ml-report")
    page = build_report(clf, label_set_dataset(), out, top_k=6, texts_per_neuron=2)
    return clf, out, page.read_text()


def test_every_figure_the_page_references_is_written_with_its_json(report):
    _, out, page = report
    for name in ML_FIGURES:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        json.loads((out / f"{name}.json").read_text())
    assert not (out / "confusion_matrix.png").exists()
    # Every image on the page is one of them, each once; every JSON named in a caption exists.
    assert sorted(re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', page)) == sorted(ML_FIGURES)
    named = re.findall(r"Data: <code>([\w.]+\.json)</code>", page)
    assert sorted(named) == sorted(f"{name}.json" for name in ML_FIGURES)
    assert all((out / name).is_file() for name in named)
    assert re.findall(r"""(?:src|href)\s*=\s*["'](?!data:)""", page) == []  # still self-contained
    assert set(json.loads((out / "report.json").read_text())) >= {"per_label", "label_neurons", "reliability"}


def test_per_label_table_holds_every_label_and_the_multilabel_metrics(report):
    clf, out, page = report
    test = label_set_dataset().test
    truth = encode_label_sets(test.labels, len(test), classes=clf.classes_)[1]
    predicted = encode_label_sets(clf.predict(test.texts), len(test), classes=clf.classes_)[1]
    data = json.loads((out / "per_label.json").read_text())
    assert data["n"] == len(test) and data["split"] == "test"
    assert data["micro_f1"] == pytest.approx(f1_score(truth, predicted, average="micro"))
    assert data["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))
    assert data["subset_accuracy"] == pytest.approx(np.mean((truth == predicted).all(axis=1)))
    assert data["hamming_loss"] == pytest.approx(np.mean(truth != predicted))
    config = json.loads((out / "configuration.json").read_text())
    assert clf.metric_ == "micro_f1" and config["test_score"] == pytest.approx(data["micro_f1"])
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    assert list(data["per_label"]) == [str(c) for c in clf.classes_]
    for j, label in enumerate(clf.classes_):
        entry = data["per_label"][str(label)]
        assert [entry["f1"], entry["precision"], entry["recall"]] == pytest.approx([f1[j], precision[j], recall[j]])
        assert entry["support"] == support[j] and entry["predicted"] == predicted[:, j].sum()
        assert entry["threshold"] == pytest.approx(clf.readout_.head.thresholds[j])
        assert f"data-check='per-label' data-value='{label}'" in page  # a row per label ...
        for field in ("f1", "precision", "recall", "support", "threshold"):  # ... holding the JSON's numbers
            assert f'data-check="{field}-{label}" data-value="{entry[field]!r}"' in page
    for field in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"):
        assert f'data-check="{field}" data-value="{data[field]!r}"' in page
    assert "confusion matrix" not in page.lower() and "Labels (multi-label" in page


def test_each_labels_neurons_are_its_largest_weights_with_their_most_activating_text(report):
    clf, out, page = report
    data = json.loads((out / "label_neurons.json").read_text())
    coef = np.asarray(clf.readout_.head.coef)
    train = label_set_dataset().train
    features = clf.transform(train.texts)
    assert [entry["label"] for entry in data["labels"]] == clf.classes_.tolist()
    listed_rows = []
    for j, entry in enumerate(data["labels"]):
        listed = [n["feature"] for n in entry["neurons"]]
        assert len(listed) == len(set(listed)) == data["per_label"] == 5
        others = np.delete(np.abs(coef[j]), listed)
        # Each listed neuron outweighs every unlisted one in this label's row, in order, with its signed weight.
        sizes = [abs(n["weight"]) for n in entry["neurons"]]
        assert sizes == sorted(sizes, reverse=True) and min(sizes) >= others.max()
        for rank, neuron in enumerate(entry["neurons"], start=1):
            assert neuron["weight"] == pytest.approx(coef[j, neuron["feature"]])
            assert neuron["neuron"] == clf.kept_neurons_[neuron["feature"]]
            assert f"data-check='label-neuron-{entry['label']}-{rank}' data-value='{neuron['neuron']}'" in page
            top = neuron["top_text"]  # the training text with the largest pooled activation of this neuron
            assert top["activation"] == pytest.approx(features[:, neuron["feature"]].max(), rel=1e-4, abs=1e-5)
            assert top["label"] == list(train.labels[train.texts.index(top["text"])])
        listed_rows.append(listed)
    assert len({tuple(sorted(row)) for row in listed_rows}) > 1  # the labels do not all lean on the same neurons


def test_top_neurons_are_ranked_by_weights_pooled_over_labels(report):
    clf, out, page = report
    neurons = json.loads((out / "top_neurons.json").read_text())
    coef = np.asarray(clf.readout_.head.coef)
    assert [n["feature"] for n in neurons] == list(np.argsort(-np.sqrt((coef ** 2).sum(axis=0)), kind="stable")[:6])
    train = label_set_dataset().train
    for neuron in neurons:
        assert neuron["ranked_by"] == "their weights pooled over labels"
        assert neuron["weights"] == pytest.approx(dict(zip(clf.classes_.tolist(), coef[:, neuron["feature"]])))
        for text in neuron["top_texts"]:  # each text with its label set
            assert text["label"] == list(train.labels[train.texts.index(text["text"])])
    assert "Ranked by their weights pooled over labels" in page


def test_reliability_pools_every_text_label_pair(report):
    clf, out, page = report
    data = json.loads((out / "reliability.json").read_text())
    test = label_set_dataset().test
    truth = encode_label_sets(test.labels, len(test), classes=clf.classes_)[1].ravel()
    proba = clf.predict_proba(test.texts).ravel()
    assert data["n_pairs"] == len(truth) == 3 * len(test) and data["events"] == "binary events pooled over labels"
    (curve,) = data["curves"]  # no temperature for a multi-label model: one curve
    assert sum(b["count"] for b in curve["bins"]) == len(truth)
    bins = np.minimum((proba * 15).astype(int), 14)
    ece = sum((bins == b).sum() * abs(truth[bins == b].mean() - proba[bins == b].mean())
              for b in range(15) if (bins == b).any()) / len(truth)
    assert curve["ece"] == pytest.approx(ece, abs=1e-9)
    assert curve["log_loss"] == pytest.approx(log_loss(truth, proba), abs=1e-9)
    assert f'data-check="ece-0" data-value="{curve["ece"]!r}"' in page
    assert "Pooled over labels as binary events" in page
    assert set(curve["per_label_ece"]) == {str(c) for c in clf.classes_}


def test_embedding_card_is_a_score_or_says_it_is_not_available(report):
    _, out, page = report
    config = json.loads((out / "configuration.json").read_text())
    if config.get("embedding_unavailable"):  # the baseline does not fit label sets
        assert config["embedding_val_score"] is None and "not available for multi-label models yet" in page
    else:
        assert 0.0 <= config["embedding_val_score"] <= 1.0
        assert json.loads((out / "layer_curve.json").read_text())["embedding"]["val_score"] == \
            config["embedding_val_score"]


def test_a_baseline_that_refuses_label_sets_gives_a_note_and_stale_figures_go(model_dir, tmp_path, monkeypatch):
    import stc.report

    def refuse(*args, **kwargs):
        raise TypeError("labels must be hashable scalars")

    monkeypatch.setattr(stc.report, "embedding_baseline", refuse)
    (tmp_path / "confusion_matrix.png").write_bytes(b"\x89PNG left by a single-label report")
    clf = stc.load(model_dir)
    clf.set_params(show_progress_bar=False)
    page = build_report(clf, label_set_dataset(), tmp_path, top_k=2, texts_per_neuron=1).read_text()
    config = json.loads((tmp_path / "configuration.json").read_text())
    assert config["embedding_unavailable"].startswith("not available for multi-label models yet")
    assert "data-check='embedding_unavailable'" in page and config["embedding_val_score"] is None
    assert json.loads((tmp_path / "layer_curve.json").read_text())["embedding"] is None
    assert not (tmp_path / "confusion_matrix.png").exists() and 'alt="confusion_matrix"' not in page


def test_the_data_must_match_the_kind_of_model(model_dir, tmp_path):
    clf = stc.load(model_dir)
    texts, labels = planted_texts(2)
    single = TextDataset("planted-2", Split(texts, labels), None, None, "accuracy", "one label per text")
    with pytest.raises(ValueError, match="label-separator"):
        build_report(clf, single, tmp_path / "out", fit_embedding=False)
    train = label_set_dataset().train
    unknown = TextDataset("sets", Split(train.texts, [("bad", "new")] + list(train.labels[1:])), None, None,
                          "micro_f1", "")
    with pytest.raises(ValueError, match="never seen"):
        build_report(clf, unknown, tmp_path / "out", fit_embedding=False)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_cli_report_reads_label_sets_with_a_separator_or_from_json_lists(model_dir, tmp_path, capsys):
    dataset = label_set_dataset()
    columns = {"text": [], "label": [], "split": []}
    for name, split in (("train", dataset.train), ("validation", dataset.validation), ("test", dataset.test)):
        columns["text"] += split.texts
        columns["split"] += [name] * len(split)
        columns["label"] += list(split.labels)
    csv = write_table(tmp_path / "sets.csv", {**columns, "label": [";".join(labels) for labels in columns["label"]]})
    jsonl = write_table(tmp_path / "sets.jsonl", {**columns, "label": [list(labels) for labels in columns["label"]]})
    for data, extra in ((csv, ["--label-separator", ";"]), (jsonl, [])):
        out = tmp_path / f"out-{data.suffix[1:]}"
        assert main(["report", str(model_dir), "--out", str(out), "--data", str(data), "--no-embedding",
                     "--top-k", "3", "--texts-per-neuron", "1", "--quiet", *extra]) == 0
        assert "report written to" in capsys.readouterr().out
        per_label = json.loads((out / "per_label.json").read_text())
        assert list(per_label["per_label"]) == ["bad", "good", "odd"] and per_label["n"] == len(dataset.test)
    # Without the separator "bad;good" is one label (and an empty cell no label at all): refused, naming the flag.
    keep = [i for i, labels in enumerate(columns["label"]) if labels]
    rows = {**columns, "label": [";".join(labels) for labels in columns["label"]]}
    joined = write_table(tmp_path / "joined.csv", {name: [values[i] for i in keep] for name, values in rows.items()})
    assert main(["report", str(model_dir), "--out", str(tmp_path / "o3"), "--data", str(joined), "--no-embedding",
                 "--quiet"]) == 2
    assert "--label-separator" in capsys.readouterr().err
