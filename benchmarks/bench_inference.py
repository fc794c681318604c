"""Early-exit inference: ``predict`` throughput of a fitted STC model vs a full-depth forward of its backbone.

    python benchmarks/bench_inference.py --model-dir stc-runs/demo-model          # a saved model (stc demo makes one)
    python benchmarks/bench_inference.py --model smollm2 --limit 1000             # fit one first (subsampled MR)

Both sides run in this process over the same test texts and the same batches, interleaved; with the exit at layer k
of L, the ratio should approach L/k (less the tokenizer and classifier, which both sides do not share).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_extraction import bare_forward  # noqa: E402

import stc  # noqa: E402
from stc.data import load_dataset  # noqa: E402
from stc.extract import tokenize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="a saved STC model; else one is fitted")
    parser.add_argument("--model", default="minilm", help="backbone to fit when no --model-dir is given")
    parser.add_argument("--data", default="mr")
    parser.add_argument("--limit", type=int, default=None, help="cap each split when fitting")
    parser.add_argument("--n", type=int, default=1000, help="test texts to time")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    dataset = load_dataset(args.data, limit=args.limit)
    if args.model_dir and Path(args.model_dir, "stc_model.json").exists():
        clf = stc.load(args.model_dir)
    else:
        clf = stc.STCClassifier(args.model, metric=dataset.metric)
        clf.fit(dataset.train.texts, dataset.train.labels, X_val=dataset.validation.texts,
                y_val=dataset.validation.labels)
        clf.save(args.model_dir or f"stc-runs/bench-{args.model}-{args.data}")
    clf.show_progress_bar = False
    texts = load_dataset(args.data).test.texts[:args.n]
    backbone = clf.readout_.load_backbone(model=clf.model, device=clf.device, dtype=clf.dtype, check=False)
    tokens = tokenize(backbone, texts, max_length=clf.readout_.extraction.max_length)
    batches = tokens.batches(clf.token_budget)
    clf.predict(texts[:32])  # warm-up
    predict, full = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        clf.predict(texts)
        predict.append(time.perf_counter() - started)
        started = time.perf_counter()
        bare_forward(backbone, tokens, batches)
        full.append(time.perf_counter() - started)
    layers, exit_layer = backbone.num_layers, clf.exit_layer_
    ratio = statistics.median(full) / statistics.median(predict)
    print(f"{clf.backbone_['name']}: exit layer {exit_layer} of {layers}, {clf.n_features_} kept neurons; "
          f"{len(texts)} test texts of {args.data}, {args.repeats} interleaved repeats (median)")
    print(f"full-depth forward   {len(texts) / statistics.median(full):8.1f} texts/s")
    print(f"stc predict          {len(texts) / statistics.median(predict):8.1f} texts/s")
    print(f"predict / full-depth throughput = {ratio:.2f}  (ideal L/k = {layers / exit_layer:.2f})")


if __name__ == "__main__":
    main()
