"""Which int8 quantisation of the ONNX export: dynamic or static, which matrix products, how many threads.

    python benchmarks/bench_int8_variants.py                       # stc-runs/demo-model, the whole MR test split
    python benchmarks/bench_int8_variants.py --limit 500 --repeats 1

The fp32 export (``stc export``) is quantised here in several ways with onnxruntime's quantiser, and each graph
labels the same MR test texts, interleaved, ``--repeats`` times (median), beside torch with as many threads:

- dynamic (``quantize_dynamic``, int8 weights per output channel, activations quantised per batch at run time) of
  every weight MatMul (= ``stc export --quantize int8``), of the FFN output projections only (= ``int8-ffn-out``),
  of attention + FFN output projections, of FFN input + output projections;
- static (``quantize_static``, QDQ format, activation ranges calibrated once on ``--calibration-texts`` training
  texts: MinMax, or the 99.99th percentile) of every weight MatMul, and of attention + FFN output projections;
- fp32 and dynamic-all again with one intra-op thread per core (the rest run with ``--threads``, default 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

import stc
from stc.data import load_dataset
from stc.export import OnnxPredictor, export_onnx
from stc.extract import tokenize_with
from stc.predictor import TorchPredictor


class TrainingTexts(CalibrationDataReader):
    """Batches of random training texts, all padded to one shape (onnxruntime's histogram calibrators need it)."""

    def __init__(self, predictor: OnnxPredictor, texts: list[str], n: int, batch: int = 32, seed: int = 0):
        chosen = [texts[i] for i in np.random.default_rng(seed).choice(len(texts), n, replace=False)]
        tokens = tokenize_with(predictor.tokenizer, chosen, max_length=predictor.max_length)
        width = max(len(ids) for ids in tokens.input_ids)
        self.feeds = []
        for start in range(0, n - batch + 1, batch):
            ids = np.full((batch, width), predictor.tokenizer.pad_token_id, dtype=np.int64)
            mask = np.zeros((batch, width), dtype=np.int64)
            for row, text_ids in enumerate(tokens.input_ids[start:start + batch]):
                ids[row, :len(text_ids)], mask[row, :len(text_ids)] = text_ids, 1
            self.feeds.append({"input_ids": ids, "attention_mask": mask})
        self.rewind()

    def get_next(self):
        return next(self._iterator, None)

    def rewind(self):
        self._iterator = iter(self.feeds)


def matmul_groups(path: Path) -> dict[str, list[str]]:
    """The weight MatMuls of the graph by role, read off their weight shapes (the exporter stores (in, out))."""
    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {initializer.name: tuple(initializer.dims) for initializer in graph.initializer}
    weighted = [(node.name, shapes[node.input[1]]) for node in graph.node
                if node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in shapes]
    hidden = next(a for _, (a, b) in weighted if a == b)
    return {"attention": [name for name, (a, b) in weighted if a == b == hidden],
            "ffn_in": [name for name, (a, b) in weighted if a == hidden and b != hidden],
            "ffn_out": [name for name, (a, b) in weighted if b == hidden and a != hidden]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("--model-dir", "stc-runs/demo-model"), ("--data", "mr"),
                          ("--export-dir", "stc-runs/int8-variants")):
        parser.add_argument(name, default=default)
    parser.add_argument("--limit", type=int, default=None, help="only the first N test texts")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of torch and most graphs")
    parser.add_argument("--calibration-texts", type=int, default=256, help="training texts that set static ranges")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clf = stc.load(args.model_dir)
    dataset = load_dataset(args.data)
    texts, labels = dataset.test.texts[:args.limit], np.asarray(dataset.test.labels[:args.limit])
    root = Path(args.export_dir)
    predictor = OnnxPredictor(export_onnx(clf, root / "fp32"), threads=args.threads)
    fp32 = root / "fp32" / "model.onnx"
    groups = matmul_groups(fp32)
    every = groups["attention"] + groups["ffn_in"] + groups["ffn_out"]

    def dynamic(nodes):
        return lambda target: quantize_dynamic(fp32, target, weight_type=QuantType.QInt8, per_channel=True,
                                               op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes)

    def static(nodes, method=CalibrationMethod.MinMax, extra=None):
        return lambda target: quantize_static(
            fp32, target, TrainingTexts(predictor, dataset.train.texts, args.calibration_texts),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=method, extra_options=extra or {})

    variants = {"dynamic, every MatMul (int8)": dynamic(every),
                "dynamic, FFN out (int8-ffn-out)": dynamic(groups["ffn_out"]),
                "dynamic, attention + FFN out": dynamic(groups["attention"] + groups["ffn_out"]),
                "dynamic, FFN in + FFN out": dynamic(groups["ffn_in"] + groups["ffn_out"]),
                "static MinMax, every MatMul": static(every),
                "static p99.99, every MatMul": static(every, CalibrationMethod.Percentile, {"CalibPercentile": 99.99}),
                "static MinMax, attention + FFN out": static(groups["attention"] + groups["ffn_out"])}
    graphs = {"fp32": fp32}
    for index, (name, make) in enumerate(variants.items()):
        graphs[name] = root / f"variant-{index}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make(graphs[name])
    cores = len(os.sched_getaffinity(0))
    runs = [(name, path, args.threads) for name, path in graphs.items()]
    runs += [(f"{name}, {cores} threads", graphs[name], cores) for name in ("fp32", "dynamic, every MatMul (int8)")]
    sessions = {}
    for name, path, threads in runs:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        sessions[name] = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    torch_predictor = TorchPredictor(clf)
    seconds = {name: [] for name in ["torch", *sessions]}
    probabilities = {}
    for _ in range(args.repeats):
        started = time.perf_counter()
        probabilities["torch"] = torch_predictor.predict_proba(texts)
        seconds["torch"].append(time.perf_counter() - started)
        for name, session in sessions.items():
            predictor.session = session
            started = time.perf_counter()
            probabilities[name] = predictor.predict_proba(texts)
            seconds[name].append(time.perf_counter() - started)
    classes = np.asarray(predictor.head.classes)
    accuracy = {name: float((classes[p.argmax(1)] == labels).mean()) for name, p in probabilities.items()}
    speed = {name: len(texts) / statistics.median(s) for name, s in seconds.items()}
    print(f"{args.data} test split: {len(texts)} texts; {args.repeats} interleaved repeats (median); torch and "
          f"graphs {args.threads} thread(s) unless named; {len(every)} weight MatMuls ({len(groups['attention'])} "
          f"attention, {len(groups['ffn_in'])} FFN in, {len(groups['ffn_out'])} FFN out)")
    print(f"{'graph':<42} {'texts/s':>8} {'x torch':>8} {'accuracy':>9} {'points':>7} {'labels!=fp32':>12}")
    for name in seconds:
        changed = int((probabilities[name].argmax(1) != probabilities["fp32"].argmax(1)).sum())
        print(f"{name:<42} {speed[name]:>8.1f} {speed[name] / speed['torch']:>8.2f} {accuracy[name]:>9.4f} "
              f"{(accuracy[name] - accuracy['torch']) * 100:>+7.2f} {changed:>12}")


if __name__ == "__main__":
    main()
