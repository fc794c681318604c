"""One STC fit as an `stc experiment` STC row makes it (MiniLM, seed 42, train + validation given), with the search's
record printed: the floor's verdict (``selection_["floor"]``, ``["floor_margin"]``), the estimate, and the twelve
best candidates of ``cv_results_``. Run it with two checkouts' ``src`` on ``PYTHONPATH`` to see which change moved a
row.

    PYTHONPATH=src python benchmarks/check_floor.py bbc-news 128 [STORE_DIR]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from stc import STCClassifier
from stc._metrics import score
from stc.data import load_dataset


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "bbc-news"
    max_length = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "none" else None
    store_dir = sys.argv[3] if len(sys.argv) > 3 else "/tmp/stc-experiments/stores"
    dataset = load_dataset(name)
    clf = STCClassifier(model="minilm", metric=dataset.metric, max_length=max_length, store_dir=store_dir,
                        random_state=42, show_progress_bar=False)
    started = time.time()
    clf.fit(dataset.train.texts, dataset.train.labels, X_val=dataset.validation.texts, y_val=dataset.validation.labels)
    test = score(np.asarray(dataset.test.labels), clf.predict(dataset.test.texts), dataset.metric)
    print(f"fit {time.time() - started:.0f} s; test {test}")
    print("selection_", json.dumps(clf.selection_, default=str))
    print("expected", clf.expected_score_, clf.expected_score_se_)
    results = clf.cv_results_
    for i in np.argsort(results["rank_test_score"])[:12]:
        print({k: (results[k][i] if not isinstance(results[k][i], float) else round(float(results[k][i]), 4))
               for k in results if k.startswith("param_") or k in ("mean_test_score", "rank_test_score")})


if __name__ == "__main__":
    main()
