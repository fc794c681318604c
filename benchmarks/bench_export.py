"""ONNX export: texts/s and accuracy of torch, ONNX fp32 and ONNX int8 on the MR test split, in one process.

    python benchmarks/bench_export.py                                    # stc-runs/demo-model, fitted if missing
    python benchmarks/bench_export.py --model-dir DIR --limit 500        # a quicker look

Every runtime labels the same test texts, interleaved, ``--repeats`` times; the median is reported. The head
(scaler + logistic regression) is the same numpy code for all three, so the runtimes differ only in how the
kept-neuron features are computed. A profile line splits each runtime's time into tokenising and the rest;
``--profile N`` adds onnxruntime's own profile of each ONNX graph over N test texts: the share of time per operator
type (MatMul, MatMulInteger, DynamicQuantizeLinear, ...). ``--threads`` sets torch's and onnxruntime's intra-op
threads alike (default: each runtime's own, one per core).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import stc
from stc.data import load_dataset
from stc.export import OnnxPredictor, export_onnx
from stc.extract import tokenize_with
from stc.predictor import TorchPredictor


def fitted_model(model_dir: Path, data: str) -> stc.STCClassifier:
    if (model_dir / "stc_model.json").exists():
        return stc.load(model_dir)
    dataset = load_dataset(data)
    clf = stc.STCClassifier("minilm", metric=dataset.metric, show_progress_bar=False)
    clf.fit(dataset.train.texts, dataset.train.labels, X_val=dataset.validation.texts,
            y_val=dataset.validation.labels)
    clf.save(model_dir)
    return clf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="stc-runs/demo-model")
    parser.add_argument("--data", default="mr")
    parser.add_argument("--export-dir", default="stc-runs/bench-export")
    parser.add_argument("--limit", type=int, default=None, help="time only the first N test texts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of torch and onnxruntime")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile each ONNX graph with onnxruntime's profiler over the first N test texts")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    clf = fitted_model(Path(args.model_dir), args.data)
    clf.show_progress_bar = False
    test = load_dataset(args.data).test
    texts, labels = test.texts[:args.limit], np.asarray(test.labels[:args.limit])
    exports = {}
    for name, quantize in (("onnx-fp32", None), ("onnx-int8", "int8"), ("onnx-int8-ffn-out", "int8-ffn-out")):
        started = time.perf_counter()
        path = export_onnx(clf, Path(args.export_dir) / name, quantize=quantize)
        exports[name] = {"seconds": time.perf_counter() - started,
                         "mb": (path / "model.onnx").stat().st_size / 2**20}
    runtimes = {"torch": TorchPredictor(clf), **{name: OnnxPredictor(Path(args.export_dir) / name, threads=args.threads)
                                                 for name in exports}}
    for predictor in runtimes.values():  # warm-up
        predictor.predict_proba(texts[:64])
    seconds = {name: [] for name in runtimes}
    probabilities = {}
    for _ in range(args.repeats):
        for name, predictor in runtimes.items():
            started = time.perf_counter()
            probabilities[name] = predictor.predict_proba(texts)
            seconds[name].append(time.perf_counter() - started)
    started = time.perf_counter()
    tokenize_with(runtimes["onnx-fp32"].tokenizer, texts, max_length=clf.extraction_["max_length"])
    tokenize_seconds = time.perf_counter() - started
    classes = np.asarray(runtimes["torch"].head.classes)
    torch_speed = len(texts) / statistics.median(seconds["torch"])
    rows = []
    for name in runtimes:
        median = statistics.median(seconds[name])
        accuracy = float((classes[probabilities[name].argmax(1)] == labels).mean())
        rows.append({"runtime": name, "texts_per_s": len(texts) / median, "vs_torch": len(texts) / median / torch_speed,
                     "accuracy": accuracy, "max_abs_prob_diff_vs_torch":
                         float(np.abs(probabilities[name] - probabilities["torch"]).max()),
                     "seconds": [round(s, 3) for s in seconds[name]], "tokenize_share": tokenize_seconds / median,
                     **({"export_s": exports[name]["seconds"], "model_mb": exports[name]["mb"]}
                        if name in exports else {})})
    print(f"{args.data} test split: {len(texts)} texts; model {args.model_dir}: exit layer {clf.exit_layer_} of "
          f"{clf.backbone_['num_layers']}, {len(clf.kept_neurons_)} kept neurons; {args.repeats} interleaved repeats "
          f"(median); torch threads {torch.get_num_threads()}, onnxruntime threads {args.threads or 'default'}")
    print(f"{'runtime':<18} {'texts/s':>8} {'x torch':>8} {'accuracy':>9} {'points':>7} {'max|dp|':>9} "
          f"{'tokenise':>9} {'export s':>9} {'MB':>6}")
    for row in rows:
        print(f"{row['runtime']:<18} {row['texts_per_s']:>8.1f} {row['vs_torch']:>8.2f} {row['accuracy']:>9.4f} "
              f"{(row['accuracy'] - rows[0]['accuracy']) * 100:>+7.2f} "
              f"{row['max_abs_prob_diff_vs_torch']:>9.2e} {row['tokenize_share']:>8.0%} "
              f"{row.get('export_s', float('nan')):>9.1f} {row.get('model_mb', float('nan')):>6.1f}")
    profiles = {name: op_type_shares(Path(args.export_dir) / name, runtimes[name], texts[:args.profile],
                                     args.threads) for name in exports} if args.profile else {}
    if profiles:
        op_types = sorted({op for shares in profiles.values() for op in shares},
                          key=lambda op: -max(shares.get(op, 0.0) for shares in profiles.values()))
        print(f"onnxruntime profile over {args.profile} texts: share of operator time per operator type")
        print(f"{'operator type':<24}" + "".join(f" {name:>18}" for name in profiles))
        for op in op_types:
            if max(shares.get(op, 0.0) for shares in profiles.values()) >= 0.005:
                print(f"{op:<24}" + "".join(f" {shares.get(op, 0.0):>18.1%}" for shares in profiles.values()))
    if args.json:
        Path(args.json).write_text(json.dumps({"n_texts": len(texts), "rows": rows, "op_type_shares": profiles},
                                              indent=1))


def op_type_shares(directory: Path, predictor: OnnxPredictor, texts: list[str], threads: int | None) -> dict:
    """Share of the graph's operator time per operator type, from onnxruntime's profiler over ``texts``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    if threads:
        options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as scratch:
        options.profile_file_prefix = str(Path(scratch) / "profile")
        session = ort.InferenceSession(str(directory / "model.onnx"), sess_options=options,
                                       providers=["CPUExecutionProvider"])
        timed, predictor.session = predictor.session, session
        try:
            predictor.features(texts)
        finally:
            predictor.session = timed
        events = json.loads(Path(session.end_profiling()).read_text())
    totals = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    whole = sum(totals.values()) or 1
    return {op: duration / whole for op, duration in totals.most_common()}


if __name__ == "__main__":
    main()
