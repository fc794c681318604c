"""stc._parameters: one declaration per STCClassifier parameter, read by the signature, the validation, the
docstring and the command line; each test checks that one of those readers cannot drift from the table."""

from __future__ import annotations

import argparse
import ast
import inspect
import re

import pytest

from stc import STCClassifier
from stc._parameters import STC_PARAMETERS, add_arguments, check_parameters, values_from_args
from stc.cli import build_parser

REQUIRED = ["--data", "mr", "--out", "model-dir"]


def _subparser(command: str) -> argparse.ArgumentParser:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices[command]


def test_the_signature_has_the_tables_names_order_and_defaults():
    signature = inspect.signature(STCClassifier.__init__).parameters
    assert list(signature)[1:] == list(STC_PARAMETERS)
    assert {name: p.default for name, p in signature.items() if name != "self"} == \
        {name: p.default for name, p in STC_PARAMETERS.items()}


def test_every_default_passes_its_own_check():
    checked = check_parameters(STCClassifier(), STC_PARAMETERS)
    assert set(checked) == set(STC_PARAMETERS)
    assert checked["etas"] == tuple(STC_PARAMETERS["etas"].default) and checked["probe_Cs"] is None


@pytest.mark.parametrize("name, value, message", [
    ("cv", 1, "cv must be 'auto', None or an integer >= 2, got 1"),
    ("cv", True, "cv must be 'auto', None or an integer >= 2, got True"),
    ("token_budget", 0, "token_budget must be a positive integer, got 0"),
    ("window_overlap", -1, "window_overlap must be a non-negative integer, got -1"),
    ("max_length", 1, "max_length must be None or an integer >= 2, got 1"),
    ("n_jobs", 0, "n_jobs must be None or a non-zero integer (-1: every core), got 0"),
    ("validation_size", 1, "validation_size must be a float in (0, 1), got 1"),
    ("calibrate", "yes", "calibrate must be True or False, got 'yes'"),
    ("metric", "f1", "metric must be one of ('auto', 'accuracy', 'macro_f1', 'micro_f1', 'samples_f1'), got 'f1'"),
    ("class_weight", "weighted", "class_weight must be one of ('auto', None, 'balanced'), got 'weighted'"),
    ("probe_solver", "lbfgs", "probe_solver must be one of ('auto', 'liblinear', 'saga'), got 'lbfgs'"),
    ("dtype", "int8", "dtype must be one of ('auto', 'float32', 'float16', 'bfloat16'), got 'int8'"),
    ("store_dtype", "float64", "store_dtype must be one of ('float32', 'float16'), got 'float64'"),
    ("workers", 0, "workers must be None or a positive integer, got 0"),
    ("gpus_per_worker", -1, "gpus_per_worker must be a number in [0, 64], got -1"),
    ("random_state", "7", "random_state must be None or an integer, got '7'"),
    ("model", "", "model must be an alias, a directory, a .gguf file or a hub id, got ''"),
    ("etas", (0.5, 2.0), "etas must hold numbers in (0, 1.0], got 2.0"),
    ("poolings", ("median",), "unknown pooling 'median'"),
    ("selection_rule", "one-se", "selection_rule must be one of ('auto', 'one_se', 'best'), got 'one-se'"),
    ("readout_kinds", ("sparse", "embedding"), "unknown readout_kind 'embedding'"),
    ("readout_kinds", (), "readout_kinds is empty"),
    ("readout_kinds", ("sparse", "hybrid"), "readout_kinds: 'hybrid' (the dense leader plus the sparse leader's "
                                            "neurons) needs 'sparse' and 'dense' too, got ('sparse', 'hybrid')"),
])
def test_a_refused_value_is_one_line_naming_the_parameter_and_the_value(name, value, message):
    with pytest.raises(ValueError) as raised:
        STCClassifier(**{name: value})._check_params()
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def _docstring_entries() -> dict[str, tuple[str, str, str]]:
    """name -> (accepted values, default, description) of the docstring's Parameters section, read from the text
    as a reader of the docstring sees it: ``    name : <accepted values>, default=<default>`` then indented prose."""
    section = STCClassifier.__doc__.split("Parameters\n    ----------\n")[1].split("\n\n")[0]
    entries, name = {}, None
    for line in section.splitlines():
        head = re.fullmatch(r"    (\w+) : (.+), default=(.+)", line)
        if head:
            name = head[1]
            entries[name] = [head[2], head[3], ""]
        else:
            assert line.startswith(" " * 8) and name, f"not numpydoc: {line!r}"
            entries[name][2] += " " + line.strip()
    return {name: (words, default, description.strip()) for name, (words, default, description) in entries.items()}


def test_the_docstring_states_each_parameters_default_as_the_signature_has_it():
    entries = _docstring_entries()
    signature = inspect.signature(STCClassifier.__init__).parameters
    assert list(entries) == list(signature)[1:]
    for name, (_, default, description) in entries.items():
        assert ast.literal_eval(default) == signature[name].default, name  # the shown default is the value
        assert len(description.split()) >= 3 and description.endswith("."), (name, description)


#: (pattern of the docstring's words, values the words promise are accepted, values they rule out); every
#: parameter's words must match at least one pattern, so new words come with their own check
WORD_CHECKS = [
    (r"^None or ", [None], []),
    (r"^one of \((.*)\)$", "choices", ["not-a-choice", 1.5]),
    (r"^True or False$", [True, False], [1, "yes", None]),
    (r"a positive integer$", [1, 7], [0, -1, 1.5, True]),
    (r"a non-negative integer$", [0, 5], [-1, 0.5]),
    (r"an integer >= 2$", [2, 9], [1, 2.5]),
    (r"a non-zero integer", [1, -1, 4], [0, 2.0]),
    (r"^None or an integer$", [0, 7, -3], ["7", 1.5]),
    (r"^'auto', ", ["auto"], ["Auto", "every"]),
    (r"^a float in \(0, 1\)$", [0.2, 0.99], [0.0, 1.0, 1, "0.2"]),
    (r"^a number in \[0, 64\]$", [0, 0.5, 64], [-1, 64.5, True]),
    (r"numbers in \(0, 1.0\]$", [(0.5, 1.0), [0.01]], [(0.0,), (1.5,), ()]),
    (r"numbers > 0$", [(0.1, 10.0)], [(0.0,), (-1.0,), ()]),
    (r"^(None or )?names from \((.*)\)$", "names", [("unknown",)]),
    (r"^names from \((.*)\); hybrid only with the other two$",
     [("sparse",), ("dense",), ("sparse", "dense"), ("sparse", "dense", "hybrid")],
     [("hybrid",), ("sparse", "hybrid"), ("unknown",)]),
    (r"(string|directory|hub id|host:port'.*)$", ["x", "a/b"], ["", "   "]),
]


def test_the_values_the_docstring_says_a_parameter_accepts_are_accepted_and_others_refused():
    """The docstring's words are written by hand beside each parameter's check: a check that drifts from its words
    (a bound, a None, a choice) fails here."""
    def accepted(name: str, value) -> bool:
        try:
            check_parameters(STCClassifier(**{name: value}), {name: STC_PARAMETERS[name]})
        except ValueError:
            return False
        return True

    for name, (words, _, _) in _docstring_entries().items():
        matched = [(re.search(pattern, words), good, bad) for pattern, good, bad in WORD_CHECKS]
        matched = [(match, good, bad) for match, good, bad in matched if match]
        assert matched, f"no check for the words of {name}: {words!r}"
        for match, good, bad in matched:
            if good == "choices":
                good = list(ast.literal_eval(f"({match[1]},)"))
            elif good == "names":
                good = [(choice,) for choice in ast.literal_eval(f"({match[2]},)")]
            for value in good:
                assert accepted(name, value), f"{name} : {words} -- but {value!r} is refused"
            for value in bad:
                assert not accepted(name, value), f"{name} : {words} -- but {value!r} is accepted"


def test_the_defaults_stc_fit_help_shows_read_back_as_the_estimators_defaults(capsys):
    """What --help prints as an option's default, given back to that option, is the estimator's default."""
    fit = _subparser("fit")
    defaults = STCClassifier().get_params()
    shown = {}
    for action in fit._actions:
        found = re.search(r"\(default: ([^)]*)\)$", action.help or "")
        if found and action.dest in defaults and action.dest != "metric":  # its own default: the dataset's
            shown[action.dest] = found[1]
            value = fit.parse_args(REQUIRED + [action.option_strings[0], found[1]]).__dict__[action.dest]
            assert value == defaults[action.dest], (action.option_strings[0], found[1], value)
    assert {"etas", "final_Cs", "cv", "token_budget", "model"} <= set(shown)
    fit.print_help()
    printed = " ".join(capsys.readouterr().out.split())
    for name, text in shown.items():
        assert f"(default: {text})" in printed, name  # argparse printed the help as declared


def test_stc_fit_reaches_every_parameter_with_the_estimators_defaults():
    fit = _subparser("fit")
    options = {action.dest for action in fit._actions}
    assert set(STCClassifier().get_params()) <= options
    values = values_from_args(fit.parse_args(REQUIRED), STC_PARAMETERS)
    # the one default of its own: the metric is the dataset's unless --metric says otherwise
    assert values.pop("metric") is None
    expected = STCClassifier().get_params()
    del expected["metric"]
    assert values == expected


def test_stc_fit_options_keep_their_names_and_give_the_estimators_values():
    fit = _subparser("fit")
    args = fit.parse_args(REQUIRED + [
        "--cv", "none", "--class-weight", "balanced", "--no-calibrate", "--quiet", "--etas", "0.1, 0.5",
        "--probe-Cs", "0.1,1", "--final-Cs", "1", "--representations", "hidden", "--poolings", "mean,max",
        "--jobs", "2", "--address", "head:6379", "--engine", "ray", "--workers", "3", "--gpus-per-worker", "0.5",
        "--windows", "--window-overlap", "8", "--max-length", "64", "--token-budget", "512", "--metric", "macro_f1",
        "--validation-size", "0.3", "--random-state", "7", "--trust-remote-code", "--dtype", "float16",
        "--store-dtype", "float16", "--probe-solver", "liblinear", "--device", "cpu", "--store-dir", "s",
        "--model", "smollm2", "--selection-rule", "best", "--readout-kinds", "sparse,dense", "--no-mlp-head",
        "--cv-repeats", "3"])
    assert values_from_args(args, STC_PARAMETERS) == dict(
        model="smollm2", representations=("hidden",), poolings=("mean", "max"), etas=(0.1, 0.5), probe_Cs=(0.1, 1.0),
        final_Cs=(1.0,), metric="macro_f1", cv=None, cv_repeats=3, selection_rule="best", readout_kinds=("sparse", "dense"),
        mlp_head=False, class_weight="balanced", calibrate=False, validation_size=0.3,
        max_length=64, windows=True, window_overlap=8, token_budget=512, store_dir="s", store_dtype="float16",
        probe_solver="liblinear", device="cpu", dtype="float16", n_jobs=2, random_state=7, show_progress_bar=False,
        trust_remote_code=True, engine="ray", ray_address="head:6379", workers=3, gpus_per_worker=0.5)
    assert fit.parse_args(REQUIRED + ["--cv", "3"]).cv == 3


@pytest.mark.parametrize("argv", [["--cv", "many"], ["--etas", "0.1,x"], ["--class-weight", "weighted"],
                                  ["--metric", "f1"]])
def test_a_malformed_option_is_an_argparse_error_naming_it(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        _subparser("fit").parse_args(REQUIRED + argv)
    assert raised.value.code == 2 and f"argument {argv[0]}:" in capsys.readouterr().err


def test_stc_extract_shares_the_backbone_options_and_their_defaults():
    extract = _subparser("extract")
    args = extract.parse_args(["--data", "mr"])
    for name in ("model", "representations", "poolings", "store_dtype", "token_budget", "device", "dtype",
                 "engine", "show_progress_bar"):
        assert getattr(args, name) == STC_PARAMETERS[name].default


def test_add_arguments_takes_other_defaults_and_helps():
    parser = argparse.ArgumentParser()
    add_arguments(parser, STC_PARAMETERS, ("n_jobs", "probe_solver"), defaults={"n_jobs": 1},
                  helps={"probe_solver": "STC: solver of the L1 probes"})
    assert vars(parser.parse_args([])) == {"n_jobs": 1, "probe_solver": "auto"}
    assert "STC: solver of the L1 probes" in parser.format_help()
