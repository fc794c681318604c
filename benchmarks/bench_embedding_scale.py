"""The embedding readout's scaling with few texts: per-unit standardisation (stc's head) against one shared scale
and against SetFit's L2-normalised head, on an encoder and on a decoder.

    python benchmarks/bench_embedding_scale.py --models minilm,smollm2 --datasets mr,bbc-news --per-class 8,16,32,64,128
    python benchmarks/bench_embedding_scale.py --table-only --out benchmarks/results/embedding-scale-2026-12-07.jsonl
    python benchmarks/bench_embedding_scale.py --spreads --models minilm,smollm2 --datasets mr   # units' spreads only

Per model, dataset, k texts per class and seed (the draws of ``bench_few_labels.py``: k of every class from train +
validation): the last layer's mean-pooled hidden state (the embedding floor's readout) is fitted on the drawn texts
and scored on the whole test split (accuracy; macro-F1 for tweets). Features are extracted once per model and
dataset (only the texts some draw or the test split needs) and cached under ``--cache``. Variants, each a record
field (``*_se``: C by the one-standard-error rule over 5 stratified folds, ``stc.aggregate.DEFAULT_FINAL_CS``, as
the floor chooses it; ``*_C``: the C chosen):

* ``std``: stc's head (per-unit standardisation + logistic regression, ``stc.head.make_final_classifier``);
* ``shared``: every unit centred and divided by one scale shared by all units (the root of their mean variance),
  so the units keep the relative spreads the backbone gave them and no spread is estimated per unit;
* ``nrm1``: SetFit's head: each text's vector L2-normalised, no centring, logistic regression at C = 1.

Why: per-unit spreads estimated from 16 texts carry ~18 % noise each, while MiniLM's units differ by less than that
(max/median spread 1.3 on 200 MR sentences); a decoder's units do not (SmolLM2: 13x, five units hold a third of the
variance). Which scaling suits tiny data on both is what this measures.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

from bench_embedding_c import chosen_C
from bench_few_labels import draw_per_class, pool_data

from stc._metrics import score
from stc.aggregate import DEFAULT_FINAL_CS
from stc.backbone import load_backbone
from stc.extract import extract_features, feature_key
from stc.head import make_final_classifier


class SharedScale(TransformerMixin, BaseEstimator):
    """Centre every unit; divide all by one scale, the root of the units' mean variance."""

    def fit(self, X, y=None):
        self.mean_ = X.mean(axis=0)
        self.scale_ = float(np.sqrt(X.var(axis=0).mean())) or 1.0
        return self

    def transform(self, X):
        return (X - self.mean_) / self.scale_


def makers(seed: int) -> dict:
    return {"std": lambda C: make_final_classifier(C, seed),
            "shared": lambda C: make_pipeline(SharedScale(), LogisticRegression(C=C, max_iter=2000,
                                                                                random_state=seed))}


def features_for(model: str, name: str, sizes, seeds: int, cache: Path, max_length: int | None):
    """(pool features by row (NaN where never drawn), test features, data) from the cache, extracting what is missing."""
    data = pool_data(name)
    needed = sorted({int(r) for k in sizes for s in range(seeds) for r in draw_per_class(data.pool_labels, k, s)})
    path = cache / f"{model}-{name}-{max_length}.npz"
    held = dict(np.load(path)) if path.exists() else {"rows": np.zeros(0, int)}
    missing = sorted(set(needed) - set(held["rows"].tolist()))
    if missing or "test" not in held:
        backbone = load_backbone(model)
        key = feature_key("hidden", backbone.num_layers, "mean")
        new = extract_features(backbone, [data.pool_texts[r] for r in missing], [key], max_length=max_length,
                               show_progress_bar=True)[key] if missing else np.zeros((0, 1), np.float32)
        test = held.get("test")
        if test is None:
            test = extract_features(backbone, data.dataset.test.texts, [key], max_length=max_length,
                                    show_progress_bar=True)[key]
        pool = held.get("pool")
        rows = np.concatenate([held["rows"], np.asarray(missing, int)])
        pool = new if pool is None else (np.vstack([pool, new]) if missing else pool)
        held = {"rows": rows, "pool": pool, "test": test}
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **held)
    index = {int(r): i for i, r in enumerate(held["rows"])}
    return held["pool"], index, held["test"], data


def unit_spreads(model: str, name: str, n_texts: int = 200) -> dict:
    """How alike the embedding's units are: the spread of each unit over the first ``n_texts`` training texts."""
    backbone = load_backbone(model)
    key = feature_key("hidden", backbone.num_layers, "mean")
    X = extract_features(backbone, pool_data(name).dataset.train.texts[:n_texts], [key])[key].astype(np.float64)
    spread = X.std(axis=0)
    return {"model": model, "dataset": name, "n_texts": n_texts, "units": X.shape[1],
            "max_over_median_spread": float(spread.max() / np.median(spread)),
            "variance_share_of_top5_units": float(np.sort(spread**2)[-5:].sum() / (spread**2).sum()),
            "largest_abs_unit_mean": float(np.abs(X.mean(axis=0)).max())}


def run(model: str, name: str, sizes, seeds: int, cache: Path, max_length, write, done) -> None:
    pool, index, test_features, data = features_for(model, name, sizes, seeds, cache, max_length)
    metric = data.dataset.metric
    test_labels = np.asarray(data.dataset.test.labels)
    for k in sizes:
        for seed in range(seeds):
            if (model, name, k, seed) in done:
                continue
            rows = draw_per_class(data.pool_labels, k, seed)
            labels = np.asarray(data.pool_labels, dtype=object)[rows].astype(test_labels.dtype)
            classes = np.unique(labels)
            codes, test_codes = np.searchsorted(classes, labels), np.searchsorted(classes, test_labels)
            features = pool[[index[int(r)] for r in rows]]
            record = {"model": model, "dataset": name, "k": k, "seed": seed}
            for label, make in makers(seed).items():
                C = chosen_C(features, codes, metric, seed, DEFAULT_FINAL_CS, make, one_se=True)
                record[f"{label}_se"] = score(test_codes, make(C).fit(features, codes).predict(test_features), metric)
                record[f"{label}_C"] = C
            setfit_head = make_pipeline(Normalizer(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
            record["nrm1"] = score(test_codes, setfit_head.fit(features, codes).predict(test_features), metric)
            write(record)


def table(records: list[dict]) -> str:
    """Mean test score per cell and variant (100 x); in brackets the mean paired difference from ``std_se`` and
    its standard error over the seeds."""
    cells = collections.defaultdict(list)
    for r in records:
        cells[(r["model"], r["dataset"], r["k"])].append(r)
    variants = [key for key in records[0] if key not in ("model", "dataset", "k", "seed") and not key.endswith("_C")]
    lines = ["| model | dataset | per class | seeds | " + " | ".join(variants) + " |",
             "|---|---|---|---|" + "---|" * len(variants)]
    means = collections.defaultdict(list)
    for (model, name, k), rs in sorted(cells.items()):
        base = np.array([r["std_se"] for r in rs])
        row = []
        for v in variants:
            values = np.array([r[v] for r in rs])
            means[(model, v)].append(100 * values.mean())
            d = 100 * (values - base)
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            row.append(f"{100 * values.mean():.1f}" + ("" if v == "std_se" else f" ({d.mean():+.1f} ± {se:.1f})"))
        lines.append(f"| {model} | {name} | {k} | {len(rs)} | " + " | ".join(row) + " |")
    for model in sorted({m for m, _, _ in cells}):
        n = len(means[(model, variants[0])])
        lines.append(f"| {model}: mean of {n} cells | | | | "
                     + " | ".join(f"{np.mean(means[(model, v)]):.2f}" for v in variants) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="minilm,smollm2")
    parser.add_argument("--datasets", default="mr,bbc-news")
    parser.add_argument("--per-class", default="8,16,32,64,128")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per text (BBC News articles are long)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bench/embedding-cache"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/embedding-scale.jsonl"))
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--spreads", action="store_true", help="print the units' spreads per model and dataset")
    args = parser.parse_args()
    if args.spreads:
        for model in args.models.split(","):
            for name in args.datasets.split(","):
                print(json.dumps(unit_spreads(model, name)), flush=True)
        return
    if not args.table_only:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        done = set()
        if args.out.exists():
            done = {(r["model"], r["dataset"], r["k"], r["seed"])
                    for r in map(json.loads, args.out.read_text().splitlines()) if r}

        def write(record: dict) -> None:
            with open(args.out, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)

        sizes = [int(k) for k in args.per_class.split(",")]
        for model in args.models.split(","):
            for name in args.datasets.split(","):
                run(model, name, sizes, args.seeds, args.cache, args.max_length, write, done)
    print(table([json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]))


if __name__ == "__main__":
    main()
