"""``stc report`` and ``stc explain``: the command-line faces of the report and of per-prediction explanations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def register(subparsers) -> None:
    """Add the ``report`` and ``explain`` subcommands to the ``stc`` parser."""
    report = subparsers.add_parser("report", help="HTML page + PNG/JSON figures of what a saved model learned")
    report.add_argument("model_dir")
    report.add_argument("--out", required=True, help="directory for index.html, the PNGs and their JSON")
    report.add_argument("--data", "--dataset", dest="data", required=True,
                        help="the dataset the model was fitted on (a load_dataset name or a file): its training "
                             "texts give each neuron's top texts, its test split the confusion matrix (per-label "
                             "scores for a multi-label model)")
    report.add_argument("--text-column", default="text")
    report.add_argument("--label-column", default="label")
    report.add_argument("--label-separator", default=None,
                        help="read each label as a label set split on this string, e.g. ';' for Comedy;Drama, as "
                             "for stc fit (for a model fitted on label sets; a JSON list in a JSONL label field, and "
                             "the films dataset, are label sets without it)")
    report.add_argument("--limit", type=int, default=None, help="cap each split at N texts (as when fitting)")
    report.add_argument("--embedding-score", default=None,
                        help="JSON with the last-layer embedding baseline's validation score ({'val_score': x} or "
                             "an stc demo summary); default: MODEL_DIR/demo_summary.json if present, else fit it")
    report.add_argument("--no-embedding", action="store_true", help="do not fit the embedding baseline")
    report.add_argument("--top-k", type=int, default=12, help="neurons listed (default 12)")
    report.add_argument("--texts-per-neuron", type=int, default=3)
    report.add_argument("--device", default=None)
    report.add_argument("--quiet", action="store_true")
    report.set_defaults(handler=_cmd_report)

    explain = subparsers.add_parser("explain", help="the predicted label and the neurons that pushed it most")
    explain.add_argument("model_dir")
    explain.add_argument("text", help="the text to classify and explain")
    explain.add_argument("--top-k", type=int, default=10)
    explain.add_argument("--json", action="store_true", help="print the explanation as JSON")
    explain.add_argument("--device", default=None)
    explain.set_defaults(handler=_cmd_explain)


def _load(args):
    from .. import load

    model_dir = Path(args.model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {str(model_dir)!r} does not exist")
    clf = load(model_dir, device=args.device)
    if getattr(args, "quiet", True):
        clf.set_params(show_progress_bar=False)
    return clf


def _cmd_report(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from . import build_report, read_embedding_score

    clf = _load(args)
    dataset = load_dataset(args.data, text_column=args.text_column, label_column=args.label_column,
                           limit=args.limit, label_separator=args.label_separator)
    summary = Path(args.model_dir) / "demo_summary.json"
    embedding = None
    if args.embedding_score:
        embedding = read_embedding_score(args.embedding_score)
    elif summary.is_file() and not args.no_embedding:
        embedding = read_embedding_score(summary)
    page = build_report(clf, dataset, args.out, embedding=embedding, fit_embedding=not args.no_embedding,
                        top_k=args.top_k, texts_per_neuron=args.texts_per_neuron,
                        show_progress_bar=not args.quiet)
    print(f"report written to {page}", flush=True)
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    clf = _load(args)
    explanation = clf.explain(args.text, top_k=args.top_k)
    if args.json:
        print(json.dumps(explanation, indent=1))
        return 0
    print(format_explanation(explanation))
    return 0


def _neuron_lines(contributions: list[dict]) -> list[str]:
    lines = [f"{'neuron':<24} {'weight':>8} {'activation':>11} {'standardised':>13} {'contribution':>13}  peak token"]
    for entry in contributions:
        peak = entry.get("peak")
        where = f"{peak['token']!r} at token {peak['position']}" + (f" of window {peak['window']}" if peak["window"]
                                                                     else "") if peak else ""
        lines.append(f"{entry['neuron']:<24} {entry['weight']:>+8.3f} {entry['activation']:>11.4f} "
                     f"{entry['standardised_activation']:>+13.3f} {entry['contribution']:>+13.4f}  {where}")
    return lines


def _format_multilabel(explanation: dict) -> str:
    """A multi-label explanation: the labels, each label's probability and threshold, then per explained label its
    decision and neurons."""
    labels = explanation["labels"]
    lines = [f"labels: {', '.join(map(str, labels)) if labels else '(none reaches its threshold)'}",
             "probabilities (threshold): " + ", ".join(
                 f"{label} {p:.3f} ({explanation['thresholds'][label]:.3f})"
                 for label, p in explanation["probabilities"].items())]
    for label, part in explanation["explained"].items():
        lines.append(f"decision toward {label}: {part['decision']:+.4f} = intercept {part['intercept']:+.4f} + the "
                     f"contributions of {explanation['n_features']} neurons")
        lines += _neuron_lines(part["contributions"])
    return "\n".join(lines)


def format_explanation(explanation: dict) -> str:
    """A short readable account of an explanation: label, probabilities, then one line per neuron (multi-label:
    the labels, then each explained label's neurons)."""
    if "explained" in explanation:
        return _format_multilabel(explanation)
    row = explanation["explained_row"]
    target = explanation["decision_classes"][row]
    lines = [f"label: {explanation['label']} (probability {explanation['probability']:.3f})",
             "probabilities: " + ", ".join(f"{label} {p:.3f}" for label, p in explanation["probabilities"].items()),
             f"decision toward {target}: {explanation['decision'][row]:+.4f} = intercept "
             f"{explanation['intercept'][row]:+.4f} + the contributions of {explanation['n_features']} neurons"]
    return "\n".join(lines + _neuron_lines(explanation["contributions"]))
