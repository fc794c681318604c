"""The embedding readout with and without class weights, on a large single-label dataset: validation score at each C.

    python benchmarks/bench_class_weight.py --dataset tweets --store /tmp/stc-experiments/stores/<id>

``--store`` is the activation store an ``stc experiment`` STC row built for the dataset's train + validation texts
(in that order; its ``meta.json`` gives ``n_texts``). stc's head (standardisation + logistic regression,
``stc.head.make_final_classifier``) on the last layer's mean-pooled hidden state, fitted on the train rows with
``class_weight`` None and "balanced" (what ``class_weight="auto"`` resolves to for macro-F1), scored on the
validation rows in the dataset's metric. Why: the tweets embedding row of ``RESULTS.md`` fell from 0.7129 to 0.7067
between 11-29 and 12-07, two changes apart (the balanced weights of 12-06, the C grid of 12-07).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from stc._metrics import score
from stc.aggregate import DEFAULT_FINAL_CS
from stc.data import load_dataset
from stc.head import make_final_classifier
from stc.store import ActivationStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="tweets")
    parser.add_argument("--store", required=True)
    parser.add_argument("--key", default="hidden.L6.mean")
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    features = ActivationStore(args.store).load(args.key)
    n = len(dataset.train.texts)
    if features.shape[0] != n + len(dataset.validation.texts):
        raise ValueError(f"the store holds {features.shape[0]} texts, not the {n} + {len(dataset.validation.texts)} "
                         f"train + validation texts of {args.dataset}")
    classes = np.unique(dataset.train.labels)
    codes = np.searchsorted(classes, dataset.train.labels)
    val_codes = np.searchsorted(classes, dataset.validation.labels)
    print(json.dumps({"dataset": args.dataset, "class_shares": np.round(np.bincount(codes) / n, 4).tolist()}))
    for class_weight in (None, "balanced"):
        for C in DEFAULT_FINAL_CS:
            started = time.perf_counter()
            model = make_final_classifier(C, 42, class_weight).fit(features[:n], codes)
            print(json.dumps({"class_weight": class_weight, "C": C, "metric": dataset.metric,
                              "validation": round(score(val_codes, model.predict(features[n:]), dataset.metric), 4),
                              "seconds": round(time.perf_counter() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
