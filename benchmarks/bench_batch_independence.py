"""Does a prediction depend on the other texts of its batch? With and without the probes' spread floor.

    python benchmarks/bench_batch_independence.py [none|auto]     (the cv of the fits; default none)

MR with MiniLM, the benchmark store of bench_selection.py (``/tmp/bench/stores``: built there on first use). For
``RELATIVE_SPREAD_FLOOR`` = 0 (no floor: only exactly constant neurons are set aside, as before) and the default, an
``STCClassifier`` is fitted on train + validation; then 300 test texts are labelled together (one call) and one by
one, and the largest probability difference and the number of labels that differ are printed, with the test
accuracy, the configuration and the smallest spread of a kept neuron relative to its array's median spread.
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import bench_selection as bs
import stc.probe as P
cv = sys.argv[1] if len(sys.argv) > 1 else "none"
data = bs.bench_data("mr")
dataset, store, pool_texts, pool_labels, test_rows = (data.dataset, data.store, data.pool_texts, data.pool_labels,
                                                      data.test_rows)
probe_texts = dataset.test.texts[:300]
for floor in (0.0, 1e-4):
    P.RELATIVE_SPREAD_FLOOR = floor
    clf = bs.StoredSTC(cv=None if cv == "none" else "auto", random_state=0, show_progress_bar=False)
    t = time.perf_counter()
    clf.fit(pool_texts, pool_labels)
    fit_s = time.perf_counter() - t
    X_test = np.hstack([store.load(k, columns=c, rows=test_rows) for k, c in clf.kept_columns_.items()])
    acc = float((clf.classes_[clf.classifier_.predict(X_test)] == np.asarray(dataset.test.labels)).mean())
    spread = np.concatenate([store.load(k, columns=c, rows=np.arange(len(pool_texts))).std(axis=0) /
                             np.median(store.load(k, rows=np.arange(2000)).std(axis=0)) for k, c in clf.kept_columns_.items()])
    together = clf.predict_proba(probe_texts)
    alone = np.vstack([clf.predict_proba([t]) for t in probe_texts])
    print(json.dumps({"cv": cv, "floor": floor, "fit_s": round(fit_s, 1), "test": acc, "n_features": clf.n_features_,
                      "config": {k: clf.configuration_[k] for k in ("readout", "representations", "poolings", "eta", "exit_layer", "C")},
                      "kept with spread < 1e-4 of median": int((spread < 1e-4).sum()), "min spread ratio": float(spread.min()),
                      "max |dp| batch vs alone (300 texts)": float(np.abs(together - alone).max()),
                      "labels differ": int((together.argmax(1) != alone.argmax(1)).sum())}), flush=True)
