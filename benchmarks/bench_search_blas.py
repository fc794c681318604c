"""Why the search's fits run on one BLAS thread, and hold their columns as (columns, rows): both measured.

    python benchmarks/bench_search_blas.py

Full MR (seed 0 of bench_selection's draw), the probes of the first of 5 folds, every stage-1 sparse candidate
(representation set x pooling set x eta, C 0.1) fitted on that fold one after another: with the BLAS library's
default threads, then with one thread. Then the cost of gathering a candidate's columns from the held columns of
one key, stored as (rows, columns) against (columns, rows).
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import bench_selection as bs  # noqa: E402
from stc.aggregate import kept_columns, make_final_classifier  # noqa: E402
from stc.probe import fit_probe_paths  # noqa: E402
from stc.folds import make_folds  # noqa: E402
from stc.sparsify import DEFAULT_ETAS  # noqa: E402

data = bs.bench_data("mr")
tr, ytr, va, yva = bs.draw(data.pool_texts, data.pool_labels, "all", 0)
store = bs.StoreRows(data.store, data.rows(tr + va))
codes = np.searchsorted(np.unique(np.concatenate([ytr, yva])), np.concatenate([ytr, yva]))
train, val = make_folds(codes, 5, 0)[0]
probes = {key: path.best() for key, path in
          fit_probe_paths(store, store.keys, codes, train, val, n_jobs=-1).items()}
matrices = []
for representations in (("hidden",), ("ffn",), ("hidden", "ffn")):
    for poolings in (("mean",), ("max",), ("first",), ("mean", "max", "first")):
        for eta in DEFAULT_ETAS:
            columns = kept_columns(probes, representations, poolings, eta, 6)
            matrices.append(np.hstack([store.load(key, columns=c) for key, c in columns.items()]))


def fit_all() -> float:
    started = time.perf_counter()
    for X in matrices:
        make_final_classifier(0.1).fit(X[train], codes[train]).predict(X[val])
    return time.perf_counter() - started


default_threads = fit_all()
with threadpool_limits(limits=1, user_api="blas"):
    one_thread = fit_all()
print(f"{len(matrices)} stage-1 fits on one fold: default BLAS threads {default_threads:.1f} s, "
      f"one thread {one_thread:.1f} s ({default_threads / one_thread:.1f}x)")

held = store.load("ffn.L6.mean")  # every column of one key, as the search holds the union of its candidates'
wanted = np.sort(np.random.default_rng(0).choice(held.shape[1], 300, replace=False))
held_T = np.ascontiguousarray(held.T)
for name, gather in (("(rows, columns)", lambda: held[:, wanted]), ("(columns, rows)", lambda: held_T[wanted].T)):
    started = time.perf_counter()
    for _ in range(20):
        gather()
    print(f"gather 300 of {held.shape[1]} columns from {name}: {(time.perf_counter() - started) / 20 * 1000:.1f} ms")
