"""Few labels (issue 23): STC with every default against the embedding, SetFit and STC on SetFit's body, at 8 to 64
labelled texts per class.

    python benchmarks/bench_few_labels.py                                  # mr, bbc-news, tweets; 8,16,32,64; 5 seeds
    python benchmarks/bench_few_labels.py --datasets mr --per-class 8,32 --seeds 3 --methods stc,stc-once,embedding
    python benchmarks/bench_few_labels.py --table-only
    python benchmarks/bench_few_labels.py --table-only --out benchmarks/results/few-labels-2026-12-07.jsonl \
        --records benchmarks/results/few-labels-setfit-2026-12-06.jsonl benchmarks/results/few-labels-2026-12-05.jsonl \
        benchmarks/results/few-labels-2026-12-06.jsonl       # the tables benchmarks/README.md cites

Per dataset, number k of texts per class and seed: k texts of every class drawn (seeded, without replacement) from
the dataset's train + validation splits, given to each method as ``fit(X, y)`` with no validation set, as a user
with a handful of labels would; every method is scored on the dataset's whole test split, in its metric. Methods:

* ``stc``: ``STCClassifier(random_state=seed)`` with every default (5-fold cross-validation, the
  one-standard-error rule, the embedding floor); its estimate is ``expected_score_``. It reads the dataset's one
  store (MiniLM, every text extracted once, as ``bench_selection.py`` does), so its fit time leaves the forward pass
  out;
* ``stc-repeats``: the same with ``cv_repeats="auto"`` (repeated stratified k-fold: up to 5 seeded partitions below
  200 texts);
* ``embedding``: the last layer's mean-pooled hidden state of the same store + logistic regression, C among
  0.01-10 by 5-fold stratified cross-validation (``bench_selection.embedding_run``; its estimate is that mean);
* ``setfit``: SetFit (the ``setfit`` extra) with its paper's few-shot recipe (``num_iterations=20``, 1 epoch, batch
  16) on MiniLM, its own logistic head, its own forward passes (fit seconds include them);
* ``stc-setfit-body``: ``STCClassifier`` with every default on the body of that SetFit model (``save_body``), which
  it extracts itself: its fit seconds exclude SetFit's. Its estimate is void (the body was tuned on the texts the
  folds hold out), and not reported.

Records are appended to ``--out`` as JSON lines and skipped when there, so an interrupted run resumes; the table
(means over seeds, the standard error of each cell's mean, and the issue's tests: STC >= embedding - 1 point in
every cell, STC's mean over cells >= the embedding's) is printed from that file and the ``--records`` files (read
only; of two records of one dataset, size, seed and method the first read is kept: ``--out``'s, then in order).
Where SetFit ran, a second table pairs it with STC on its body, and frozen STC and the embedding on the same seeds,
and tests the issue's second point: from 32 per class, over the cells with 5 seeds, the better STC workflow's mean
against SetFit's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench_selection import REVISION, StoredSTC, bench_data, embedding_run

from stc._metrics import score
from stc.data import load_dataset
from stc.extract import feature_key

METHODS = ("stc", "stc-repeats", "embedding", "setfit", "stc-setfit-body")
DEFAULT_METHODS = ("stc", "embedding")
DEFAULT_OUT = "benchmarks/results/few-labels.jsonl"


def draw_per_class(labels, k: int, seed: int) -> np.ndarray:
    """k pool rows of every class (all of a class with fewer), seeded, in a seeded shuffled order."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    rows = [rng.choice(np.flatnonzero(labels == label), size=min(k, int(np.sum(labels == label))), replace=False)
            for label in np.unique(labels)]
    return rng.permutation(np.concatenate(rows))


def pool_data(name: str) -> SimpleNamespace:
    """The draws' pool (train + validation, as ``bench_data`` orders it) and the dataset, without a store: the
    SetFit methods run their own forward passes, and a store of every text (38k tweets) costs far more than they do."""
    dataset = load_dataset(name)
    pool_texts = dataset.train.texts + (dataset.validation.texts if dataset.validation else [])
    pool_labels = list(dataset.train.labels) + (list(dataset.validation.labels) if dataset.validation else [])
    return SimpleNamespace(dataset=dataset, pool_texts=pool_texts, pool_labels=pool_labels)


def stc_record(clf, data, test_labels, metric) -> dict:
    X_test = np.hstack([data.store.load(key, columns=cols, rows=data.test_rows)
                        for key, cols in clf.kept_columns_.items()])
    predicted = clf.classes_[clf.classifier_.predict(X_test)]
    config = clf.configuration_
    return {"test": score(test_labels, predicted, metric), "estimate": clf.expected_score_,
            "estimate_se": clf.expected_score_se_, "readout": config.get("readout"), "head": config.get("head"),
            "n_features": clf.n_features_, "exit_layer": clf.exit_layer_, "floor": clf.selection_.get("floor"),
            "floor_margin": clf.selection_.get("floor_margin"),
            "repeats": clf.selection_.get("repeats", 1), "folds": clf.selection_.get("folds"),
            "timings": clf.fit_timings_}


def run_cell(name, data, k, seed, methods, done, write, scratch):
    dataset, metric = data.dataset, data.dataset.metric
    rows = draw_per_class(data.pool_labels, k, seed)
    texts = [data.pool_texts[i] for i in rows]
    labels = np.asarray(data.pool_labels, dtype=object)[rows]
    test_labels = np.asarray(dataset.test.labels)
    labels = labels.astype(test_labels.dtype)
    setfit_model = None
    for method in methods:
        if (name, k, seed, method) in done:
            continue
        started = time.perf_counter()
        if method in ("stc", "stc-repeats"):
            clf = StoredSTC(random_state=seed, show_progress_bar=False,
                            **({"cv_repeats": "auto"} if method == "stc-repeats" else {}))
            clf.fit(texts, labels)
            fit_s = time.perf_counter() - started
            extra = stc_record(clf, data, test_labels, metric)
        elif method == "embedding":
            key = feature_key("hidden", data.backbone.num_layers, "mean")
            classes = np.unique(labels)
            estimate, test, chosen = embedding_run(data.store.load(key, rows=data.rows(texts)),
                                                   np.searchsorted(classes, labels),
                                                   data.store.load(key, rows=data.test_rows),
                                                   np.searchsorted(classes, test_labels), metric, seed)
            fit_s = time.perf_counter() - started
            extra = {"test": test, "estimate": estimate, **chosen}
        elif method == "setfit":
            from stc.baselines import SetFitClassifier

            setfit_model = SetFitClassifier(model="minilm", num_iterations=20, epochs=1, batch_size=16, device="cpu",
                                            metric=metric, random_state=seed, show_progress_bar=False)
            setfit_model.fit(texts, list(labels), X_val=texts, y_val=list(labels))  # nothing held out: all to train
            fit_s = time.perf_counter() - started
            extra = {"test": score(test_labels, np.asarray(setfit_model.predict(dataset.test.texts)), metric)}
        elif method == "stc-setfit-body":
            import stc

            if setfit_model is None:
                raise SystemExit("stc-setfit-body needs setfit before it in --methods (the body it reads)")
            body = setfit_model.save_body(os.path.join(scratch, f"body-{name}-{k}-{seed}"))
            started = time.perf_counter()
            clf = stc.STCClassifier(model=body, random_state=seed, store_dir=os.path.join(scratch, "stores"),
                                    device="cpu", show_progress_bar=False).fit(texts, list(labels))
            fit_s = time.perf_counter() - started
            predicted = np.asarray(clf.predict(dataset.test.texts))
            config = clf.configuration_  # C and the array: is the C chosen by CV on 16-48 texts SetFit's (1)?
            extra = {"test": score(test_labels, predicted, metric), "readout": config.get("readout"),
                     "n_features": clf.n_features_, "C": config.get("C"), "dense_key": config.get("dense_key"),
                     "exit_layer": clf.exit_layer_, "floor": clf.selection_.get("floor")}
            shutil.rmtree(body, ignore_errors=True)
        else:
            raise SystemExit(f"unknown method {method!r}: among {METHODS}")
        write({"dataset": name, "per_class": k, "seed": seed, "method": method, "n_train": len(texts),
               "metric": metric, "fit_s": round(fit_s, 2), "revision": REVISION,
               "date": time.strftime("%Y-%m-%d"), **extra})


def points_mean_se(differences: list[float]) -> tuple[float, float]:
    """The mean of paired score differences and its standard error, in points (nan where too few to tell)."""
    values = 100 * np.asarray(differences, dtype=float)
    mean = float(values.mean()) if len(values) else float("nan")
    return mean, float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def table(records: list[dict]) -> str:
    cells: dict = {}
    for r in records:
        cells.setdefault((r["dataset"], r["per_class"]), {}).setdefault(r["method"], []).append(r)
    methods = [m for m in METHODS if any(m in by for by in cells.values())]
    head = " | ".join(f"{m} test" for m in methods)
    lines = [f"| dataset | per class | seeds | {head} | stc − embedding (se) | stc estimate − test | "
             f"stc repeats | stc dense/floor | stc fit s | embedding fit s |",
             "|---|---|---|" + "---|" * len(methods) + "---|---|---|---|---|---|"]
    margins, stc_means, emb_means, failing = [], [], [], []
    for (name, k), by in sorted(cells.items()):
        def mean(method, field="test"):
            values = [r[field] for r in by.get(method, []) if r.get(field) is not None]
            return float(np.mean(values)) if values else float("nan")
        seeds = sorted({r["seed"] for r in by.get("stc", [])} & {r["seed"] for r in by.get("embedding", [])})
        paired = [next(r["test"] for r in by["stc"] if r["seed"] == s) -
                  next(r["test"] for r in by["embedding"] if r["seed"] == s) for s in seeds]
        margin, se = points_mean_se(paired)
        if paired:
            margins.append(margin)
            stc_means.append(mean("stc"))
            emb_means.append(mean("embedding"))
            if margin < -1.0:
                failing.append(f"{name} {k}")
        dense = sum(r.get("readout") == "dense" for r in by.get("stc", []))
        floors = sum(bool(r.get("floor")) for r in by.get("stc", []))
        tests = " | ".join(f"{100 * mean(m):.1f}" if by.get(m) else "–" for m in methods)
        lines.append(f"| {name} | {k} | {len(seeds)} | {tests} | {margin:+.1f} ({se:.1f}) | "
                     f"{100 * (mean('stc', 'estimate') - mean('stc')):+.1f} | "
                     f"{'/'.join(sorted({str(r.get('repeats', 1)) for r in by.get('stc', [])}))} | "
                     f"{dense}/{floors} of {len(by.get('stc', []))} | {mean('stc', 'fit_s'):.0f} | "
                     f"{mean('embedding', 'fit_s'):.1f} |")
    if margins:
        lines.append(f"\nSTC − embedding ≥ −1 point in every cell: {'yes' if not failing else 'no: ' + ', '.join(failing)}; "
                     f"mean over {len(margins)} cells: STC {100 * np.mean(stc_means):.2f} vs embedding "
                     f"{100 * np.mean(emb_means):.2f} ({np.mean(margins):+.2f} points)")
    return "\n".join(lines)


def setfit_table(records: list[dict], *, from_per_class: int = 32, full_seeds: int = 5) -> str:
    """SetFit against STC on its body, frozen STC and the embedding, each cell on the seeds where both SetFit and
    STC on its body ran; then the issue's test over the cells from ``from_per_class`` with ``full_seeds`` seeds."""
    cells: dict = {}
    for r in records:
        cells.setdefault((r["dataset"], r["per_class"]), {}).setdefault(r["method"], {})[r["seed"]] = r
    methods = ("embedding", "stc", "setfit", "stc-setfit-body")
    lines = ["| dataset | per class | seeds | " + " | ".join(f"{m} test" for m in methods) +
             " | body − setfit (se) | setfit fit s | body fit s |", "|---|---|---|" + "---|" * (len(methods) + 3)]
    compared = {m: [] for m in methods}
    for (name, k), by in sorted(cells.items()):
        seeds = sorted(set(by.get("setfit", {})) & set(by.get("stc-setfit-body", {})))
        if not seeds:
            continue
        def mean(method, field="test"):
            values = [by[method][s][field] for s in seeds if s in by.get(method, {})]
            return 100 * float(np.mean(values)) if len(values) == len(seeds) else float("nan")
        margin, se = points_mean_se([by["stc-setfit-body"][s]["test"] - by["setfit"][s]["test"] for s in seeds])
        spans = {m: [by[m][s]["fit_s"] for s in seeds] for m in ("setfit", "stc-setfit-body")}
        lines.append(f"| {name} | {k} | {len(seeds)} | " + " | ".join(f"{mean(m):.2f}" for m in methods) +
                     f" | {margin:+.2f} ({se:.2f}) | " +
                     " | ".join(f"{min(v):.0f}-{max(v):.0f}" for v in spans.values()) + " |")
        if k >= from_per_class and len(seeds) >= full_seeds:
            for m in methods:
                compared[m].append(mean(m))
    if compared["setfit"]:
        means = {m: float(np.mean(v)) for m, v in compared.items()}
        best = max(("stc", "stc-setfit-body"), key=means.get)
        lines.append(f"\nFrom {from_per_class} per class, the {len(compared['setfit'])} cells with {full_seeds} seeds: "
                     f"frozen STC {means['stc']:.2f}, STC on SetFit's body {means['stc-setfit-body']:.2f}, SetFit "
                     f"{means['setfit']:.2f}, the embedding {means['embedding']:.2f}; the better STC workflow "
                     f"({best}) ≥ SetFit: {'yes' if means[best] >= means['setfit'] else 'no'}")
    return "\n".join(lines)


def read_records(paths: list[Path]) -> tuple[list[dict], int]:
    """The records of the files in order, and how many repeated an earlier one's dataset, size, seed and method
    (the first read is kept)."""
    records, seen, repeated = [], set(), 0
    for path in paths:
        for line in path.read_text().splitlines() if path.exists() else []:
            if line.strip():
                record = json.loads(line)
                key = (record["dataset"], record["per_class"], record["seed"], record["method"])
                repeated += key in seen
                if key not in seen:
                    seen.add(key)
                    records.append(record)
    return records, repeated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="mr,bbc-news,tweets")
    parser.add_argument("--per-class", default="8,16,32,64")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"among {METHODS}")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--store-dir", default="/tmp/bench/stores")
    parser.add_argument("--records", nargs="*", default=[], help="more record files for the tables (read only)")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    missing = [path for path in args.records if not Path(path).is_file()]
    if missing:
        raise SystemExit(f"--records: no such file {missing}")
    records, repeated = read_records([out, *map(Path, args.records)])
    if not args.table_only:
        methods = tuple(args.methods.split(","))
        unknown = set(methods) - set(METHODS)
        if unknown:
            raise SystemExit(f"--methods: unknown {sorted(unknown)}; among {METHODS}")
        written = read_records([out])[0]  # only --out's records are skipped, not --records'
        done = {(r["dataset"], r["per_class"], r["seed"], r["method"]) for r in written}
        out.parent.mkdir(parents=True, exist_ok=True)

        def write(record: dict) -> None:
            records.append(record)
            with open(out, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, default=float) + "\n")
            print(json.dumps({key: record.get(key) for key in ("dataset", "per_class", "seed", "method", "test",
                                                               "estimate", "readout", "fit_s")}), flush=True)

        needs_store = bool(set(methods) & {"stc", "stc-repeats", "embedding"})
        with tempfile.TemporaryDirectory() as scratch:
            for name in args.datasets.split(","):
                data = bench_data(name, args.store_dir, show_progress_bar=False) if needs_store else pool_data(name)
                for k in map(int, args.per_class.split(",")):
                    for seed in range(args.first_seed, args.first_seed + args.seeds):
                        run_cell(name, data, k, seed, methods, done, write, scratch)
    print(table(records))
    if any(r["method"] == "setfit" for r in records):
        print("\n" + setfit_table(records))
    if repeated:
        print(f"\n({repeated} records repeated an earlier one's dataset, size, seed and method: the first was kept)")


if __name__ == "__main__":
    main()
