"""What limits micro-batching: the cost of one backbone pass against its size, by thread count and batching rule.

    python benchmarks/profile_serving.py                         # stc-runs/demo-model, MR test texts
    python benchmarks/profile_serving.py --sizes 1,4,64 --draws 6

A server's throughput with and without micro-batching is set by how a pass's time grows with its number of texts:
time = overhead + per-text cost x texts. This measures it in-process (no HTTP) on random draws of MR test texts, the
same draws for every setting, settings interleaved: torch intra-op threads (1, or one per core), and how a pass's
texts are cut into forwards (``budget only``: one forward padded to its longest text, as before; ``padding
bound``: sorted texts cut where padding would exceed a quarter of a text's length, ``TokenizedTexts.batches``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import stc.extract
from stc.data import load_dataset
from stc.runtimes import load_predictor

_RULES = {"budget only": (float("inf"), 10**9), "padding bound": (stc.extract._PAD_FRACTION, stc.extract._PAD_SLACK)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="stc-runs/demo-model")
    parser.add_argument("--data", default="mr")
    parser.add_argument("--sizes", default="1,4,16,64", help="texts per pass, comma-separated")
    parser.add_argument("--draws", type=int, default=8, help="random passes per size and setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pool = load_dataset(args.data).test.texts
    predictor = load_predictor(args.model_dir)
    cores = torch.get_num_threads()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(args.seed)
    draws = {k: [rng.choice(len(pool), size=k, replace=False) for _ in range(args.draws)] for k in sizes}
    settings = [(threads, rule) for threads in sorted({1, cores}) for rule in _RULES]
    seconds = {(s, k): [] for s in settings for k in sizes}
    predictor.predict_proba(pool[:16])  # warm-up
    for draw in range(args.draws):  # interleaved: each setting sees the machine's load of the same moment
        for k in sizes:
            texts = [pool[i] for i in draws[k][draw]]
            for threads, rule in settings:
                torch.set_num_threads(threads)
                stc.extract._PAD_FRACTION, stc.extract._PAD_SLACK = _RULES[rule]
                started = time.perf_counter()
                predictor.predict_proba(texts)
                seconds[((threads, rule), k)].append(time.perf_counter() - started)
    print(f"model {args.model_dir}; {args.draws} random passes of MR test texts per size (medians); "
          f"{cores} cores")
    print(f"{'threads':>7}  {'batching':<14}" + "".join(f" {f'{k} texts: ms':>15} {'texts/s':>8}" for k in sizes))
    for threads, rule in settings:
        row = [statistics.median(seconds[((threads, rule), k)]) for k in sizes]
        print(f"{threads:>7}  {rule:<14}" + "".join(f" {m * 1000:>15.1f} {k / m:>8.1f}" for k, m in zip(sizes, row)))


if __name__ == "__main__":
    main()
