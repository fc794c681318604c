"""The ``stc`` command: a thin face over the library. Errors are one line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._parameters import STC_PARAMETERS, add_arguments, values_from_args
from ._summary import search_lines, summary_lines

__all__ = ["main", "build_parser"]

#: Modules adding more subcommands; each exposes ``register(subparsers)``.
_EXTRA_COMMAND_MODULES: tuple[str, ...] = ("stc.report._cli", "stc._experiment_cli", "stc.export._cli",
                                            "stc.serving._cli", "stc._bundle_cli")

_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, KeyError, ImportError, RuntimeError, MemoryError)


def _add_data_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--data", required=required,
                        help="dataset name (mr, bbc-news, tweets, reuters, films, imdb, sst2, edos:PATH, hf:NAME) "
                             "or a CSV/TSV/JSONL/Parquet file")
    parser.add_argument("--text-column", default="text", help="column holding the text (default: text)")
    parser.add_argument("--label-column", default="label", help="column holding the label (default: label)")
    parser.add_argument("--text-pair-column", default=None,
                        help="a second text column: classify (text, pair) pairs, e.g. premise and hypothesis "
                             "(files; the model is then fitted on, and predicts, pairs)")
    parser.add_argument("--label-separator", default=None,
                        help="read each label as a label set split on this string, e.g. ';' for Comedy;Drama "
                             "(CSV/TSV/JSONL/Parquet files; a JSON list in a JSONL label field is a label set anyway)")
    parser.add_argument("--limit", type=int, default=None, help="cap each split at N texts (stratified, seeded)")


#: STCClassifier parameters that ``stc fit`` and ``stc extract`` share: the backbone, tokenisation and the engine.
_MODEL_OPTIONS = ("model", "max_length", "windows", "window_overlap", "token_budget", "device", "dtype",
                  "trust_remote_code", "store_dir", "show_progress_bar", "engine", "ray_address", "workers",
                  "gpus_per_worker", "representations", "poolings", "store_dtype")


def _dataset(args):
    from .data import load_dataset

    return load_dataset(args.data, text_column=args.text_column, label_column=args.label_column, limit=args.limit,
                        label_separator=args.label_separator, text_pair_column=args.text_pair_column)


def _classifier(args, metric: str):
    from .classifier import STCClassifier

    return STCClassifier(**{**values_from_args(args, STC_PARAMETERS), "metric": metric})


def _log(message: str) -> None:
    print(message, flush=True)


# --- subcommands ---------------------------------------------------------------------------------------------------

def _cmd_fit(args) -> int:
    dataset = _dataset(args)
    metric = args.metric or dataset.metric
    _log(f"[stc] {dataset.description}")
    clf = _classifier(args, metric)
    validation = dataset.validation
    clf.fit(dataset.train.texts, dataset.train.labels, X_val=validation.texts if validation else None,
            y_val=validation.labels if validation else None)
    for line in summary_lines(clf):
        _log(line)
    _log(f"fit {clf.fit_seconds_:.1f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in clf.fit_timings_.items()))
    clf.save(args.out, copy_backbone=args.copy_backbone, data_name=args.data)  # the card names the data as the user did
    _log(f"saved to {args.out}")  # before the test split is scored: nothing after the fit can lose it
    if dataset.test is not None:
        scores = _scores(clf, dataset.test, [metric])  # multi-label accuracy is subset accuracy
        _log(f"test {metric}: {scores.get(metric, scores.get('subset_accuracy')):.4f}")
    return 0


def _scores(clf, split, metrics: Sequence[str]) -> dict[str, float]:
    """Each metric of the model on a labelled split, from one pass of the backbone over its texts (the labels are
    the probabilities' argmax, read through ``classes_``; for a multi-label model, every multi-label metric and
    each label's F1, precision, recall and support)."""
    from ._metrics import score
    from ._validation import check_labels

    if clf.readout_.multilabel:
        return _multilabel_scores(clf, split)
    labels = check_labels(split.labels, len(split.texts), "labels")
    unseen = sorted(set(labels.tolist()) - set(clf.classes_.tolist()), key=str)
    if unseen:
        raise ValueError(f"the data holds labels the model never saw: {unseen[:5]} (model classes: "
                         f"{clf.classes_.tolist()})")
    import numpy as np

    from .calibration import expected_calibration_error, log_loss

    proba = clf.predict_proba(split.texts)
    predicted = clf.classes_[proba.argmax(axis=1)]
    scores = {metric: score(labels, predicted, metric) for metric in metrics}
    codes = np.searchsorted(clf.classes_, labels)
    return {**scores, "ece": expected_calibration_error(proba, codes), "log_loss": log_loss(proba, codes)}


def _multilabel_scores(clf, split) -> dict:
    """The multi-label metrics of a multi-label model on a split of label sets (``_multilabel.multilabel_report``)."""
    from ._multilabel import encode_label_sets, is_multilabel_target, multilabel_report

    if not is_multilabel_target(split.labels):
        raise ValueError("the model is multi-label but the data holds one label per text: read the label column "
                         "as label sets (--label-separator)")
    truth = encode_label_sets(split.labels, len(split.texts), "the data's labels", classes=clf.classes_)[1]
    head = clf.readout_.head
    predicted = head.labels_from_probabilities(clf.predict_proba(split.texts))
    return multilabel_report(truth, predicted, head.plain_classes())


def _cmd_predict(args) -> int:
    from ._files import atomic_path
    from .predictor import prediction_labels
    from .data import read_texts

    from .bundle import is_bundle

    if is_bundle(args.model_dir):  # many tasks: one row per text with every task's answer
        from ._bundle_cli import predict_bundle

        return predict_bundle(args, read_texts(args.data, text_column=args.text_column,
                                               text_pair_column=args.text_pair_column))
    if args.runtime == "torch":
        from . import load

        clf = load(args.model_dir, device=args.device)
        clf.set_params(show_progress_bar=not args.quiet)
        texts = read_texts(args.data, text_column=args.text_column, text_pair_column=args.text_pair_column)
        probabilities = clf.predict_proba(texts)
        head = clf.readout_.head
    else:  # MODEL_DIR is an `stc export` directory
        from .runtimes import load_predictor

        predictor = load_predictor(args.model_dir, runtime=args.runtime)
        texts = read_texts(args.data, text_column=args.text_column, text_pair_column=args.text_pair_column)
        probabilities = predictor.predict_proba(texts)
        if predictor.heads is not None:  # a bundle's export: one row per text with every task's answer
            from ._bundle_cli import write_task_predictions

            return write_task_predictions(args.out, texts, predictor.heads, probabilities)
        head = predictor.head
    field, labels = prediction_labels(head, probabilities)
    out = Path(args.out)
    classes = [str(c) for c in head.plain_classes()]
    with atomic_path(out) as partial, open(partial, "w", encoding="utf-8", newline="") as handle:
        pairs = bool(texts) and isinstance(texts[0], tuple)  # a pair's texts in "text" and "text_pair"
        if out.suffix.lower() == ".csv":  # label sets joined by ";" in one column
            writer = csv.writer(handle)
            writer.writerow(["text"] + (["text_pair"] if pairs else []) + [field] + [f"p_{c}" for c in classes])
            for text, label, row in zip(texts, labels, probabilities.tolist()):
                shown = ";".join(map(str, label)) if field == "labels" else label
                writer.writerow([*(text if pairs else [text]), shown] + [f"{p:.6f}" for p in row])
        else:
            for text, label, row in zip(texts, labels, probabilities.tolist()):
                shown = {"text": text[0], "text_pair": text[1]} if pairs else {"text": text}
                handle.write(json.dumps({**shown, field: label,
                                         "probabilities": dict(zip(classes, row))}, ensure_ascii=False) + "\n")
    _log(f"wrote {len(texts)} predictions to {out}")
    return 0


def _cmd_evaluate(args) -> int:
    from . import data, load

    clf = load(args.model_dir, device=args.device)
    clf.set_params(show_progress_bar=not args.quiet)
    dataset = _dataset(args)
    parts = [part for part in (dataset.train, dataset.validation, dataset.test) if part is not None]
    split = data.Split(sum((p.texts for p in parts), []), sum((list(p.labels) for p in parts), [])) \
        if args.split == "all" else getattr(dataset, args.split)
    if split is None:
        raise ValueError(f"dataset {args.data!r} has no {args.split} split")
    if args.split != "all" and Path(args.data).is_file():  # a held-out file is scored whole with --split all
        print(f"stc: the {args.split} split: {len(split.texts)} of the {sum(map(len, parts))} texts read from the "
              "file (--split all scores every one)", file=sys.stderr)
    report = {"split": args.split, "n": len(split.texts)}
    # ECE: 15 equal-width confidence bins; both calibration figures read the same (calibrated) probabilities
    for metric, value in _scores(clf, split, ("accuracy", "macro_f1")).items():
        report[metric] = round(value, 6) if isinstance(value, float) else value
    _log(json.dumps(report))
    return 0


def _cmd_extract(args) -> int:
    from .backbone import load_backbone
    from .distributed import make_engine
    from .extract import default_poolings
    from .store import ExtractionSettings, build_store

    shard = None
    if args.shard:
        try:
            index, count = (int(part) for part in args.shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {args.shard!r}") from None
        shard = (index, count)
    from ._validation import check_poolings, check_representations

    engine = make_engine(args.engine, args.ray_address, args.workers, args.gpus_per_worker)
    if engine is not None:
        engine.connect()  # an unreachable cluster is reported before the model and the data are loaded
    representations = check_representations(args.representations)
    poolings = check_poolings(args.poolings) if args.poolings else None
    dataset = _dataset(args)
    backbone = load_backbone(args.model, device=args.device, dtype=args.dtype,
                             trust_remote_code=args.trust_remote_code)
    settings = ExtractionSettings(representations=representations, poolings=poolings or default_poolings(backbone),
                                  max_length=args.max_length,
                                  windows=args.windows, window_overlap=args.window_overlap, dtype=args.store_dtype)
    splits = [s for s in (dataset.train, dataset.validation, dataset.test) if s is not None]
    texts = [text for split in (splits if args.split == "all" else [getattr(dataset, args.split)]) for text in
             split.texts]
    store = build_store(backbone, texts, settings, root=args.store_dir, shard=shard, token_budget=args.token_budget,
                        shard_size=args.shard_size, show_progress_bar=args.show_progress_bar, engine=engine)
    if store is None:
        _log(f"shard {args.shard} done; the store completes when every shard is extracted")
    else:
        _log(f"store complete: {store.path} ({len(store.keys)} arrays, {store.n_texts} texts)")
    return 0


def _cmd_info(args) -> int:
    if args.model_dir is None:
        from ._version import __version__
        from .backbone import MODEL_ALIASES
        from .data import available_datasets

        _log(f"stc {__version__}")
        _log("models:\n" + "\n".join(f"  {name}: {text}" for name, text in MODEL_ALIASES.items()))
        _log("datasets:\n" + "\n".join(f"  {name}: {text}" for name, text in available_datasets().items()))
        return 0
    from . import load
    from .bundle import is_bundle

    if is_bundle(args.model_dir):
        from ._bundle_cli import info_lines

        for line in info_lines(args.model_dir):
            _log(line)
        return 0
    clf = load(args.model_dir, check_backbone=False)
    _log(f"backbone: {clf.backbone_['name']} ({clf.backbone_['source']}), sha256 "
         f"{clf.backbone_['weights_sha256'][:16]}…")
    if clf.readout_.extraction.pairs:
        _log("inputs: text pairs (text_a, text_b), read as the tokenizer encodes pairs")
    if clf.readout_.multilabel:
        thresholds = dict(zip(map(str, clf.readout_.head.plain_classes()), clf.readout_.head.thresholds.round(3).tolist()))
        _log(f"labels (multi-label, {clf.target_}; threshold of each): {thresholds}")
    else:
        _log(f"classes: {clf.classes_.tolist()}")
    for line in summary_lines(clf):
        _log(line)
    if getattr(clf, "selection_", None) is None:  # a model saved before the selection estimates
        _log(f"validation {clf.metric_}: {clf.val_score_:.4f}")
    for line in search_lines(clf):
        _log(line)
    return 0


def _cmd_demo(args) -> int:
    """The main job: STC on the embedded default (MiniLM on MR) beside the last-layer embedding baseline."""
    from ._metrics import score
    from .baselines import EmbeddingClassifier
    from .classifier import STCClassifier
    from .data import load_dataset

    started = time.perf_counter()
    dataset = load_dataset(args.data, limit=args.limit)
    if dataset.multilabel:
        raise ValueError(f"{args.data} is multi-label: stc demo compares single-label classifiers; fit it with "
                         f"stc fit --data {args.data}")
    _log(f"[stc demo] {dataset.description}")
    _log(f"[stc demo] train {len(dataset.train)}, validation {len(dataset.validation)}, test {len(dataset.test)}")
    split = dict(X_val=dataset.validation.texts, y_val=dataset.validation.labels)
    rows = []
    for name, estimator in (
            ("STC", STCClassifier(model=args.model, metric=dataset.metric, show_progress_bar=args.show_progress_bar,
                                  store_dir=args.store_dir)),
            ("last-layer embedding", EmbeddingClassifier(model=args.model, metric=dataset.metric,
                                                         show_progress_bar=args.show_progress_bar,
                                                         store_dir=args.store_dir))):
        _log(f"[stc demo] fitting {name} …")
        estimator.fit(dataset.train.texts, dataset.train.labels, **split)
        predict_started = time.perf_counter()
        predictions = estimator.predict(dataset.test.texts)
        predict_seconds = time.perf_counter() - predict_started
        rows.append({"method": name, "val": estimator.val_score_,
                     "test": score(dataset.test.labels, predictions, dataset.metric),
                     "features": estimator.n_features_, "exit_layer": estimator.exit_layer_,
                     "fit_s": estimator.fit_seconds_, "test_texts_per_s": len(dataset.test) / predict_seconds})
        if name == "STC":
            stc_model = estimator
    _log("\n(held-out: STC's chosen candidate over its cross-validation folds; the embedding's validation split)")
    _log(f"{'method':<22} {'held-out ' + dataset.metric[:6]:>16} {'test ' + dataset.metric:>14} {'features':>9} "
         f"{'exit':>5} {'fit s':>7} {'test texts/s':>13}")
    for row in rows:
        _log(f"{row['method']:<22} {row['val']:>16.4f} {row['test']:>14.4f} {row['features']:>9} "
             f"{row['exit_layer']:>5} {row['fit_s']:>7.1f} {row['test_texts_per_s']:>13.1f}")
    _log("")
    for line in summary_lines(stc_model):
        _log(line)
    stc_model.save(args.out)
    summary = {"dataset": dataset.description, "model": args.model, "rows": rows,
               "configuration": stc_model.configuration_, "wall_seconds": time.perf_counter() - started}
    Path(args.out, "demo_summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    _log(f"saved the STC model to {args.out}; wall time {summary['wall_seconds']:.0f} s")
    return 0


# --- parser ----------------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stc", description="Sparsify-then-Classify: text classifiers read from "
                                                             "a transformer's internal neurons.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = sub.add_parser("fit", help="fit STC on a dataset and save the model")
    _add_data_arguments(fit)
    fit.add_argument("--out", required=True, help="directory to save the model in")
    # every STCClassifier parameter, declared in stc._parameters; the metric defaults to the dataset's
    add_arguments(fit, STC_PARAMETERS, STC_PARAMETERS, defaults={"metric": None},
                  helps={"metric": "the held-out metric every choice is made by (default: the dataset's)"})
    fit.add_argument("--copy-backbone", action="store_true", help="copy the backbone's weights into the model dir")
    fit.set_defaults(handler=_cmd_fit)

    predict = sub.add_parser("predict", help="label the texts of a file; writes JSONL or CSV with probabilities")
    predict.add_argument("model_dir")
    predict.add_argument("--data", required=True, help="CSV/TSV/JSONL/Parquet file, or .txt with one text per line")
    predict.add_argument("--text-column", default="text")
    predict.add_argument("--text-pair-column", default=None,
                         help="the second text of each pair, for a model fitted on text pairs")
    predict.add_argument("--out", required=True, help="output file: .jsonl or .csv")
    predict.add_argument("--device", default=None)
    predict.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                         help="onnx: MODEL_DIR is a directory made by `stc export` (needs the onnx extra)")
    predict.add_argument("--quiet", action="store_true")
    predict.set_defaults(handler=_cmd_predict)

    evaluate = sub.add_parser("evaluate", help="accuracy and macro-F1 of a saved model on a labelled split")
    evaluate.add_argument("model_dir")
    _add_data_arguments(evaluate)
    evaluate.add_argument("--split", choices=("train", "validation", "test", "all"), default="test",
                          help="the split to score (all: every text, e.g. a held-out file)")
    evaluate.add_argument("--device", default=None)
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(handler=_cmd_evaluate)

    extract = sub.add_parser("extract", help="extract pooled activations into an on-disk store (resumable)")
    _add_data_arguments(extract)
    add_arguments(extract, STC_PARAMETERS, _MODEL_OPTIONS)
    extract.add_argument("--split", choices=("all", "train", "validation", "test"), default="all")
    extract.add_argument("--shard", default=None, help="i/n: extract only this slice, for parallel workers")
    extract.add_argument("--shard-size", type=int, default=None, help="texts per shard (default: by memory)")
    extract.set_defaults(handler=_cmd_extract)

    info = sub.add_parser("info", help="describe a saved model, or list models and datasets")
    info.add_argument("model_dir", nargs="?", default=None)
    info.set_defaults(handler=_cmd_info)

    demo = sub.add_parser("demo", help="the main job: STC on MiniLM + MR beside the embedding baseline")
    demo.add_argument("--data", default="mr")
    demo.add_argument("--limit", type=int, default=None, help="cap each split (for a quick look)")
    demo.add_argument("--out", default="stc-runs/demo-model")
    add_arguments(demo, STC_PARAMETERS, ("model", "store_dir", "show_progress_bar"))
    demo.set_defaults(handler=_cmd_demo)

    for module_name in _EXTRA_COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except _USER_ERRORS as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"stc: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
