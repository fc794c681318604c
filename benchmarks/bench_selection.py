"""Does STC's selection hold on unseen data? STC (new default) vs STC as it was (cv=None) vs the embedding.

For each dataset and training size, over several seeds: draw n training texts and 0.1 n validation texts
(stratified) from the dataset's train + validation splits ("all": every one of them), fit

* ``stc``: STCClassifier with every default (cross-validated selection up to 20,000 texts, one-SE rule, dense
  readouts in the search); its estimate is ``expected_score_``;
* ``stc-split``: STCClassifier(cv=None), the paper's selection on the validation split; its estimate is the
  validation score it prints (``val_score_``);
* ``embedding``: the last layer's mean-pooled hidden state + logistic regression, C chosen by the same 5-fold
  cross-validation over train + validation (its estimate: the chosen C's cross-validation mean),

and score each on the dataset's whole test split. Optimism = estimate - test score. The activations of every text
of a dataset are extracted once into one store; each fit reads its rows from it, so fit times below leave the
(identical) extraction out.

    python benchmarks/bench_selection.py                      # mr, bbc-news, tweets; 500, 2000, all; 5 seeds
    python benchmarks/bench_selection.py --datasets mr --sizes 500 --seeds 2

Two ablations of ``stc`` are ordinary fits on the same texts and store, opt-in with ``--methods`` (each costs a
whole ``stc`` fit): ``stc-best`` (``selection_rule="best"``: the best cross-validation score, no one-standard-error
rule), ``stc-no-hybrid`` (``readout_kinds=("sparse", "dense")``: the rule without the hybrid readouts) and
``stc-no-mlp`` (``mlp_head=False``: no third stage of MLP heads; the record's ``head`` says which head ``stc``
chose). Every
STC figure is read from the fitted estimator's public record (``expected_score_``, ``configuration_``,
``cv_results_`` ...).

    python benchmarks/bench_selection.py --methods stc,stc-best,stc-no-hybrid

Runs are appended to ``--out`` (JSON lines) as they finish and skipped when already there, so an interrupted run
resumes; the table is printed from that file.

``--resplit`` asks whether a result belongs to the data or to its one official test split: each seed pools every
text of the dataset (train, validation and test), draws a new stratified test split of the official one's size from
it (seeded), and draws the training texts from the rest; records say ``"test_split": "resplit"``. Give it its own
``--out``: the table does not tell the two kinds of record apart.

    python benchmarks/bench_selection.py --datasets bbc-news --sizes all --resplit --methods stc,stc-no-floor,embedding
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from stc import STCClassifier
from stc._metrics import score
from stc.aggregate import make_final_classifier
from stc.backbone import load_backbone
from stc.data import TextDataset, load_dataset
from stc.extract import default_poolings, feature_key
from stc.store import ActivationStore, ExtractionSettings, build_store

METHODS = ("stc", "stc-split", "embedding")
#: The STC methods: STCClassifier with every default but these (the first two are METHODS; the others: --methods).
STC_METHODS = {"stc": {}, "stc-split": dict(cv=None, calibrate=False), "stc-balanced": dict(class_weight="balanced"),
               "stc-best": dict(selection_rule="best"), "stc-no-hybrid": dict(readout_kinds=("sparse", "dense")),
               "stc-no-floor": dict(selection_rule="one_se"), "stc-no-mlp": dict(mlp_head=False)}
EXTRA_METHODS = ("stc-balanced", "stc-best", "stc-no-hybrid", "stc-no-floor", "stc-no-mlp")
#: The table's ablation columns: the method behind each, and the name older records (whose ``stc`` record held
#: the ablation, chosen from that fit's own candidates) gave it.
ABLATIONS = {"stc-best": "best", "stc-no-hybrid": "no_hybrid"}
DEFAULT_STORE_DIR = "/tmp/bench/stores"


class StoreRows:
    """Some rows of a store, seen as a store of their own (what ``STCClassifier.fit_store`` reads; ``meta`` lets it
    check the backbone and tokenisation the store was extracted with)."""

    def __init__(self, store: ActivationStore, rows: np.ndarray):
        self.store, self.rows, self.path, self.keys = store, np.asarray(rows), store.path, store.keys
        self.n_texts, self.meta = len(self.rows), store.meta

    def dim(self, key: str) -> int:
        return self.store.dim(key)

    def load(self, key: str, columns=None, rows=None) -> np.ndarray:
        return self.store.load(key, columns=columns, rows=self.rows if rows is None else self.rows[rows])


class StoredSTC(STCClassifier):
    """STCClassifier reading the dataset's one store instead of extracting again: ``fit(texts, ...)`` is
    ``fit_store`` on those texts' rows of the store ``bench_data`` installed."""

    big_store: ActivationStore = None
    row_of: dict = None

    def fit(self, X, y, *, X_val=None, y_val=None) -> StoredSTC:
        texts = list(X) + ([] if X_val is None else list(X_val))
        labels = list(y) + ([] if y_val is None else list(y_val))
        rows = np.array([self.row_of[text] for text in texts])
        return self.fit_store(StoreRows(self.big_store, rows), labels,
                              validation_rows=None if X_val is None else np.arange(len(X), len(texts)))


def revision() -> str | None:
    """The commit the benchmark runs on (with "+" when the tree has changes), so records of different code differ."""
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("+" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def draw(texts, labels, size, seed):
    """(train texts, train labels, val texts, val labels): n + 0.1 n, stratified, from the pool."""
    labels = np.asarray(labels)
    n = len(texts) if size == "all" else min(int(size), int(len(texts) / 1.1))
    n_val = max(int(round(0.1 * n)), len(np.unique(labels)))
    index = np.arange(len(texts))
    if n + n_val < len(texts):
        index, _ = train_test_split(index, train_size=n + n_val, stratify=labels, random_state=seed)
    train, val = train_test_split(index, test_size=n_val, stratify=labels[index], random_state=seed)
    return ([texts[i] for i in train], labels[train], [texts[i] for i in val], labels[val])


def embedding_run(features, codes, test_features, test_codes, metric, seed, Cs=(0.01, 0.1, 1.0, 10.0)):
    """Embedding + LR, C by 5-fold CV over the pool (mean), refitted on all of it."""
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(features, codes))
    means = {}
    for C in Cs:
        means[C] = np.mean([score(codes[va], make_final_classifier(C, seed).fit(features[tr], codes[tr])
                                  .predict(features[va]), metric) for tr, va in folds])
    best = max(Cs, key=lambda C: (means[C], -C))
    model = make_final_classifier(best, seed).fit(features, codes)
    return means[best], score(test_codes, model.predict(test_features), metric), {"C": best}


@dataclass
class BenchData:
    """A dataset, MiniLM, and one store holding every text (pool, then test), installed for ``StoredSTC``."""

    dataset: TextDataset
    backbone: object
    pool_texts: list
    pool_labels: list
    store: ActivationStore
    row_of: dict  # text -> its first row in the store
    test_rows: np.ndarray

    def rows(self, texts) -> np.ndarray:
        return np.array([self.row_of[t] for t in texts])


def bench_data(name: str, store_dir=DEFAULT_STORE_DIR, show_progress_bar: bool = False,
               limit: int | None = None) -> BenchData:
    """The benchmark store of dataset ``name`` (built on first use, found on disk after), ready for StoredSTC;
    ``limit`` caps each split as ``load_dataset`` does."""
    dataset = load_dataset(name, limit=limit)
    backbone = load_backbone("minilm")
    pool_texts = dataset.train.texts + (dataset.validation.texts if dataset.validation else [])
    pool_labels = list(dataset.train.labels) + (list(dataset.validation.labels) if dataset.validation else [])
    all_texts = pool_texts + dataset.test.texts
    settings = ExtractionSettings(representations=("hidden", "ffn"), poolings=default_poolings(backbone))
    started = time.perf_counter()
    store = build_store(backbone, all_texts, settings, root=store_dir, show_progress_bar=show_progress_bar)
    print(f"[{name}] store of {len(all_texts)} texts in {time.perf_counter() - started:.0f} s", flush=True)
    row_of = {}
    for row, text in enumerate(all_texts):
        row_of.setdefault(text, row)
    StoredSTC.big_store, StoredSTC.row_of = store, row_of
    return BenchData(dataset, backbone, pool_texts, pool_labels, store, row_of,
                     np.arange(len(pool_texts), len(all_texts)))


def resplit(data: BenchData, seed: int):
    """(pool texts, pool labels, test rows, test labels): every text of the dataset, with a stratified test split
    of the official one's size drawn anew (seeded) and the rest as the pool."""
    texts = data.pool_texts + data.dataset.test.texts
    labels = np.asarray(list(data.pool_labels) + list(data.dataset.test.labels))
    pool, test = train_test_split(np.arange(len(texts)), test_size=len(data.dataset.test.texts), stratify=labels,
                                  random_state=1000 + seed)
    return [texts[i] for i in pool], labels[pool], data.rows([texts[i] for i in test]), labels[test]


def run_dataset(name, sizes, seeds, out_path, done, store_dir, methods=METHODS, resplit_test=False):
    data = bench_data(name, store_dir, show_progress_bar=True)
    dataset, backbone, store, row_of = data.dataset, data.backbone, data.store, data.row_of
    embedding_key = feature_key("hidden", backbone.num_layers, "mean")
    for size in sizes:
        for seed in range(seeds):
            if resplit_test:
                pool_texts, pool_labels, test_rows, test_labels = resplit(data, seed)
            else:
                pool_texts, pool_labels = data.pool_texts, data.pool_labels
                test_rows, test_labels = data.test_rows, np.asarray(dataset.test.labels)
            train_texts, train_labels, val_texts, val_labels = draw(pool_texts, pool_labels, size, seed)
            for method in methods:
                tag = (name, str(size), seed, method, "resplit" if resplit_test else "official")
                if tag in done:
                    continue
                started = time.perf_counter()
                extra = {}
                if method == "embedding":
                    classes = np.unique(np.concatenate([train_labels, val_labels]))
                    texts = train_texts + val_texts
                    codes = np.searchsorted(classes, np.concatenate([train_labels, val_labels]))
                    features = store.load(embedding_key, rows=np.array([row_of[t] for t in texts]))
                    test_codes = np.searchsorted(classes, test_labels)
                    estimate, test, extra = embedding_run(features, codes, store.load(embedding_key, rows=test_rows),
                                                          test_codes, dataset.metric, seed)
                else:
                    clf = StoredSTC(metric=dataset.metric, random_state=seed, show_progress_bar=False,
                                    **STC_METHODS[method])
                    clf.fit(train_texts, train_labels, X_val=val_texts, y_val=val_labels)
                    X_test = np.hstack([store.load(key, columns=cols, rows=test_rows)
                                        for key, cols in clf.kept_columns_.items()])
                    predicted = clf.classes_[clf.classifier_.predict(X_test)]
                    test = score(test_labels, predicted, dataset.metric)
                    estimate = clf.val_score_ if method == "stc-split" else clf.expected_score_
                    config = clf.configuration_
                    extra.update({"readout": config.get("readout"), "head": config.get("head"),
                                  "n_features": clf.n_features_,
                                  "exit_layer": clf.exit_layer_, "eta": config.get("eta"), "C": config.get("C"),
                                  "cv_score": clf.val_score_, "val_score": clf.val_score_, "timings": clf.fit_timings_,
                                  "rule": clf.selection_["rule"], "n_candidates": len(clf.cv_results_["params"]),
                                  "floor": clf.selection_.get("floor"),
                                  "floor_margin": clf.selection_.get("floor_margin")})
                record = {"dataset": name, "size": str(size), "seed": seed, "method": method, "revision": REVISION,
                          "n_train": len(train_texts), "n_val": len(val_texts), "metric": dataset.metric,
                          "estimate": estimate, "test": test, "optimism": estimate - test,
                          "fit_seconds": time.perf_counter() - started,
                          "test_split": "resplit" if resplit_test else "official", **extra}
                with open(out_path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(json.dumps({k: record[k] for k in ("dataset", "size", "seed", "method", "estimate", "test",
                                                         "fit_seconds")}), flush=True)


def table(out_path) -> str:
    records = [json.loads(line) for line in Path(out_path).read_text().splitlines() if line.strip()]
    cells = {}
    for r in records:
        cells.setdefault((r["dataset"], r["size"]), {}).setdefault(r["method"], []).append(r)
    lines = ["| dataset | size | seeds | metric | stc test | stc optimism | stc-split test | stc-split optimism | "
             "embedding test | embedding optimism | stc − embedding | stc fit s | stc-split fit s | "
             "ablation: best-score rule test | ablation: no-hybrid test |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    margins = []
    for (name, size), methods in sorted(cells.items()):
        def mean(method, field):
            values = [r[field] for r in methods.get(method, [])]
            return float(np.mean(values)) if values else float("nan")
        n = min(len(methods.get(m, [])) for m in METHODS)

        def ablation(method):
            values = [r["test"] for r in methods.get(method, [])]
            if values:
                return f"{100 * np.mean(values):.1f}"
            old = [r["ablations"][ABLATIONS[method]]["test"] for r in methods.get("stc", []) if "ablations" in r]
            return f"{100 * np.mean(old):.1f}*" if old else "–"
        margin = 100 * (mean("stc", "test") - mean("embedding", "test"))
        margins.append(margin)
        lines.append(f"| {name} | {size} | {n} | {next(iter(methods.values()))[0]['metric']} | "
                     f"{100 * mean('stc', 'test'):.1f} | {100 * mean('stc', 'optimism'):+.1f} | "
                     f"{100 * mean('stc-split', 'test'):.1f} | {100 * mean('stc-split', 'optimism'):+.1f} | "
                     f"{100 * mean('embedding', 'test'):.1f} | {100 * mean('embedding', 'optimism'):+.1f} | "
                     f"{margin:+.1f} | {mean('stc', 'fit_seconds'):.0f} | {mean('stc-split', 'fit_seconds'):.0f} | "
                     f"{ablation('stc-best')} | {ablation('stc-no-hybrid')} |")
    lines.append("\n*: from records before the ablations were fits of their own (each chosen from the stc fit's own "
                 "candidates and refitted with its final probes)")
    lines.append(f"mean stc − embedding over {len(margins)} cells: {np.nanmean(margins):+.2f} points")
    revisions = {cell: sorted({str(r.get("revision")) for r in methods.get("stc", [])}) for cell, methods in
                 sorted(cells.items())}
    lines.append("stc records by commit (None: before records named it): " + "; ".join(
        f"{name} {size}: {', '.join(found)}" for (name, size), found in revisions.items() if found))
    for (name, size), methods in sorted(cells.items()):
        balanced = methods.get("stc-balanced", [])
        if balanced:
            seeds = {r["seed"] for r in balanced}
            plain = [r["test"] for r in methods.get("stc", []) if r["seed"] in seeds]
            lines.append(f"class_weight='balanced', {name} {size}, seeds {sorted(seeds)}: test "
                         f"{100 * np.mean([r['test'] for r in balanced]):.1f} vs {100 * np.mean(plain):.1f} without "
                         f"(optimism {100 * np.mean([r['optimism'] for r in balanced]):+.1f})")
    return "\n".join(lines)


REVISION = revision()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="mr,bbc-news,tweets")
    parser.add_argument("--sizes", default="500,2000,all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/selection.jsonl")
    parser.add_argument("--store-dir", default=DEFAULT_STORE_DIR)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--resplit", action="store_true",
                        help="draw each seed's test split anew from every text of the dataset (see the docstring)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"among {METHODS + EXTRA_METHODS} (default: the first three)")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.table_only:
        out.parent.mkdir(parents=True, exist_ok=True)
        done = set()
        if out.exists():
            done = {(r["dataset"], r["size"], r["seed"], r["method"], r.get("test_split", "official"))
                    for r in map(json.loads, filter(str.strip, out.read_text().splitlines()))}
        for name in args.datasets.split(","):
            run_dataset(name, [s if s == "all" else int(s) for s in args.sizes.split(",")], args.seeds, out, done,
                        args.store_dir, tuple(args.methods.split(",")), args.resplit)
    print(table(out))


if __name__ == "__main__":
    main()
