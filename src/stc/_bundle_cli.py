"""``stc bundle MODEL_DIR... --out DIR`` and ``stc predict BUNDLE_DIR``: many tasks read from one forward pass."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

__all__ = ["register", "predict_bundle", "write_task_predictions"]


def _cmd_bundle(args) -> int:
    from .bundle import Bundle
    from .readout import Readout

    names = [name.strip() for name in args.names.split(",")] if args.names else \
        [Path(directory).resolve().name for directory in args.model_dirs]
    if len(names) != len(args.model_dirs):
        raise ValueError(f"--names gives {len(names)} names for {len(args.model_dirs)} models")
    bundle = Bundle.from_models([Readout.from_files(directory) for directory in args.model_dirs], names=names)
    bundle.save(args.out)
    union = sum(len(columns) for columns in bundle.union_columns.values())
    own = sum(readout.n_features for readout in bundle.tasks.values())
    print(f"stc bundle: {len(names)} tasks ({', '.join(names)}) on {bundle.tasks[names[0]].backbone.name}, one "
          f"pass to layer {bundle.exit_layer}, {union} neurons pooled for {own} read; written to {args.out}",
          file=sys.stderr)
    return 0


def _cell(label) -> str:
    return ";".join(map(str, label)) if isinstance(label, list) else label


def predict_bundle(args, texts: list[str]) -> int:
    """``stc predict`` on a bundle: one row per text with every task's label and probabilities."""
    from .bundle import Bundle

    bundle = Bundle.load(args.model_dir)
    if args.runtime != "torch":
        raise ValueError("a bundle directory runs with --runtime torch; for ONNX, export it (stc export BUNDLE_DIR "
                         "--out DIR) and predict from DIR with --runtime onnx")
    backbone = bundle.load_backbone(device=args.device or "auto")
    probabilities = bundle.predict_proba(texts, backbone=backbone, show_progress_bar=not args.quiet)
    return write_task_predictions(args.out, texts, {name: readout.head for name, readout in bundle.tasks.items()},
                                  probabilities)


def write_task_predictions(out, texts: list[str], heads: dict, probabilities: dict) -> int:
    """One row per text with every task's label and probabilities (CSV or JSON lines by ``out``'s suffix), from a
    bundle or from its ONNX export: each task's head by name and its probabilities (n_texts, its n_classes)."""
    from ._files import atomic_path
    from .predictor import prediction_labels

    names = list(heads)
    classes = {name: [str(c) for c in head.classes.tolist()] for name, head in heads.items()}
    # a multi-label task answers "labels" (a list; ";"-joined in CSV), the others "label"
    answers = {name: prediction_labels(heads[name], proba) for name, proba in probabilities.items()}
    fields = {name: field for name, (field, _) in answers.items()}
    labels = {name: values for name, (_, values) in answers.items()}
    out = Path(out)
    with atomic_path(out) as partial, open(partial, "w", encoding="utf-8", newline="") as handle:
        if out.suffix.lower() == ".csv":
            writer = csv.writer(handle)
            writer.writerow(["text"] + [column for name in names for column in
                                        [f"{name}.{fields[name]}"] + [f"{name}.p_{c}" for c in classes[name]]])
            for i, text in enumerate(texts):
                writer.writerow([text] + [value for name in names for value in
                                          [_cell(labels[name][i])] + [f"{p:.6f}" for p in probabilities[name][i]]])
        else:
            for i, text in enumerate(texts):
                tasks = {name: {fields[name]: labels[name][i],
                                "probabilities": dict(zip(classes[name], probabilities[name][i].tolist()))}
                         for name in names}
                handle.write(json.dumps({"text": text, "tasks": tasks}, ensure_ascii=False) + "\n")
    print(f"wrote {len(texts)} predictions of {len(names)} tasks to {out}", file=sys.stderr)
    return 0


def info_lines(directory) -> list[str]:
    """``stc info BUNDLE_DIR``: the shared backbone, the one pass, and each task's classes and readout."""
    from .bundle import Bundle

    bundle = Bundle.load(directory)
    reference = next(iter(bundle.tasks.values()))
    lines = [f"bundle of {len(bundle.names)} tasks on {reference.backbone.name}, sha256 {reference.backbone.sha256[:16]}…; "
             f"one pass to layer {bundle.exit_layer}, {sum(len(c) for c in bundle.union_columns.values())} neurons "
             f"pooled"]
    for name, readout in bundle.tasks.items():
        what = "labels (multi-label)" if readout.multilabel else "classes"
        lines.append(f"  {name}: {what} {[c.item() if hasattr(c, 'item') else c for c in readout.classes]}; "
                     f"{readout.chosen.describe()}; {readout.n_features} neurons")
    return lines


def register(sub: argparse._SubParsersAction) -> None:
    bundle = sub.add_parser("bundle", help="bundle models fitted on one backbone: many tasks, one forward pass")
    bundle.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR", help="saved models (stc fit --out)")
    bundle.add_argument("--out", required=True, help="the bundle directory to write")
    bundle.add_argument("--names", default=None,
                        help="task names, comma-separated, one per model (default: each model directory's name)")
    bundle.set_defaults(handler=_cmd_bundle)
