"""``stc experiment``: STC beside the baselines (each selectable with --methods), JSON + Markdown table."""

from __future__ import annotations

import argparse
import shlex
import sys

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
        setfit_max_steps=args.setfit_max_steps or None, probe_solver=args.probe_solver, n_jobs=args.jobs, threads=args.threads,
        stc_poolings=tuple(args.stc_poolings.split(",")) if args.stc_poolings else None,
        stc_probe_cs=tuple(float(c) for c in args.stc_probe_cs.split(",")) if args.stc_probe_cs else None,
        device=args.device,
        show_progress_bar=not args.quiet, command="stc " + shlex.join(sys.argv[1:]))
    rows = run_experiment(settings)
    print(f"[experiment] {len(rows)} rows written to {args.out} (results-table.md holds every row there)", flush=True)
    return 0


def register(subparsers) -> None:
    """Add ``stc experiment`` to the stc command."""
    parser = subparsers.add_parser(
        "experiment", help="run STC and the baselines on identical splits; write JSON and a Markdown table",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", required=True, help="dataset name (mr, bbc-news, tweets, …) or file")
    parser.add_argument("--model", default="minilm", help="backbone for stc, embedding, finetune, setfit")
    parser.add_argument("--methods", default="stc,embedding,finetune,stc-finetuned,icl",
                        help="comma-separated: stc, embedding, finetune, stc-finetuned, icl, setfit")
    parser.add_argument("--out", required=True, help="directory for <dataset>-<model>.json and results-table.md")
    parser.add_argument("--work-dir", default=None, help="fine-tuned checkpoints and activation stores "
                                                         "(default: --out)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit", type=int, default=None, help="stratified cap on every split, all methods")
    parser.add_argument("--train-limit", default=None, help="per-method cap on training texts, e.g. finetune=2000")
    parser.add_argument("--test-limit", default=None, help="per-method cap on test texts, e.g. icl=500")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per text (fine-tuning default 256)")
    parser.add_argument("--windows", action="store_true", help="STC and embedding: windows instead of truncation")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--finetune-lr", type=float, default=5e-5)
    parser.add_argument("--finetune-batch-size", type=int, default=16)
    parser.add_argument("--icl-model", default="smollm2", help="causal LM for in-context learning")
    parser.add_argument("--icl-shots", type=int, default=1, help="demonstrations per class")
    parser.add_argument("--setfit-iterations", type=int, default=5)
    parser.add_argument("--setfit-max-steps", type=int, default=500, help="0 = no cap")
    parser.add_argument("--probe-solver", default="auto", choices=("auto", "liblinear", "saga"),
                        help="STC: solver of the L1 probes")
    parser.add_argument("--stc-poolings", default=None, help="STC: poolings searched, e.g. mean (default: STC's)")
    parser.add_argument("--stc-probe-cs", default=None, help="STC: probe C grid, e.g. 0.01,0.1 (default: STC's)")
    parser.add_argument("--jobs", type=int, default=-1,
                        help="STC: threads for probes and search (-1: every core)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_cmd_experiment)
