"""Probes fitted one after another against side by side (n_jobs=-1), where liblinear fits them (n < d).

    python benchmarks/bench_probe_parallel.py [--n 440] [--repeats 2]

Fold-sized MR draws (the first ``--n`` pool rows of bench_selection's seed-0 draw of 550 texts) from
bench_selection's store; every probe of the store (39: hidden and FFN, 3 poolings, 6 layers + embeddings) along the
relative C grid, validated on the next 110 rows. With fewer texts than FFN neurons "auto" hands the FFN probes to
liblinear, which now runs in processes. Interleaved repeats, one JSON line each; the coefficients must be equal.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_selection as bs  # noqa: E402
from stc.probe import fit_probe_paths  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--n", type=int, default=440)
parser.add_argument("--repeats", type=int, default=2)
args = parser.parse_args()
data = bs.bench_data("mr")
store = data.store
tr, ytr, va, yva = bs.draw(data.pool_texts, data.pool_labels, 500, 0)
texts, labels = tr + va, np.concatenate([ytr, yva])
rows = data.rows(texts)
codes = np.searchsorted(np.unique(labels), labels)
view = bs.StoreRows(store, rows)
train, val = np.arange(args.n), np.arange(args.n, len(rows))
for key in store.keys:  # page cache warmed, untimed
    view.load(key)
results, one_by_one = {}, None
for repeat in range(args.repeats):
    for n_jobs in (1, -1):
        started = time.perf_counter()
        paths = fit_probe_paths(view, store.keys, codes, train, val, n_jobs=n_jobs)
        seconds = time.perf_counter() - started
        results.setdefault(n_jobs, []).append(seconds)
        if n_jobs == -1:
            same = all(np.array_equal(paths[k].coefs, one_by_one[k].coefs) for k in store.keys)
        else:
            one_by_one, same = paths, True
        print(json.dumps({"repeat": repeat, "n_jobs": n_jobs, "seconds": round(seconds, 1), "equal": same}),
              flush=True)
print(f"median one by one {np.median(results[1]):.1f} s, side by side {np.median(results[-1]):.1f} s: "
      f"{np.median(results[1]) / np.median(results[-1]):.2f}x")
