"""The embedding readout's C with few texts: fixed Cs against C chosen by cross-validation (best mean, or the
one-standard-error rule), on the grid of then (0.01-10) and on grids reaching lower.

    python benchmarks/bench_embedding_c.py --datasets mr,bbc-news,tweets:3000 --per-class 8,16,32,64,128,256
    python benchmarks/bench_embedding_c.py --table-only --out benchmarks/results/embedding-c-2026-12-07.jsonl

Per dataset (``name:N`` caps each split at N texts, as ``--limit`` does), k texts per class and seed (the draws of
``bench_few_labels.py``: k of every class from train + validation): the last layer's mean-pooled hidden state of
MiniLM (the embedding readout, from the dataset's benchmark store) is fitted on the k-per-class texts and scored on
the whole test split (accuracy; macro-F1 for tweets). Variants, each a record field:

* ``stdC``: stc's head (standardisation + logistic regression, ``stc.head.make_final_classifier``) at a fixed C;
* ``nrmC``: L2-normalised features + logistic regression at C, no standardisation (SetFit's head reads the
  normalised sentence embedding at scikit-learn's C = 1);
* ``cv`` / ``cvwide``: stc's head at the C of the best 5-fold mean (ties: the smaller C) over 0.01-10 (the
  grid of then, and ``bench_selection.embedding_run``'s) / over 0.0003-10;
* ``se`` / ``sewide``: the same folds, the smallest C within one paired standard error of the best (the
  one-standard-error rule as ``stc.selection.choose_one_se`` applies it) over 0.01-10 / over 0.001-10.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

from bench_few_labels import draw_per_class
from bench_selection import bench_data

from stc._metrics import score
from stc.extract import feature_key
from stc.head import make_final_classifier

FIXED_CS = (0.0003, 0.001, 0.003, 0.01, 0.1, 1.0)
NORMALISED_CS = (1.0, 10.0)
CHOSEN = (("cv", (0.01, 0.1, 1.0, 10.0), False), ("cvwide", (0.0003, 0.001, 0.003, 0.01, 0.1, 1.0, 10.0), False),
          ("se", (0.01, 0.1, 1.0, 10.0), True), ("sewide", (0.001, 0.01, 0.1, 1.0, 10.0), True))


def chosen_C(features, codes, metric, seed, Cs, make, one_se=False) -> float:
    """The C of the best 5-fold mean (ties: the smaller), or the smallest within one paired standard error of it."""
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(features, codes))
    scores = {C: np.array([score(codes[va], make(C).fit(features[tr], codes[tr]).predict(features[va]), metric)
                           for tr, va in folds]) for C in Cs}
    best = max(Cs, key=lambda C: (scores[C].mean(), -C))
    if not one_se:
        return best
    for C in sorted(Cs):
        differences = scores[best] - scores[C]
        if C == best or differences.mean() <= differences.std(ddof=1) / np.sqrt(len(differences)):
            return C
    return best


def run(spec: str, sizes, seeds: int, write) -> None:
    name, _, limit = spec.partition(":")
    data = bench_data(name, "/tmp/bench/stores", limit=int(limit) if limit else None)
    metric = data.dataset.metric
    key = feature_key("hidden", data.backbone.num_layers, "mean")
    test_labels = np.asarray(data.dataset.test.labels)
    test_features = data.store.load(key, rows=data.test_rows)
    for k in sizes:
        for seed in range(seeds):
            rows = draw_per_class(data.pool_labels, k, seed)
            texts = [data.pool_texts[i] for i in rows]
            labels = np.asarray(data.pool_labels, dtype=object)[rows].astype(test_labels.dtype)
            classes = np.unique(labels)
            codes, test_codes = np.searchsorted(classes, labels), np.searchsorted(classes, test_labels)
            features = data.store.load(key, rows=data.rows(texts))
            record = {"dataset": spec, "k": k, "seed": seed}

            def standardised(C):
                return make_final_classifier(C, seed)

            def normalised(C):
                return make_pipeline(Normalizer(), LogisticRegression(C=C, max_iter=2000, random_state=seed))

            for C in FIXED_CS:
                record[f"std{C}"] = score(test_codes, standardised(C).fit(features, codes).predict(test_features),
                                          metric)
            for C in NORMALISED_CS:
                record[f"nrm{C}"] = score(test_codes, normalised(C).fit(features, codes).predict(test_features),
                                          metric)
            for label, Cs, one_se in CHOSEN:
                C = chosen_C(features, codes, metric, seed, Cs, standardised, one_se)
                record[label] = score(test_codes, standardised(C).fit(features, codes).predict(test_features), metric)
                record[f"{label}_C"] = C
            write(record)


def table(records: list[dict]) -> str:
    """Mean test score per cell and variant (100 x), and its difference from ``cv`` in brackets."""
    cells = collections.defaultdict(list)
    for r in records:
        cells[(r["dataset"], r["k"])].append(r)
    variants = [key for key in records[0] if key not in ("dataset", "k", "seed") and not key.endswith("_C")]
    lines = ["| dataset | per class | seeds | " + " | ".join(variants) + " |", "|---|---|---|" + "---|" * len(variants)]
    means = collections.defaultdict(list)
    for (name, k), rs in sorted(cells.items()):
        base = np.array([r["cv"] for r in rs])
        row = []
        for v in variants:
            values = np.array([r[v] for r in rs])
            means[v].append(100 * values.mean())
            row.append(f"{100 * values.mean():.1f} ({100 * (values - base).mean():+.1f})")
        lines.append(f"| {name} | {k} | {len(rs)} | " + " | ".join(row) + " |")
    lines.append(f"| mean of {len(cells)} cells | | | " + " | ".join(f"{np.mean(means[v]):.2f}" for v in variants) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="mr,bbc-news,tweets:3000")
    parser.add_argument("--per-class", default="8,16,32,64,128,256")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/embedding-c.jsonl")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.table_only:
        out.parent.mkdir(parents=True, exist_ok=True)

        def write(record: dict) -> None:
            with open(out, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)

        for spec in args.datasets.split(","):
            run(spec, [int(k) for k in args.per_class.split(",")], args.seeds, write)
    print(table([json.loads(line) for line in out.read_text().splitlines() if line.strip()]))


if __name__ == "__main__":
    main()
