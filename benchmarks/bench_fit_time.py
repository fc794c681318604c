"""Fit time of cross-validated selection against the paper's protocol, side by side in one process.

    python benchmarks/bench_fit_time.py [--with-extraction] [none auto ...]   (cv values to time, in this order;
                                                                               default: none auto)

Full MR (train + validation, seed 0 of bench_selection's draw) with MiniLM, read from bench_selection's store in
/tmp/bench/stores (built there on first use), so the times leave extraction out. Prints per fit the wall time,
``fit_timings_`` by phase, the test accuracy and the chosen configuration, one JSON line each. Every array is read
once before the first fit, so no fit pays for a cold page cache.

``--with-extraction`` times what a user's first ``stc fit`` on these texts does instead: a plain STCClassifier
with an empty store directory of its own per fit, so each fit loads the backbone and extracts every text.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import bench_selection as bs
from stc import STCClassifier

with_extraction = "--with-extraction" in sys.argv[1:]
which = [a for a in sys.argv[1:] if a != "--with-extraction"] or ["none", "auto"]
size = "all"
data = bs.bench_data("mr")
dataset, store, pool_texts, pool_labels, test_rows = (data.dataset, data.store, data.pool_texts, data.pool_labels,
                                                      data.test_rows)
tr, ytr, va, yva = bs.draw(pool_texts, pool_labels, size, 0)
for key in store.keys:  # read every array once, untimed: no fit pays for a cold page cache
    store.load(key)
for cv in which:
    cv_value = None if cv == "none" else ("auto" if cv == "auto" else int(cv))
    fresh = tempfile.TemporaryDirectory(prefix="stc-fit-time-") if with_extraction else None
    clf = (STCClassifier(cv=cv_value, random_state=0, show_progress_bar=False, store_dir=fresh.name)
           if with_extraction else bs.StoredSTC(cv=cv_value, random_state=0, show_progress_bar=False))
    t = time.perf_counter()
    clf.fit(tr, ytr, X_val=va, y_val=yva)
    seconds = round(time.perf_counter() - t, 1)
    X_test = np.hstack([store.load(k, columns=c, rows=test_rows) for k, c in clf.kept_columns_.items()])
    acc = float((clf.classes_[clf.classifier_.predict(X_test)] == np.asarray(dataset.test.labels)).mean())
    if fresh is not None:
        fresh.cleanup()
    print(json.dumps({"cv": cv, "with_extraction": with_extraction, "seconds": seconds, "timings": clf.fit_timings_,
                      "test": acc, "config": clf.configuration_, "n": clf.n_features_}), flush=True)
