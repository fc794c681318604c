"""Imbalanced classes: fits chosen by macro-F1 with class_weight None against 'balanced' (what ``class_weight="auto"``
gives for macro-F1), STC and the embedding baseline side by side.

    python benchmarks/bench_imbalanced.py mr --minority 8,32,128 --seeds 3
    python benchmarks/bench_imbalanced.py tweets --size 2000 --seeds 3
    python benchmarks/bench_imbalanced.py --table FILE.jsonl

* ``mr``: per seed, ``m`` negative and ``6 m`` positive sentences drawn (seeded) from MR's train + validation; scored
  by macro-F1 on the whole test split (balanced: a prior shift, as when the rare class is rare only in what was
  labelled) and on the test split at the training texts' 1:6 ratio (every positive test text and a seeded sixth as
  many negatives: the same shares as in training), and by accuracy there.
* ``tweets``: ``load_dataset("tweets", limit=3000)`` (negative 43 %, neutral 39 %, positive 18 %); per seed a
  stratified ``size`` of its train + validation, scored on its 3,000 test tweets (the same shares).

Methods (``--methods``): ``stc``, ``STCClassifier(metric="macro_f1", class_weight=cw)`` with every other default,
reading one MiniLM store of every text (``bench_selection.StoredSTC``: fit seconds leave the forward pass out);
``embedding``, the last layer's mean-pooled hidden state + logistic regression with the same ``class_weight``, C
among 0.01-10 by 5-fold stratified CV on macro-F1. Records are JSON lines appended to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_selection import REVISION, StoredSTC, bench_data  # noqa: E402

from stc._metrics import score  # noqa: E402
from stc.backbone import load_backbone  # noqa: E402
from stc.data import load_dataset  # noqa: E402
from stc.data._splits import stratified_subsample  # noqa: E402
from stc.data._types import Split  # noqa: E402
from stc.extract import default_poolings, feature_key  # noqa: E402
from stc.head import make_final_classifier  # noqa: E402
from stc.store import ExtractionSettings, build_store  # noqa: E402

WEIGHTS = (None, "balanced")
EMBEDDING_CS = (0.01, 0.1, 1.0, 10.0)


def embedding_fit(features, codes, seed, class_weight):
    """C by 5-fold CV on macro-F1, refitted on every text; returns (the chosen C's CV mean, the model)."""
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(features, codes))
    means = {C: np.mean([score(codes[va], make_final_classifier(C, seed, class_weight).fit(features[tr], codes[tr])
                               .predict(features[va]), "macro_f1") for tr, va in folds]) for C in EMBEDDING_CS}
    best = max(EMBEDDING_CS, key=lambda C: (means[C], -C))
    return float(means[best]), make_final_classifier(best, seed, class_weight).fit(features, codes)


class Cells:
    """One store of the dataset's texts; ``run`` fits every method and weight on one draw and scores it."""

    def __init__(self, store, row_of, test_rows, test_labels, embedding_key, out):
        StoredSTC.big_store, StoredSTC.row_of = store, row_of
        self.store, self.row_of, self.test_rows, self.test_labels = store, row_of, test_rows, test_labels
        self.embedding_key, self.out = embedding_key, out

    def scores(self, predicted, subsets) -> dict:
        return {name: score(self.test_labels[rows], predicted[rows], metric) for name, (rows, metric) in subsets.items()}

    def run(self, cell: dict, texts, labels, seed, methods, subsets) -> None:
        for class_weight in WEIGHTS:
            for method in methods:
                started = time.perf_counter()
                if method == "stc":
                    clf = StoredSTC(random_state=seed, metric="macro_f1", class_weight=class_weight,
                                    show_progress_bar=False).fit(texts, list(labels))
                    X_test = np.hstack([self.store.load(key, columns=columns, rows=self.test_rows)
                                        for key, columns in clf.kept_columns_.items()])
                    predicted = clf.classes_[clf.classifier_.predict(X_test)]
                    extra = {"estimate": clf.expected_score_, "readout": clf.configuration_.get("readout"),
                             "n_features": clf.n_features_, "floor": clf.selection_.get("floor")}
                else:
                    classes = np.unique(labels)
                    features = self.store.load(self.embedding_key, rows=np.array([self.row_of[t] for t in texts]))
                    estimate, model = embedding_fit(features, np.searchsorted(classes, labels), seed, class_weight)
                    predicted = classes[model.predict(self.store.load(self.embedding_key, rows=self.test_rows))]
                    extra = {"estimate": estimate, "C": float(model.named_steps["logreg"].C)}
                record = {**cell, "seed": seed, "method": method, "class_weight": class_weight,
                          **self.scores(predicted, subsets), **extra,
                          "fit_s": round(time.perf_counter() - started, 1), "revision": REVISION,
                          "date": time.strftime("%Y-%m-%d")}
                with open(self.out, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record, default=float) + "\n")
                print(json.dumps(record, default=float), flush=True)


def run_mr(minority, seeds, methods, out) -> None:
    data = bench_data("mr")
    labels = np.asarray(data.pool_labels)
    test_labels = np.asarray(data.dataset.test.labels)
    rng = np.random.default_rng(123)
    positives = np.flatnonzero(test_labels == "positive")
    negatives = rng.choice(np.flatnonzero(test_labels == "negative"), len(positives) // 6, replace=False)
    at_ratio = np.sort(np.concatenate([positives, negatives]))  # the test split at the training draws' 1:6
    everything = np.arange(len(test_labels))
    subsets = {"test": (everything, "macro_f1"), "test_1to6": (at_ratio, "macro_f1"),
               "accuracy_1to6": (at_ratio, "accuracy")}
    cells = Cells(data.store, data.row_of, data.test_rows, test_labels,
                  feature_key("hidden", data.backbone.num_layers, "mean"), out)
    for m in minority:
        for seed in range(seeds):
            draw = np.random.default_rng(seed)
            rows = draw.permutation(np.concatenate([
                draw.choice(np.flatnonzero(labels == "negative"), m, replace=False),
                draw.choice(np.flatnonzero(labels == "positive"), 6 * m, replace=False)]))
            cells.run({"dataset": "mr", "minority": m}, [data.pool_texts[i] for i in rows], labels[rows], seed,
                      methods, subsets)


def run_tweets(size, seeds, methods, out) -> None:
    dataset = load_dataset("tweets", limit=3000)
    backbone = load_backbone("minilm")
    pool = Split(dataset.train.texts + dataset.validation.texts,
                 list(dataset.train.labels) + list(dataset.validation.labels))
    all_texts = pool.texts + dataset.test.texts
    store = build_store(backbone, all_texts, ExtractionSettings(representations=("hidden", "ffn"),
                                                                poolings=default_poolings(backbone)),
                        root="/tmp/bench/stores", show_progress_bar=False)
    row_of = {}
    for row, text in enumerate(all_texts):
        row_of.setdefault(text, row)
    test_labels = np.asarray(dataset.test.labels)
    everything = np.arange(len(test_labels))
    cells = Cells(store, row_of, np.arange(len(pool.texts), len(all_texts)), test_labels,
                  feature_key("hidden", backbone.num_layers, "mean"), out)
    for seed in range(seeds):
        drawn = stratified_subsample(pool, size, seed)
        cells.run({"dataset": "tweets", "size": size}, drawn.texts, np.asarray(drawn.labels), seed, methods,
                  {"test": (everything, "macro_f1"), "accuracy": (everything, "accuracy")})


def table(records: list[dict]) -> str:
    cells: dict = {}
    for r in records:
        cell = (r["dataset"], r.get("minority", r.get("size")), r["method"], str(r["class_weight"]))
        cells.setdefault(cell, []).append(r)
    fields = [f for f in ("test", "test_1to6", "accuracy_1to6", "accuracy", "estimate")
              if any(f in r for r in records)]
    lines = ["| dataset | minority texts / size | method | class_weight | seeds | " + " | ".join(fields) + " |",
             "|---|---|---|---|---|" + "---|" * len(fields)]
    for (name, n, method, weight), rows in sorted(cells.items()):
        values = " | ".join(f"{100 * np.mean([r[f] for r in rows if f in r]):.1f}" if any(f in r for r in rows)
                            else "–" for f in fields)
        lines.append(f"| {name} | {n} | {method} | {weight} | {len(rows)} | {values} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", choices=("mr", "tweets"))
    parser.add_argument("--minority", default="8,32,128", help="mr: minority texts per draw (6x as many others)")
    parser.add_argument("--size", type=int, default=2000, help="tweets: texts per draw")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default="stc,embedding")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/imbalanced.jsonl"))
    parser.add_argument("--table", type=Path, help="only print the table of this file")
    args = parser.parse_args()
    if args.table:
        print(table([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]))
        return
    methods = tuple(args.methods.split(","))
    if args.dataset == "mr":
        run_mr([int(m) for m in args.minority.split(",")], args.seeds, methods, args.out)
    elif args.dataset == "tweets":
        run_tweets(args.size, args.seeds, methods, args.out)
    else:
        parser.error("name a dataset (mr, tweets) or give --table FILE")


if __name__ == "__main__":
    main()
