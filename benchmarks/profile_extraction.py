"""Where extraction spends its time beyond the bare forward: timers around each pooling step, and ablations.

    python benchmarks/profile_extraction.py [--n 1500] [--repeats 3]

Prints (1) seconds spent in each pooled statistic by width, in merging batches into per-text arrays and in
tokenising, over one extraction; (2) interleaved medians of the bare forward, the extraction with every statistic
replaced by a no-op (the cost of the hooks and bookkeeping), and the full extraction.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import torch

import stc.extract as extract
from stc.backbone import load_backbone
from stc.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    backbone = load_backbone(args.model)
    texts = load_dataset("mr").train.texts[:args.n]
    keys = extract.all_keys(backbone.num_layers, ("hidden", "ffn"), extract.default_poolings(backbone))
    tokens = extract.tokenize(backbone, texts)
    batches = tokens.batches(8192)
    token_stat, accumulate, tokenize = extract._token_stat, extract._accumulate, extract.tokenize
    extract.extract_features(backbone, texts[:64], keys)  # warm-up

    spent = collections.Counter()

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            result = function(*args, **kwargs)
            label = (name, args[2], args[0].shape[-1]) if name == "pool" else name
            spent[label] += time.perf_counter() - started
            return result
        return wrapper

    extract._token_stat = timed("pool", token_stat)
    extract._accumulate, extract.tokenize = timed("merge", accumulate), timed("tokenize", tokenize)
    started = time.perf_counter()
    extract.extract_features(backbone, texts, keys)
    total = time.perf_counter() - started
    extract._token_stat, extract._accumulate, extract.tokenize = token_stat, accumulate, tokenize
    print(f"one extraction of {len(texts)} texts: {total:.2f} s, of which")
    for label, seconds in spent.most_common():
        print(f"  {label}: {seconds:.3f} s")

    def bare():
        with torch.inference_mode():
            for rows in batches:
                ids, mask = tokens.padded(rows, backbone.tokenizer.pad_token_id, backbone.device)
                backbone.model(input_ids=ids, attention_mask=mask, use_cache=False)

    def no_op_statistics():
        extract._token_stat = lambda x, mask, stat, columns=None: x[:, 0].clone()
        try:
            extract.extract_features(backbone, texts, keys)
        finally:
            extract._token_stat = token_stat

    runs = {"bare forward": bare, "extraction, statistics as no-ops": no_op_statistics,
            "extraction": lambda: extract.extract_features(backbone, texts, keys)}
    seconds = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    print(f"\ninterleaved, {args.repeats} repeats (median s; all runs):")
    for name, values in seconds.items():
        print(f"  {name:<34} {statistics.median(values):6.2f}  {[round(v, 2) for v in values]}")


if __name__ == "__main__":
    main()
