"""Extraction vs a bare forward pass, and token-budget length-sorted batching vs fixed-size unsorted batches.

Both sides run in this one process over the same texts, interleaved and repeated, and the medians are compared:

    python benchmarks/bench_extraction.py [--model minilm] [--n 2000] [--repeats 3]

Target (issue 4): extraction throughput >= 0.9x the bare ``model(**batch)`` forward over the same batches.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from stc.backbone import load_backbone
from stc.data import load_dataset
from stc.extract import all_keys, default_poolings, extract_features, tokenize


def bare_forward(backbone, tokens, batches) -> None:
    """The model's own forward over the given batches of token ids, nothing read out."""
    with torch.inference_mode():
        for rows in batches:
            ids, mask = tokens.padded(rows, backbone.tokenizer.pad_token_id, backbone.device)
            backbone.model(input_ids=ids, attention_mask=mask, use_cache=False)


def padding_tokens(tokens, batches) -> tuple[int, int]:
    """(real tokens, padded positions) of a batching."""
    real = sum(len(ids) for ids in tokens.input_ids)
    padded = sum(len(rows) * max(len(tokens.input_ids[r]) for r in rows) for rows in batches)
    return real, padded


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--data", default="mr")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--token-budget", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=32, help="rows of the fixed-size unsorted batching")
    args = parser.parse_args()

    backbone = load_backbone(args.model)
    texts = load_dataset(args.data).train.texts[:args.n]
    keys = all_keys(backbone.num_layers, ("hidden", "ffn"), default_poolings(backbone))
    tokens = tokenize(backbone, texts)
    sorted_batches = tokens.batches(args.token_budget)
    extract_features(backbone, texts[:64], keys)  # warm-up
    extraction, bare = [], []
    for _ in range(args.repeats):
        extraction.append(timed(lambda: extract_features(backbone, texts, keys, token_budget=args.token_budget)))
        bare.append(timed(lambda: bare_forward(backbone, tokens, sorted_batches)))
    ratio = statistics.median(bare) / statistics.median(extraction)
    print(f"model {args.model}, {len(texts)} texts of {args.data}, {len(keys)} pooled arrays, torch threads "
          f"{torch.get_num_threads()}, {args.repeats} interleaved repeats (median)")
    print(f"bare forward     {statistics.median(bare):7.2f} s   {len(texts) / statistics.median(bare):8.1f} texts/s")
    print(f"stc extraction   {statistics.median(extraction):7.2f} s   "
          f"{len(texts) / statistics.median(extraction):8.1f} texts/s")
    print(f"extraction throughput / bare forward throughput = {ratio:.3f}  (target >= 0.9: "
          f"{'met' if ratio >= 0.9 else 'NOT met'})")

    fixed_batches = [list(range(start, min(start + args.batch_size, len(texts))))
                     for start in range(0, len(texts), args.batch_size)]
    fixed, budget = [], []
    for _ in range(args.repeats):
        fixed.append(timed(lambda: bare_forward(backbone, tokens, fixed_batches)))
        budget.append(timed(lambda: bare_forward(backbone, tokens, sorted_batches)))
    real, padded_sorted = padding_tokens(tokens, sorted_batches)
    _, padded_fixed = padding_tokens(tokens, fixed_batches)
    print(f"\nbatching: {real} real tokens; length-sorted token-budget ({args.token_budget}) batches pad to "
          f"{padded_sorted} positions ({padded_sorted - real} padding), fixed {args.batch_size}-row unsorted "
          f"batches to {padded_fixed} ({padded_fixed - real} padding): {1 - padded_sorted / padded_fixed:.1%} "
          f"fewer positions")
    print(f"forward time: fixed unsorted {statistics.median(fixed):.2f} s, sorted budget "
          f"{statistics.median(budget):.2f} s: speed-up {statistics.median(fixed) / statistics.median(budget):.2f}x")


if __name__ == "__main__":
    main()
