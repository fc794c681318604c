"""The experiment runner and its table writer, on tiny models and a planted dataset of a few dozen texts."""

from __future__ import annotations

import csv
import json

import pytest

from stc.experiment import ExperimentSettings, markdown_table, run_experiment, subsample, write_results

from ._helpers import planted_texts, save_tiny


@pytest.fixture(scope="module")
def runner_inputs(tmp_path_factory, tokenizer):
    """A CSV dataset with train/validation/test rows, a tiny BERT and a tiny Llama checkpoint."""
    root = tmp_path_factory.mktemp("runner")
    rows = []
    for split, n, seed in (("train", 16, 0), ("validation", 8, 1), ("test", 8, 2)):
        texts, labels = planted_texts(2, n, seed)
        rows += [(text, label, split) for text, label in zip(texts, labels)]
    with open(root / "planted.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "split"])
        writer.writerows(rows)
    save_tiny(root / "bert", tokenizer=tokenizer)
    save_tiny(root / "llama", "llama", causal_lm=True, tokenizer=tokenizer)
    return root


def settings_for(root, out, **overrides) -> ExperimentSettings:
    values = dict(dataset=str(root / "planted.csv"), model=str(root / "bert"), icl_model=str(root / "llama"),
                  methods=("stc", "embedding", "finetune", "stc-finetuned", "icl"), out=str(out),
                  work_dir=str(out / "work"), finetune_epochs=2, finetune_learning_rate=1e-3,
                  finetune_batch_size=8, max_length=32, probe_solver="liblinear", show_progress_bar=False,
                  command="test")
    values.update(overrides)
    return ExperimentSettings(**values)


def test_runner_writes_one_row_per_method_and_a_table_and_reproduces_its_metrics(runner_inputs, tmp_path):
    first = run_experiment(settings_for(runner_inputs, tmp_path / "a"))
    assert [row["method"] for row in first] == ["stc", "embedding", "finetune", "stc-finetuned", "icl"]
    for row in first:
        assert 0.0 <= row["test_score"] <= 1.0 and row["n_test"] == 16 and row["n_train"] == 32
        assert row["fit_seconds"] > 0 and row["test_texts_per_second"] > 0 and row["exit_layer"] >= 1
    by_method = {row["method"]: row for row in first}
    assert by_method["finetune"]["n_trainable_params"] > by_method["stc"]["n_features"] > 0
    assert by_method["icl"]["n_trainable_params"] == 0
    timings = by_method["stc"]["details"]["fit_timings"]
    assert set(timings) == {"load", "extract", "fold probes", "search", "final probes", "final", "estimate"}  # 5-fold CV
    assert sum(timings.values()) <= by_method["stc"]["fit_seconds"] + 0.01
    assert by_method["stc"]["details"]["selection"]["protocol"] == "cv"  # the search's record, the floor's verdict
    assert "floor_margin" in by_method["stc"]["details"]["selection"]
    embedding = by_method["embedding"]["details"]
    assert embedding["val_scores"][str(embedding["C"])] == by_method["embedding"]["val_score"]
    assert by_method["stc-finetuned"]["backbone"].endswith("finetuned-bert-planted")
    saved = json.loads((tmp_path / "a" / "planted-bert.json").read_text())["rows"]
    assert [row["method"] for row in saved] == [row["method"] for row in first]
    table = (tmp_path / "a" / "results-table.md").read_text()
    assert table.count("\n| planted | bert |") == 5
    second = run_experiment(settings_for(runner_inputs, tmp_path / "b"))
    assert [row["test_score"] for row in second] == [row["test_score"] for row in first]
    assert [row["val_score"] for row in second] == [row["val_score"] for row in first]


def test_rerunning_one_method_replaces_only_its_row(runner_inputs, tmp_path):
    run_experiment(settings_for(runner_inputs, tmp_path, methods=("embedding", "icl")))
    run_experiment(settings_for(runner_inputs, tmp_path, methods=("icl",), icl_shots=2))
    rows = json.loads((tmp_path / "planted-bert.json").read_text())["rows"]
    assert [row["method"] for row in rows] == ["embedding", "icl"]
    assert rows[1]["details"]["shots_per_class"] == 2


def test_per_method_limits_subsample_stratified_and_are_marked(runner_inputs, tmp_path):
    rows = run_experiment(settings_for(runner_inputs, tmp_path, methods=("embedding", "icl"),
                                       train_limits={"embedding": 12}, test_limits={"icl": 6}))
    assert rows[0]["n_train"] == 12 and rows[0]["subsampled"] == "train 12 of 32"
    assert rows[1]["n_test"] == 6 and rows[1]["subsampled"] == "test 6 of 16"
    table = (tmp_path / "results-table.md").read_text()
    assert "sentence embedding + LR *" in table and "subsampled (train 12 of 32)" in table


def test_runner_times_the_embedding_with_its_own_forward_pass_not_stcs_store(runner_inputs, tmp_path):
    from stc.experiment import _estimator

    # Reading STC's activation store would make the embedding's train time exclude its forward pass.
    assert _estimator("embedding", settings_for(runner_inputs, tmp_path), "accuracy").reuse_store is False


def test_stc_finetuned_without_a_checkpoint_says_what_to_run(runner_inputs, tmp_path):
    with pytest.raises(FileNotFoundError, match="run the finetune method first"):
        run_experiment(settings_for(runner_inputs, tmp_path, methods=("stc-finetuned",)))


@pytest.mark.parametrize("overrides, message", [
    ({"methods": ("stc", "magic")}, "methods must be a non-empty list"),
    ({"train_limits": {"magic": 10}}, "train_limits names unknown method 'magic'"),
    ({"test_limits": {"icl": 1}}, "must be an integer >= 2"),
])
def test_settings_refuse_unknown_methods_and_bad_limits(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        ExperimentSettings(dataset="mr", out=str(tmp_path), **overrides)


def test_subsample_keeps_class_shares():
    from stc.data import Split

    split = Split(["t"] * 30, ["a"] * 20 + ["b"] * 10)
    part = subsample(split, 9, seed=0)
    assert len(part) == 9 and part.labels.count("a") == 6 and part.labels.count("b") == 3
    assert subsample(split, 50, seed=0) is split


def table_row(**overrides) -> dict:
    row = {"dataset": "mr", "model": "minilm", "backbone": "minilm", "method": "stc", "metric": "accuracy",
           "test_score": 0.81234, "val_score": 0.8, "fit_seconds": 12.34, "test_texts_per_second": 456.78,
           "n_features": 1234, "n_trainable_params": None, "exit_layer": 5, "n_train": 100, "n_test": 50,
           "subsampled": None}
    row.update(overrides)
    return row


def test_markdown_table_has_one_aligned_line_per_row_and_marks_subsampled_rows():
    rows = [table_row(), table_row(method="finetune", n_features=None, n_trainable_params=22_700_000,
                                   subsampled="train 50 of 100"),
            table_row(method="icl", backbone="/x/smollm2", n_features=None, n_trainable_params=0)]
    lines = markdown_table(rows).splitlines()
    assert len({line.count("|") for line in lines[:5]}) == 1
    assert "| STC | minilm | 0.8123 | 0.8000 | accuracy | 12.3 | 456.8 | 1,234 features | 5 | 100 / 50 |" in lines[2]
    assert "| fine-tuning * |" in lines[3] and "22.7 M params" in lines[3]
    assert "| smollm2 |" in lines[4] and "0 trained (prompt only)" in lines[4]
    assert lines[-1] == "* mr x minilm · finetune: subsampled (train 50 of 100)"
    searched = markdown_table([table_row(details={"poolings_searched": ["mean"]})]).splitlines()[2]
    assert "| STC [mean pooling] |" in searched


def test_write_results_merges_files_into_one_table(tmp_path):
    write_results(tmp_path, [table_row(), table_row(model="smollm2", backbone="smollm2")])
    write_results(tmp_path, [table_row(dataset="tweets", metric="macro_f1")])
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["mr-minilm.json", "mr-smollm2.json",
                                                                "tweets-minilm.json"]
    assert (tmp_path / "results-table.md").read_text().count("\n| ") == 3  # one per row


def test_write_results_leaves_other_json_records_in_the_folder_alone(tmp_path):
    # benchmarks/results holds the benchmarks' own JSON records beside the experiment files
    (tmp_path / "bundle-2026-12-05.json").write_text('{"ks": [1, 2]}')
    (tmp_path / "bundle-2026-12-06.json").write_text('{"rows": [{"k": 1, "bundle_texts_per_s": 125.4}]}')
    (tmp_path / "list.json").write_text('[1, 2]')
    write_results(tmp_path, [table_row()])
    assert (tmp_path / "results-table.md").read_text().count("\n| ") == 1
    assert (tmp_path / "bundle-2026-12-05.json").read_text() == '{"ks": [1, 2]}'


def test_cli_experiment_reports_bad_limits_as_one_line(capsys):
    from stc.cli import main

    assert main(["experiment", "--dataset", "mr", "--out", "x", "--train-limit", "stc:5"]) == 2
    assert "--train-limit must look like method=N" in capsys.readouterr().err


def test_cli_experiment_defaults_are_the_settings_defaults_and_its_options_reach_them(monkeypatch, tmp_path):
    from dataclasses import replace

    import stc.experiment
    from stc.cli import main

    seen = []
    monkeypatch.setattr(stc.experiment, "run_experiment", lambda settings: seen.append(settings) or [])
    assert main(["experiment", "--dataset", "mr", "--out", str(tmp_path)]) == 0
    assert replace(seen[-1], command="") == ExperimentSettings(dataset="mr", out=str(tmp_path))
    assert main(["experiment", "--dataset", "mr", "--out", str(tmp_path), "--jobs", "2", "--quiet",
                 "--probe-solver", "saga", "--stc-poolings", "mean,max", "--stc-probe-cs", "0.1,1",
                 "--setfit-max-steps", "0"]) == 0
    assert (seen[-1].n_jobs, seen[-1].show_progress_bar, seen[-1].probe_solver) == (2, False, "saga")
    assert (seen[-1].stc_poolings, seen[-1].stc_probe_cs, seen[-1].setfit_max_steps) == (("mean", "max"),
                                                                                        (0.1, 1.0), None)
