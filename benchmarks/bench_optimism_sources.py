"""Where does the expected score's remaining optimism come from? Two suspects, measured on one cell.

    python benchmarks/bench_optimism_sources.py --dataset tweets --size 500 --seeds 5

* **The probes' C**: chosen per probe by its mean score over every fold, the held-out block included, before any
  candidate is scored (the one choice ``expected_score_`` does not replay). Refit with a one-point probe grid
  (``RELATIVE_PROBE_CS = (multiple,)``: no choice at all) and compare estimate and test score with the default.
* **Averaging macro-F1 over small blocks**: the estimate is the mean of per-block scores; the test score is one
  score of the whole test split. For the embedding's out-of-fold predictions, the mean of the 5 per-fold scores
  against the score of all of them pooled.

Same draws, store and scoring as ``bench_selection.py``; one JSON line per seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_selection as bs  # noqa: E402
import stc.probe as probe_module  # noqa: E402
from stc._metrics import score  # noqa: E402
from stc.aggregate import make_final_classifier  # noqa: E402
from stc.extract import feature_key  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="tweets")
    parser.add_argument("--size", default="500")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--multiple", type=float, default=100.0, help="the one probe C, times its C_min")
    parser.add_argument("--store-dir", default=bs.DEFAULT_STORE_DIR)
    args = parser.parse_args()
    data = bs.bench_data(args.dataset, args.store_dir)
    dataset, store, test_rows = data.dataset, data.store, data.test_rows
    pool_texts, pool_labels = data.pool_texts, data.pool_labels
    test_labels = np.asarray(dataset.test.labels)
    size = args.size if args.size == "all" else int(args.size)
    default_grid = probe_module.RELATIVE_PROBE_CS
    for seed in range(args.seeds):
        tr, ytr, va, yva = bs.draw(pool_texts, pool_labels, size, seed)
        record = {"dataset": args.dataset, "size": args.size, "seed": seed, "revision": bs.REVISION}
        for name, grid in (("default probe grid", default_grid), (f"probe C {args.multiple:g} x C_min",
                                                                  (args.multiple,))):
            probe_module.RELATIVE_PROBE_CS = grid
            clf = bs.StoredSTC(metric=dataset.metric, random_state=seed, show_progress_bar=False)
            clf.fit(tr, ytr, X_val=va, y_val=yva)
            X_test = np.hstack([store.load(k, columns=c, rows=test_rows) for k, c in clf.kept_columns_.items()])
            test = score(test_labels, clf.classes_[clf.classifier_.predict(X_test)], dataset.metric)
            record[name] = {"estimate": clf.expected_score_, "cv": clf.cv_score_, "test": test,
                            "optimism": clf.expected_score_ - test, "readout": clf.configuration_["readout"],
                            "n_features": clf.n_features_}
        probe_module.RELATIVE_PROBE_CS = default_grid
        texts, labels = tr + va, np.concatenate([ytr, yva])
        classes = np.unique(labels)
        codes = np.searchsorted(classes, labels)
        features = store.load(feature_key("hidden", data.backbone.num_layers, "mean"), rows=data.rows(texts))
        predictions = np.empty_like(codes)
        fold_scores = []
        for train, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(features, codes):
            predictions[held] = make_final_classifier(0.1, seed).fit(features[train], codes[train]).predict(
                features[held])
            fold_scores.append(score(codes[held], predictions[held], dataset.metric))
        record["embedding out-of-fold"] = {"mean of fold scores": float(np.mean(fold_scores)),
                                           "pooled": score(codes, predictions, dataset.metric)}
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
