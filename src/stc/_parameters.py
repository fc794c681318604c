"""Every ``STCClassifier`` parameter, declared once: its default, the values it takes, its help and its option.

The estimator's validation (``check_parameters``), the Parameters section of its docstring (``parameters_doc``)
and the options of ``stc fit`` and ``stc extract`` (``add_arguments``) all read ``STC_PARAMETERS``, so a default,
a choice list or a help text is written in one place: the idea of scikit-learn's ``_parameter_constraints``.
"""

from __future__ import annotations

import argparse
import numbers
import os
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._metrics import METRICS
from ._validation import check_choices, check_grid, check_poolings, check_representations
from .aggregate import DEFAULT_FINAL_CS, READOUT_KINDS
from .distributed import ENGINES
from .extract import POOLINGS, REPRESENTATIONS
from .probe import CLASS_WEIGHTS, PROBE_SOLVERS
from .sparsify import DEFAULT_ETAS

__all__ = ["Allowed", "Parameter", "STC_PARAMETERS", "check_parameters", "check_readout_kinds", "parameters_doc",
           "add_arguments", "values_from_args"]


# --- what a parameter accepts ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Allowed:
    """The values a parameter takes. ``words`` names them in errors ("<name> must be <words>, got <value>") and in
    the docstring; ``convert`` (grids, name lists) normalises a value and raises its own, more precise message."""

    words: str
    test: Callable[[Any], bool] = lambda value: True
    convert: Callable[[Any], Any] | None = None
    choices: tuple = ()  # the finite set of values, when there is one

    def check(self, name: str, value: Any) -> Any:
        """The value as the estimator uses it; a ValueError naming the parameter and the value otherwise."""
        if self.convert is not None:
            return self.convert(value)
        if not self.test(value):
            raise ValueError(f"{name} must be {self.words}, got {value!r}")
        return value


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike)) and bool(str(value).strip())


def one_of(*values: Any) -> Allowed:
    return Allowed(f"one of {values}", choices=values,
                   test=lambda value: any(value is v or (isinstance(value, str) and value == v) for v in values))


def integer(at_least: int, *, none: bool = False) -> Allowed:
    kind = {1: "a positive integer", 0: "a non-negative integer"}.get(at_least, f"an integer >= {at_least}")
    return Allowed(("None or " if none else "") + kind,
                   lambda value: (none and value is None) or (_is_int(value) and value >= at_least))


def text(words: str = "a non-empty string", *, none: bool = False) -> Allowed:
    return Allowed(words, lambda value: (none and value is None) or _is_text(value))


def grid(name: str, *, upper: float | None = None, none: bool = False) -> Allowed:
    bound = f"in (0, {upper}]" if upper is not None else "> 0"
    return Allowed(("None or " if none else "") + f"a non-empty sequence of numbers {bound}",
                   convert=lambda value: None if none and value is None else check_grid(value, name, upper=upper))


BOOLEAN = Allowed("True or False", lambda value: isinstance(value, bool), choices=(False, True))


# --- how a command-line string becomes a value ----------------------------------------------------------------------

def comma_list(convert: Callable[[str], Any] = str) -> Callable[[str], tuple]:
    """'0.1,0.5' -> (0.1, 0.5): how a grid or a list of names is given on the command line."""
    def parse(value: str) -> tuple:
        try:
            return tuple(convert(part.strip()) for part in value.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a comma-separated list of numbers, got {value!r}") from None
    parse.comma_separated = True  # type: ignore[attr-defined]  # the option's help says so
    return parse


def _cli_word(value: Any) -> str:
    return "none" if value is None else str(value)


def _choice(values: tuple) -> Callable[[str], Any]:
    """One of ``values``, spelled on the command line as its string ('none' for None)."""
    by_word = {_cli_word(value): value for value in values}

    def parse(value: str) -> Any:
        if value not in by_word:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(by_word)}, got {value!r}")
        return by_word[value]
    return parse


def check_readout_kinds(value: Any) -> tuple[str, ...]:
    """Distinct names from ``READOUT_KINDS``; a hybrid (the dense leader plus the sparse leader's neurons) needs
    both the others."""
    kinds = check_choices(value, READOUT_KINDS, "readout_kinds")
    if "hybrid" in kinds and not {"sparse", "dense"} <= set(kinds):
        raise ValueError(f"readout_kinds: 'hybrid' (the dense leader plus the sparse leader's neurons) needs 'sparse' "
                         f"and 'dense' too, got {kinds!r}")
    return kinds


def parse_cv(value: str) -> int | str | None:
    """--cv: auto, none (one validation split) or a number of folds."""
    if value.lower() == "none":
        return None
    if value == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto, none or an integer >= 2, got {value!r}") from None


def parse_repeats(value: str) -> int | str:
    """--cv-repeats: auto or a positive integer."""
    if value == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or a positive integer, got {value!r}") from None


# --- the declaration ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Parameter:
    """One estimator parameter: its default, what it accepts, its help, and its command-line option.

    ``flag`` defaults to ``--name-with-dashes`` (``--no-name`` for a boolean that defaults to True); a boolean is
    a switch that sets the opposite of its default. ``parse`` turns the option's string into the value (by
    default: one of the allowed choices, spelled 'none' for None, or the string itself); ``cli_help`` replaces
    ``help`` on the command line where the option is spelled otherwise (switches, 'none')."""

    name: str
    default: Any
    allowed: Allowed
    help: str
    parse: Callable[[str], Any] | None = None
    flag: str = ""
    cli_help: str = ""

    @property
    def cli_parse(self) -> Callable[[str], Any]:
        """How the option's string becomes the value: ``parse``, else a choice among the allowed values, else str."""
        if self.parse is not None:
            return self.parse
        return _choice(self.allowed.choices) if self.allowed.choices else str

    @property
    def option(self) -> str:
        if self.flag:
            return self.flag
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.default is True else f"--{dashed}"


def _declare(*parameters: Parameter) -> dict[str, Parameter]:
    return {parameter.name: parameter for parameter in parameters}


STC_PARAMETERS: dict[str, Parameter] = _declare(
    Parameter("model", "minilm", text("an alias, a directory, a .gguf file or a hub id"),
              "the backbone: an alias (minilm, smollm2), a local directory, a .gguf file or a Hugging Face hub id"),
    Parameter("representations", ("hidden", "ffn"),
              Allowed(f"names from {REPRESENTATIONS}", convert=check_representations),
              "which arrays are probed: hidden (the residual stream) and/or ffn (the FFN neurons)",
              comma_list()),
    Parameter("poolings", None,
              Allowed(f"None or names from {POOLINGS}",
                      convert=lambda value: None if value is None else check_poolings(value)),
              "token poolings among mean, max, first, last; by default mean, max and the model's natural single "
              "token", comma_list()),
    Parameter("etas", DEFAULT_ETAS, grid("etas", upper=1.0),
              "the η grid: per layer, the neurons holding this fraction of the probe's squared weights are kept",
              comma_list(float)),
    Parameter("probe_Cs", None, grid("probe_Cs", none=True),
              "C grid of the L1 probes; by default each probe gets the grid (3, 10, 30, 100) x its C_min, the C "
              "below which it keeps no neuron", comma_list(float)),
    Parameter("final_Cs", DEFAULT_FINAL_CS, grid("final_Cs"),
              "C grid of the final logistic regression (label sets search their ridge head's own grid, "
              "stc.head.MULTILABEL_CS)", comma_list(float)),
    Parameter("metric", "auto", one_of(*METRICS),
              "the held-out metric every choice is made by: 'auto' is accuracy for single-label targets and micro-F1 "
              "for label sets; macro_f1 for either; micro_f1, samples_f1 and accuracy (subset accuracy) for label "
              "sets"),
    Parameter("cv", "auto", Allowed("'auto', None or an integer >= 2",
                                    lambda value: value is None or value == "auto" or (_is_int(value) and value >= 2)),
              "how settings are chosen: 'auto' (cross-validation up to 20,000 texts: 5 folds below 5,000 texts, 3 "
              "from there; above 20,000 one validation split), an integer k (k folds), or None (one validation "
              "split: the given X_val, else validation_size of X; the paper's protocol)", parse_cv,
              cli_help="how settings are chosen: auto (cross-validation up to 20,000 texts: 5 folds below 5,000, "
                       "3 from there; else one validation split), an integer k (k folds), or none (one validation "
                       "split, the paper's)"),
    Parameter("cv_repeats", 1, Allowed("'auto' or a positive integer",
                                       lambda value: value == "auto" or (_is_int(value) and value >= 1)),
              "how many seeded partitions into the folds every candidate is scored on (repeated stratified k-fold): "
              "an integer, or 'auto' (below 200 texts enough that every candidate is scored on about 200 held-out "
              "predictions, at most 5: 16 texts 5, 64 texts 4, 128 texts 2; else 1). More than 1 needs "
              "cross-validation and one label per text. Measured at 8 and 32 texts per class it cost about 10x "
              "the fit time and did not raise test scores, so the default is one partition", parse_repeats,
              cli_help="seeded partitions into the folds (repeated k-fold): an integer (default 1) or auto (up to 5 "
                       "below 200 texts)"),
    Parameter("selection_rule", "auto", one_of("auto", "one_se", "best"),
              "how the search chooses among the candidates it scored: 'one_se' (the simplest candidate within one "
              "standard error of the best, along the best one's path), 'best' (the best held-out score), or 'auto' "
              "(one_se, but best with cv=None: the paper's protocol; and the embedding floor: the last layer's "
              "sentence embedding is the model unless the choice beats it beyond noise, see stc.selection)"),
    Parameter("readout_kinds", READOUT_KINDS, Allowed(f"names from {READOUT_KINDS}; hybrid only with the other two",
                                          convert=check_readout_kinds),
              "the readouts the search may build: sparse (named neurons kept by the probes), dense (every neuron of "
              "one layer's hidden state) and hybrid (the two together: needs both); with cv=None (the paper's "
              "protocol) sparse ones only", comma_list()),
    Parameter("mlp_head", True, BOOLEAN,
              "let the search try an MLP head (one hidden layer of 64 ReLU units, early stopping) on the neurons it "
              "chose, at two Cs: it is kept only where it beats the linear head by more than one standard error; "
              "single labels with cv (the one-standard-error rule) and 10 texts per class in every fold only",
              cli_help="do not let the search try an MLP head on the chosen neurons"),
    Parameter("class_weight", "auto", one_of("auto", *CLASS_WEIGHTS),
              "'balanced' weighs every class the same in the probes and the final classifier, None every text; "
              "'auto' weighs what the metric counts: 'balanced' for macro-F1 over single labels, else None",
              cli_help="balanced: every class weighs the same in the probes and the final classifier; none: every "
                       "text; auto: balanced when the metric is macro-F1 (the default metric of imbalanced single-label "
                       "data), else none (default: auto)"),
    Parameter("calibrate", True, BOOLEAN,
              "fit a temperature on held-out decision values, so that predict_proba is calibrated",
              cli_help="do not fit a temperature to calibrate the probabilities"),
    Parameter("validation_size", 0.2, Allowed("a float in (0, 1)",
                                              lambda value: isinstance(value, float) and 0.0 < value < 1.0),
              "fraction of the training texts held out (stratified, seeded) with one split and no X_val", float),
    Parameter("max_length", None, integer(2, none=True), "tokens per text; by default the model's limit", int),
    Parameter("windows", False, BOOLEAN,
              "cut longer texts into overlapping windows of max_length tokens instead of truncating them"),
    Parameter("window_overlap", 64, integer(0), "tokens two neighbouring windows share", int),
    Parameter("token_budget", 8192, integer(1), "padded tokens per forward batch (batches are sorted by length)",
              int),
    Parameter("store_dir", None, text("None or a directory", none=True),
              "where activation stores go; by default $STC_CACHE/stores"),
    Parameter("store_dtype", "float32", one_of("float32", "float16"), "the float type activations are stored in"),
    Parameter("probe_solver", "auto", one_of(*PROBE_SOLVERS),
              "solver of the L1 probes: 'auto' (stc's warm-started path solver), 'liblinear' or 'saga' "
              "(scikit-learn)"),
    Parameter("device", "auto", text(),
              "where the backbone runs: 'auto' (CUDA when available, else the CPU), 'cpu', 'cuda', 'cuda:1' and so on"),
    Parameter("dtype", "auto", one_of("auto", "float32", "float16", "bfloat16"),
              "the backbone's weights; 'auto' is float32 on the CPU, bfloat16 (or float16) on a GPU"),
    Parameter("n_jobs", -1, Allowed("None or a non-zero integer (-1: every core)",
                                    lambda value: value is None or (_is_int(value) and value != 0)),
              "probes and search fits run side by side on this many threads (-1: every core; None or 1: one), "
              "each with single-threaded BLAS", int, flag="--jobs"),
    Parameter("random_state", 42, Allowed("None or an integer", lambda value: value is None or _is_int(value)),
              "seed of the validation split, the folds, the probes and the final classifier (same seed, same "
              "model; None: a different one each fit)", int),
    Parameter("show_progress_bar", True, BOOLEAN,
              "progress bars for extraction, probes, search and long predictions", flag="--quiet",
              cli_help="no progress bars"),
    Parameter("trust_remote_code", False, BOOLEAN,
              "let a hub model run the code it ships (transformers' flag); only for sources you trust"),
    Parameter("engine", "local", one_of(*ENGINES),
              "'local' (this process) or 'ray': store shards on a Ray actor pool, probe and search fits on "
              "joblib's Ray backend (needs the extra sparsify-then-classify[ray])"),
    Parameter("ray_address", None, text("None or a non-empty 'host:port' (or 'ray://host:port')", none=True),
              "the Ray cluster to join; by default Ray starts embedded", flag="--address"),
    Parameter("workers", None, integer(1, none=True),
              "Ray actors extracting; by default one per CPU, or one per gpus_per_worker GPUs", int),
    Parameter("gpus_per_worker", 0, Allowed("a number in [0, 64]", lambda value: isinstance(value, numbers.Real)
                                            and not isinstance(value, bool) and 0 <= value <= 64),
              "GPUs per Ray actor (0: the actors run on the CPU)", float),
)


def check_parameters(estimator: Any, parameters: Mapping[str, Parameter]) -> dict[str, Any]:
    """{name: value as the estimator uses it} of every declared parameter of ``estimator``; the first refused one
    raises a one-line ValueError naming the parameter and its value."""
    return {name: parameter.allowed.check(name, getattr(estimator, name)) for name, parameter in parameters.items()}


def parameters_doc(parameters: Mapping[str, Parameter], indent: str = "    ", width: int = 116) -> str:
    """The numpydoc Parameters entries (``name : accepted values, default=...`` then the help) of ``parameters``."""
    lines = []
    for name, parameter in parameters.items():
        lines.append(f"{indent}{name} : {parameter.allowed.words}, default={parameter.default!r}")
        lines.extend(textwrap.wrap(parameter.help + ".", width, initial_indent=indent * 2,
                                   subsequent_indent=indent * 2))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser, parameters: Mapping[str, Parameter], names: Iterable[str], *,
                  defaults: Mapping[str, Any] | None = None, helps: Mapping[str, str] | None = None) -> None:
    """Add the options of parameters ``names`` to ``parser``, each stored under the parameter's name, with the
    declared default (or the one in ``defaults``) and help (or the one in ``helps``)."""
    defaults, helps = defaults or {}, helps or {}
    for name in names:
        parameter = parameters[name]
        default = defaults.get(name, parameter.default)
        help_text = helps.get(name) or parameter.cli_help or parameter.help
        if parameter.allowed is BOOLEAN:
            parser.add_argument(parameter.option, dest=name, default=default, help=help_text.replace("%", "%%"),
                                action="store_false" if parameter.default else "store_true")
            continue
        if getattr(parameter.cli_parse, "comma_separated", False):
            help_text = "comma-separated: " + help_text
        if default is not None and name not in helps:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else _cli_word(default)
            help_text += f" (default: {shown})"
        choices = parameter.allowed.choices
        metavar = ("{" + ",".join(map(_cli_word, choices)) + "}" if choices
                   else parameter.option.lstrip("-").replace("-", "_").upper())
        parser.add_argument(parameter.option, dest=name, default=default, type=parameter.cli_parse, metavar=metavar,
                            help=help_text.replace("%", "%%"))


def values_from_args(args: argparse.Namespace, parameters: Mapping[str, Parameter]) -> dict[str, Any]:
    """{name: value} of the declared parameters that ``args`` (parsed by ``add_arguments``) holds."""
    return {name: getattr(args, name) for name in parameters if hasattr(args, name)}
