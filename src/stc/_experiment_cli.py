"""``stc experiment``: STC beside the baselines (each selectable with --methods), JSON + Markdown table."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import MISSING, fields

from ._parameters import STC_PARAMETERS, add_arguments

__all__ = ["register"]


def _limits(text: str | None, option: str) -> dict[str, int]:
    """'finetune=2000,icl=500' -> {'finetune': 2000, 'icl': 500}."""
    limits = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        method, _, number = part.partition("=")
        try:
            limits[method.strip()] = int(number)
        except ValueError:
            raise ValueError(f"{option} must look like method=N[,method=N], got {text!r}") from None
    return limits


def _cmd_experiment(args) -> int:
    from .experiment import ExperimentSettings, run_experiment

    settings = ExperimentSettings(
        dataset=args.dataset, model=args.model, methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        out=args.out, work_dir=args.work_dir, seed=args.seed, limit=args.limit,
        train_limits=_limits(args.train_limit, "--train-limit"), test_limits=_limits(args.test_limit, "--test-limit"),
        max_length=args.max_length, windows=args.windows, finetune_epochs=args.finetune_epochs,
        finetune_learning_rate=args.finetune_lr, finetune_batch_size=args.finetune_batch_size,
        icl_model=args.icl_model, icl_shots=args.icl_shots, setfit_iterations=args.setfit_iterations,
        setfit_max_steps=args.setfit_max_steps or None, probe_solver=args.probe_solver, n_jobs=args.n_jobs,
        threads=args.threads, stc_poolings=args.stc_poolings or None, stc_probe_cs=args.stc_probe_cs or None,
        device=args.device, show_progress_bar=not args.quiet, command="stc " + shlex.join(sys.argv[1:]))
    rows = run_experiment(settings)
    print(f"[experiment] {len(rows)} rows written to {args.out} (results-table.md holds every row there)", flush=True)
    return 0


def _defaults() -> dict:
    """ExperimentSettings' field defaults: the options below restate none of them."""
    from .experiment import ExperimentSettings

    return {f.name: f.default for f in fields(ExperimentSettings) if f.default is not MISSING}


def register(subparsers) -> None:
    """Add ``stc experiment`` to the stc command."""
    default = _defaults()
    parser = subparsers.add_parser(
        "experiment", help="run STC and the baselines on identical splits; write JSON and a Markdown table",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", required=True, help="dataset name (mr, bbc-news, tweets, …) or file")
    parser.add_argument("--methods", default=",".join(default["methods"]),
                        help="comma-separated: stc, embedding, finetune, stc-finetuned, icl, setfit")
    parser.add_argument("--out", required=True, help="directory for <dataset>-<model>.json and results-table.md")
    parser.add_argument("--work-dir", default=None, help="fine-tuned checkpoints and activation stores "
                                                         "(default: --out)")
    parser.add_argument("--seed", type=int, default=default["seed"])
    parser.add_argument("--limit", type=int, default=None, help="stratified cap on every split, all methods")
    parser.add_argument("--train-limit", default=None, help="per-method cap on training texts, e.g. finetune=2000")
    parser.add_argument("--test-limit", default=None, help="per-method cap on test texts, e.g. icl=500")
    parser.add_argument("--finetune-epochs", type=int, default=default["finetune_epochs"])
    parser.add_argument("--finetune-lr", type=float, default=default["finetune_learning_rate"])
    parser.add_argument("--finetune-batch-size", type=int, default=default["finetune_batch_size"])
    parser.add_argument("--icl-model", default=default["icl_model"], help="causal LM for in-context learning")
    parser.add_argument("--icl-shots", type=int, default=default["icl_shots"], help="demonstrations per class")
    parser.add_argument("--setfit-iterations", type=int, default=default["setfit_iterations"])
    parser.add_argument("--setfit-max-steps", type=int, default=default["setfit_max_steps"], help="0 = no cap")
    # the options that are STCClassifier parameters, declared in stc._parameters (same flags, same defaults)
    add_arguments(parser, STC_PARAMETERS, ("model", "max_length", "windows", "probe_solver", "n_jobs", "device"),
                  helps={"model": "backbone for stc, embedding, finetune, setfit",
                         "max_length": "tokens per text (fine-tuning default 256)",
                         "windows": "STC and embedding: windows instead of truncation",
                         "probe_solver": "STC: solver of the L1 probes",
                         "n_jobs": "STC: threads for probes and search (-1: every core)",
                         "device": "where the models run"})
    parser.add_argument("--stc-poolings", type=STC_PARAMETERS["poolings"].parse, default=None,
                        help="STC: poolings searched, e.g. mean (default: STC's)")
    parser.add_argument("--stc-probe-cs", type=STC_PARAMETERS["probe_Cs"].parse, default=None,
                        help="STC: probe C grid, e.g. 0.01,0.1 (default: STC's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_cmd_experiment)
