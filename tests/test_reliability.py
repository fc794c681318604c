"""Bad input gets one clear error (API and CLI); messy text works; one seed gives one answer in two processes.

The model is a tiny random BERT saved to disk next to the real MiniLM tokenizer, so a fit takes about a second.
Empty or whitespace-only texts are refused (documented in the README): they carry no signal to classify.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import textwrap
import warnings
from types import MappingProxyType

import numpy as np
import pytest

from stc import STCClassifier
from stc.cli import main

from ._helpers import LABELS, MAX_LENGTH, TEXTS, quiet_env, small_params


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("stores"))


@pytest.fixture(scope="module")
def fitted(tiny_dir, store_dir):
    return STCClassifier(tiny_dir, store_dir=store_dir, max_length=64, **small_params()).fit(TEXTS, LABELS)


# --- bad input at the API: one ValueError/TypeError naming the argument ----------------------------------------

def _replace(values, index, value):
    values = list(values)
    values[index] = value
    return values


BAD_FIT_INPUT = [  # (case, X, y, extra params, error type, message pattern)
    ("empty dataset", [], [], {}, ValueError, r"X is empty"),
    ("None text", _replace(TEXTS, 3, None), LABELS, {}, TypeError, r"X\[3\] is NoneType"),
    ("NaN text", _replace(TEXTS, 3, math.nan), LABELS, {}, TypeError, r"X\[3\] is NaN"),
    ("number as text", _replace(TEXTS, 3, 3.5), LABELS, {}, TypeError, r"X\[3\] is float"),
    ("bytes as text", _replace(TEXTS, 3, b"abc"), LABELS, {}, TypeError, r"X\[3\] is bytes"),
    ("one string instead of a list", "a text", LABELS, {}, TypeError, r"X must be a sequence of texts"),
    ("empty text", _replace(TEXTS, 3, ""), LABELS, {}, ValueError, r"X\[3\] is empty or whitespace"),
    ("whitespace-only text", _replace(TEXTS, 5, " \t\n\u3000"), LABELS, {}, ValueError,
     r"X\[5\] is empty or whitespace"),
    ("lone surrogate (not Unicode)", _replace(TEXTS, 4, "bad \ud800 text"), LABELS, {}, ValueError,
     r"X\[4\].*surrogate"),
    ("NaN label", TEXTS, _replace(LABELS, 2, math.nan), {}, ValueError, r"y\[2\] is missing"),
    ("None label", TEXTS, _replace(LABELS, 2, None), {}, ValueError, r"y\[2\] is missing"),
    ("unhashable label", TEXTS, _replace(LABELS, 2, ["pos"]), {}, TypeError, r"y\[2\] is a list"),
    ("mixed label types", TEXTS, _replace(LABELS, 2, 1), {}, TypeError, r"y mixes label types"),
    ("single class", TEXTS, ["pos"] * 40, {}, ValueError, r"single class"),
    ("too few texts for a stratified validation split", TEXTS[:6], ["a", "a", "b", "b", "c", "c"], {"cv": None},
     ValueError, r"validation split of 20% of 6 texts needs one text of each of its 3 classes"),
    ("texts and labels of different lengths", TEXTS, LABELS[:-1], {}, ValueError,
     r"y has 39 labels but there are 40 texts"),
    ("X_val without y_val", TEXTS, LABELS, {"X_val": TEXTS[:4]}, ValueError, r"give both X_val and y_val"),
    ("y_val label unseen in y", TEXTS, LABELS, {"X_val": TEXTS[:2], "y_val": ["pos", "meh"]}, ValueError,
     r"y_val holds labels absent from y: \['meh'\]"),
    ("empty validation text", TEXTS, LABELS, {"X_val": ["", "x"], "y_val": ["pos", "neg"]}, ValueError,
     r"X_val\[0\] is empty"),
    ("eta = 0", TEXTS, LABELS, {"etas": (0.0,)}, ValueError, r"etas must hold numbers in \(0, 1.0\]"),
    ("eta > 1", TEXTS, LABELS, {"etas": (0.5, 1.5)}, ValueError, r"etas must hold numbers in \(0, 1.0\], got 1.5"),
    ("eta NaN", TEXTS, LABELS, {"etas": (math.nan,)}, ValueError, r"etas must hold numbers"),
    ("eta True", TEXTS, LABELS, {"etas": (True,)}, ValueError, r"etas must hold numbers"),
    ("probe C = 0", TEXTS, LABELS, {"probe_Cs": (0,)}, ValueError, r"probe_Cs must hold numbers > 0"),
    ("final C < 0", TEXTS, LABELS, {"final_Cs": (1.0, -1.0)}, ValueError, r"final_Cs must hold numbers > 0"),
    ("empty eta grid", TEXTS, LABELS, {"etas": ()}, ValueError, r"etas is empty"),
    ("empty probe C grid", TEXTS, LABELS, {"probe_Cs": []}, ValueError, r"probe_Cs is empty"),
    ("empty final C grid", TEXTS, LABELS, {"final_Cs": ()}, ValueError, r"final_Cs is empty"),
    ("unknown pooling", TEXTS, LABELS, {"poolings": ("median",)}, ValueError, r"unknown pooling 'median'"),
    ("unknown representation", TEXTS, LABELS, {"representations": ("attention",)}, ValueError,
     r"unknown representation 'attention'"),
    ("no representation", TEXTS, LABELS, {"representations": ()}, ValueError, r"representations is empty"),
    ("validation_size out of (0, 1)", TEXTS, LABELS, {"validation_size": 1.5}, ValueError, r"validation_size"),
    ("unknown metric", TEXTS, LABELS, {"metric": "auc"}, ValueError, r"auc"),
    ("token_budget 0", TEXTS, LABELS, {"token_budget": 0}, ValueError, r"token_budget must be a positive"),
    ("max_length 1", TEXTS, LABELS, {"max_length": 1}, ValueError, r"max_length must be"),
    ("negative window_overlap", TEXTS, LABELS, {"window_overlap": -1}, ValueError, r"window_overlap"),
    ("unknown probe solver", TEXTS, LABELS, {"probe_solver": "adam"}, ValueError, r"probe_solver"),
    ("n_jobs 0", TEXTS, LABELS, {"n_jobs": 0}, ValueError, r"n_jobs must be None or a non-zero integer"),
    ("unknown store dtype", TEXTS, LABELS, {"store_dtype": "int8"}, ValueError, r"store_dtype must be one of"),
]


# read-only extras: a test that pops X_val out of its case would change the table for the next run
BAD_FIT_INPUT = [(case, X, y, MappingProxyType(extra), *rest) for case, X, y, extra, *rest in BAD_FIT_INPUT]


@pytest.mark.parametrize("case, X, y, extra, error, pattern", BAD_FIT_INPUT, ids=[c[0] for c in BAD_FIT_INPUT])
def test_bad_fit_input_is_one_clear_error(case, X, y, extra, error, pattern, tiny_dir, store_dir):
    before = copy.deepcopy((X, y, dict(extra)))
    fit_args = {k: v for k, v in extra.items() if k in ("X_val", "y_val")}
    params = {k: v for k, v in extra.items() if k not in fit_args}
    clf = STCClassifier(tiny_dir, store_dir=store_dir, **small_params(**params))
    with pytest.raises(error, match=pattern):
        clf.fit(X, y, **fit_args)
    # neither the test nor the refused fit changed the case: a rerun tests the same input
    assert (X, y, dict(extra)) == before


BAD_PREDICT_INPUT = [
    ("no texts", [], ValueError, r"X is empty"),
    ("empty text", ["fine", ""], ValueError, r"X\[1\] is empty"),
    ("None text", ["fine", None], TypeError, r"X\[1\] is NoneType"),
    ("one string instead of a list", "fine", TypeError, r"not a single str"),
]


@pytest.mark.parametrize("case, X, error, pattern", BAD_PREDICT_INPUT, ids=[c[0] for c in BAD_PREDICT_INPUT])
def test_bad_predict_input_is_one_clear_error(case, X, error, pattern, fitted):
    for method in (fitted.predict, fitted.predict_proba, fitted.transform):
        with pytest.raises(error, match=pattern):
            method(X)


def test_an_unloadable_model_directory_is_a_clear_error(tmp_path):
    from stc.backbone import load_backbone

    (tmp_path / "config.json").write_text("{ this is not json", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot load model"):
        load_backbone(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}), encoding="utf-8")
    with pytest.raises(ValueError, match="cannot load model"):  # a config but no weights, no tokenizer
        load_backbone(str(tmp_path))
    with pytest.raises(TypeError, match="model must be a non-empty name"):
        load_backbone("")


# --- bad input at the CLI: one line on stderr, exit code 2 -----------------------------------------------------

def _write(path, content: str | bytes):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


def _csv(rows) -> str:
    return "text,label\n" + "".join(f"{text},{label}\n" for text, label in rows)


GOOD_ROWS = list(zip([t.replace(",", "") for t in TEXTS], LABELS))


def _cli_cases(tmp_path, tiny_dir):
    garbage_model = tmp_path / "garbage-model"
    garbage_model.mkdir()
    _write(garbage_model / "config.json", "not json")
    return [  # (case, argv, message fragment)
        ("empty text in a row", ["fit", "--data", _write(tmp_path / "a.csv", _csv(GOOD_ROWS[:3] + [(" ", "pos")]
                                                                                   + GOOD_ROWS[3:]))],
         "row 4 (line 5): the text is empty"),
        ("no text column", ["fit", "--data", _write(tmp_path / "b.csv", "words,label\nx,1\n")], "no column 'text'"),
        ("no label column", ["fit", "--data", _write(tmp_path / "c.csv", "text,tag\nx,1\n")], "no column 'label'"),
        ("named text column absent", ["fit", "--data", _write(tmp_path / "c2.csv", _csv(GOOD_ROWS)),
                                      "--text-column", "sentence"], "no column 'sentence'"),
        ("bytes that are not UTF-8", ["fit", "--data", _write(tmp_path / "d.csv",
                                                              b"text,label\nok,1\nbad \xff\xfe,0\n")],
         "line 3 is not valid UTF-8"),
        ("empty file", ["fit", "--data", _write(tmp_path / "e.csv", "")], "the file is empty"),
        ("header only", ["fit", "--data", _write(tmp_path / "f.csv", "text,label\n")], "no data rows"),
        ("missing file", ["fit", "--data", str(tmp_path / "missing.csv")], "missing.csv"),
        ("null label in JSONL", ["fit", "--data", _write(tmp_path / "g.jsonl", '{"text": "x", "label": 1}\n'
                                                                                '{"text": "y", "label": null}\n')],
         "line 2: the label is missing"),
        ("single class", ["fit", "--data", _write(tmp_path / "h.csv", _csv((t, "pos") for t, _ in GOOD_ROWS))],
         "single class"),
        ("unloadable model", ["fit", "--data", _write(tmp_path / "i.csv", _csv(GOOD_ROWS)),
                              "--model", str(garbage_model)], "cannot load model"),
        ("token budget 0", ["fit", "--data", str(tmp_path / "i.csv"), "--model", tiny_dir, "--token-budget", "0"],
         "token_budget must be a positive integer"),
        ("unknown pooling at extract", ["extract", "--data", str(tmp_path / "i.csv"), "--model", tiny_dir,
                                        "--poolings", "median"], "pooling"),
        ("unknown representation at extract", ["extract", "--data", str(tmp_path / "i.csv"), "--model", tiny_dir,
                                               "--representations", "attention"], "representation"),
        ("not a model directory", ["info", str(tmp_path)], "not a valid stc model"),
    ]


def test_bad_cli_input_is_one_line_on_stderr_and_exit_code_2(tmp_path, tiny_dir, store_dir, capsys):
    cases = _cli_cases(tmp_path, tiny_dir)
    for case, argv, fragment in cases:
        if argv[0] in ("fit", "extract"):
            argv = argv + ["--store-dir", store_dir, "--quiet"] + (["--out", str(tmp_path / "m")] if argv[0] == "fit"
                                                                    else [])
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, case
        assert err.startswith("stc: error:") and err.count("\n") == 1, (case, err)
        assert fragment in err, (case, err)
    assert not (tmp_path / "m").exists()  # no model was saved by any failed fit


def test_a_file_too_small_for_a_test_split_is_fitted_saved_and_not_scored(tmp_path, tiny_dir, store_dir, capsys):
    """Three texts a class leave the carved test split empty: the fit says so, saves the model, prints no test
    score (it once stopped after the fit, on scoring no texts, and saved nothing)."""
    rows = [(f"{word} text number {i}", word) for word in ("red", "green", "blue", "gold", "grey", "pink")
            for i in range(3)]
    data = _write(tmp_path / "tiny.csv", _csv(rows))
    assert main(["fit", "--data", data, "--model", tiny_dir, "--store-dir", store_dir, "--out", str(tmp_path / "m"),
                 "--representations", "hidden", "--poolings", "mean", "--etas", "0.5", "--probe-Cs", "0.1",
                 "--final-Cs", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "no test split: no class has enough texts" in printed
    assert "saved to" in printed and not any(line.startswith("test ") for line in printed.splitlines())
    assert (tmp_path / "m" / "stc_model.json").is_file()


def test_many_classes_of_few_texts_fit_without_scikit_learns_regression_warning(tiny_dir, store_dir):
    """Folds of a few texts a class hold more classes than half their rows; scikit-learn then warns that ``y`` may
    be a regression target (from 21 rows on; once per search fit: hundreds of lines on a screen). Expected here."""
    words = [f"topic{k}" for k in range(24)]
    texts = [f"{word} text number {i}" for word in words for i in range(2)]
    labels = [word for word in words for _ in range(2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        STCClassifier(tiny_dir, store_dir=store_dir, max_length=64, **small_params()).fit(texts, labels)
    assert not [w for w in caught if "number of unique classes" in str(w.message)]


def test_cli_predict_and_evaluate_refuse_bad_data(fitted, tmp_path, capsys):
    fitted.save(tmp_path / "model")
    model = str(tmp_path / "model")
    blank = _write(tmp_path / "blank.txt", "\n  \n\t\n")
    assert main(["predict", model, "--data", blank, "--out", str(tmp_path / "p.jsonl"), "--quiet"]) == 2
    assert "no non-empty lines" in capsys.readouterr().err
    empty_row = _write(tmp_path / "empty-row.csv", "text\nfine\n\"\"\n")
    assert main(["predict", model, "--data", empty_row, "--out", str(tmp_path / "p.jsonl"), "--quiet"]) == 2
    assert "row 2 (line 3): the text is empty" in capsys.readouterr().err
    unseen = _write(tmp_path / "unseen.csv", "text,label\nfine film,neutral\nawful film,neg\n")
    assert main(["evaluate", model, "--data", unseen, "--split", "train", "--quiet"]) == 2
    assert "labels the model never saw: ['neutral']" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()


def test_an_unknown_model_name_fails_with_one_line(tmp_path):
    """In a fresh process, offline: the hub is not reachable, so the name cannot be resolved."""
    data = _write(tmp_path / "data.csv", _csv(GOOD_ROWS))
    env = quiet_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", STC_CACHE=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-m", "stc", "fit", "--data", data, "--model", "no-such-org/no-such-model",
                             "--out", str(tmp_path / "m"), "--quiet"], capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("stc: error: cannot load model 'no-such-org/no-such-model'")
    assert "Traceback" not in result.stderr


# --- messy text ----------------------------------------------------------------------------------------------------

MESSY = ["emoji 😀👍🏽🇫🇷 and a family 👨‍👩‍👧", "control \x00\x07\x1b[31mred\x1b[0m\x7f chars",
         "zero\u200bwidth\u200d joiners\ufeff", "שלום עולם – Hebrew, right to left", "مرحبا بالعالم Arabic",
         "mixed ltr \u202eoverride\u202c rtl", "Ã©tÃ© mojibake â€™ Ã¢â‚¬Å“", "combining e\u0301\u0301\u0301",
         "tab\tnewline\ncarriage\rreturn", "🙂" * 300, "x" * 5000, "\x00visible"]


def test_messy_texts_fit_and_predict_with_finite_probabilities(tiny_dir, store_dir):
    from stc.data import load_dataset

    tweets = load_dataset("tweets", limit=600)
    mojibake = [t for t in tweets.train.texts if any(c in t for c in "Ù÷‰Û")][:12]
    assert len(mojibake) >= 6  # the corpus really holds mis-decoded text
    texts = TEXTS + MESSY + mojibake
    labels = LABELS + [("pos", "neg")[i % 2] for i in range(len(MESSY) + len(mojibake))]
    clf = STCClassifier(tiny_dir, store_dir=store_dir, max_length=64, **small_params()).fit(texts, labels)
    probabilities = clf.predict_proba(MESSY + mojibake)
    assert probabilities.shape == (len(MESSY) + len(mojibake), 2)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_a_1mb_text_is_truncated_to_its_first_tokens(fitted):
    """With truncation only the first max_length tokens count: the 1 MB text reads like its own prefix."""
    huge = ("the plot was good and the acting great, " * 30_000)[:1_000_000]
    assert len(huge.encode("utf-8")) == 1_000_000
    features = fitted.transform([huge, huge[:2000]])
    np.testing.assert_array_equal(features[0], features[1])


def test_a_1mb_text_with_windows_reads_every_window(tiny_dir, store_dir, fitted):
    """Two 1 MB texts that differ only in their last 100 kB: the same under truncation, not with windows."""
    clf = STCClassifier(tiny_dir, store_dir=store_dir, max_length=MAX_LENGTH, windows=True, window_overlap=16,
                        **small_params()).fit(TEXTS, LABELS)
    base = ("the plot was good and the acting great, " * 30_000)[:1_000_000]
    altered = base[:900_000] + ("awful boring film, bad in every way. " * 3_000)[:100_000]
    windowed = clf.transform([base, altered])
    assert np.isfinite(windowed).all()
    assert not np.array_equal(windowed[0], windowed[1])  # the windows past the first are read
    truncated = fitted.transform([base, altered])
    np.testing.assert_array_equal(truncated[0], truncated[1])
    probabilities = clf.classifier_.predict_proba(windowed)  # what predict_proba returns for these features
    assert probabilities.shape == (2, 2) and np.isfinite(probabilities).all()


# --- determinism across processes ------------------------------------------------------------------------------

_DETERMINISM_SCRIPT = textwrap.dedent("""
    import json, sys
    from stc import STCClassifier
    texts, labels, test, params = json.loads(sys.stdin.read())
    clf = STCClassifier(sys.argv[1], store_dir=sys.argv[2], random_state=7, **params).fit(texts, labels)
    print(json.dumps({"kept": clf.kept_neurons_, "labels": clf.predict(test).tolist(),
                      "probabilities": clf.predict_proba(test).tolist(), "val": clf.val_score_}))
""")


def test_same_data_and_seed_give_identical_predictions_in_two_processes(tiny_dir, tmp_path):
    params = small_params(etas=(0.2, 0.8), probe_Cs=(0.05, 0.5), final_Cs=(0.1, 1.0), max_length=64)
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
    payload = json.dumps([TEXTS, LABELS, ["good fun", "awful film", "number 7", "😀 ok"], params])
    # Separate stores: each run extracts rather than reusing the other's. Side by side, since each is one thread.
    runs = [subprocess.Popen([sys.executable, "-c", _DETERMINISM_SCRIPT, tiny_dir, str(tmp_path / run)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=quiet_env()) for run in ("first", "second")]
    outputs = []
    for run in runs:
        stdout, stderr = run.communicate(payload, timeout=300)
        assert run.returncode == 0, stderr[-2000:]
        outputs.append(stdout.strip().splitlines()[-1])
    assert outputs[0] == outputs[1]
    assert len(json.loads(outputs[0])["probabilities"]) == 4
