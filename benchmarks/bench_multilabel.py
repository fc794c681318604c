"""Multi-label STC on ``films`` (21 genres): against the embedding baseline and a one-vs-rest of single-label STC
fits, its printed estimate against the test score, and its fit time against a single-label fit of the same texts.

    python benchmarks/bench_multilabel.py                                   # 2000 and all; 3 seeds
    python benchmarks/bench_multilabel.py --sizes 500 --seeds 1 --skip-ovr --out /tmp/ml.jsonl   # a quick look

Training texts: ``--sizes`` texts drawn from ``films``' train split by iterative stratification
(``stc._stratify.multilabel_train_test_split``, seeded by the seed), or "all" (the whole train split, 11,961 films;
the validation split is not used: every method makes its own held-out rows from its training texts). Each is
scored on the whole test split (3,378 films). The seed draws the texts and is every estimator's ``random_state``.
Methods, each fit in its own subprocess (so its peak RSS is its own), reading one store of every films text
(MiniLM, STC's default arrays, extracted once, cached in ``--store-dir``), so no fit pays a forward pass:

* ``stc``: ``STCClassifier(random_state=seed)`` with every default on the label tuples (``fit_store`` on the
  texts' rows: the same fit as ``fit(texts, label_tuples)`` without the extraction); its estimate is
  ``expected_score_`` (micro-F1), optimism = estimate - test micro-F1;
* ``embedding``: ``stc.baselines.EmbeddingClassifier(random_state=seed)`` on the label tuples (last layer,
  mean-pooled, one-vs-rest logistic regression, C and each label's threshold on its 20 % validation split), its
  embedding read from the same store;
* ``ovr``: one single-label ``STCClassifier(random_state=seed)`` per genre on "genre or not" (0/1), every default
  (metric accuracy); a test text gets each genre whose fit predicts 1 (its calibrated probability >= 0.5: the
  single-label argmax). No per-genre threshold is tuned: the held-out decisions that ``tune_thresholds`` needs are
  not exposed by a single-label fit. Only at sizes up to ``--ovr-max-size`` (21 fits per seed; "all" takes every
  size, all of films included: about an hour a seed on 2 idle cores);
* ``drama``: at ``--ratio-size`` ("all" by default), right after ``stc``'s seed-0 fit, a single-label
  ``STCClassifier(random_state=0)`` fit of the same texts on "Drama or not": the fit-time ratio of multi-label to
  single-label (the issue's target <= 3x),
  without extraction (``fit_seconds_`` of ``fit_store``; ``fit_timings_`` gives the phases) and with it (plus the
  forward pass over those texts, measured once as the store was built, pro rata: the same for both fits).

Records are appended to ``--out`` (JSON lines) as they finish and skipped when already there, so an interrupted run
resumes; the markdown table is printed from that file at the end.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "multilabel-2026-12-05.jsonl"
DEFAULT_STORE_DIR = "/tmp/bench/stores"
METHODS = ("stc", "embedding", "ovr")


# --- the child: one method on one draw -------------------------------------------------------------------------------

def films(store_dir: str):
    """(the films store's BenchData (every text: train, validation, then test), the train label tuples, the train
    indicator, the test indicator, the genres)."""
    sys.path.insert(0, str(HERE))
    from bench_selection import bench_data
    from stc._multilabel import encode_label_sets

    data = bench_data("films", store_dir)
    train_sets = list(data.dataset.train.labels)
    genres, Y_train, _ = encode_label_sets(train_sets, len(train_sets))
    Y_test = encode_label_sets(data.dataset.test.labels, len(data.dataset.test.labels), classes=genres)[1]
    return data, train_sets, Y_train, Y_test, genres


def draw(Y_train: np.ndarray, size: str, seed: int) -> np.ndarray:
    """Train-split rows of a cell: all of them, or about ``size`` drawn by iterative stratification."""
    from stc._stratify import multilabel_train_test_split

    if size == "all":
        return np.arange(len(Y_train))
    return multilabel_train_test_split(Y_train, 1.0 - int(size) / len(Y_train), seed)[0]


def test_scores(Y_test: np.ndarray, Y_pred: np.ndarray) -> dict:
    from stc._multilabel import multilabel_report

    report = multilabel_report(Y_test, np.asarray(Y_pred), range(Y_test.shape[1]))
    return {key: round(report[key], 5) for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy",
                                                    "hamming_loss")}


def stored_features(store, clf, rows: np.ndarray) -> np.ndarray:
    """The fitted STC model's features of store rows: its kept columns of each array, in column order."""
    return np.hstack([store.load(key, columns=columns, rows=rows) for key, columns in clf.kept_columns_.items()])


def fit_stc(data, rows: np.ndarray, y, seed: int):
    from bench_selection import StoreRows
    from stc import STCClassifier

    cpu = cpu_seconds()
    clf = STCClassifier(random_state=seed, show_progress_bar=False).fit_store(StoreRows(data.store, rows), y)
    clf.bench_fit_cpu_s = cpu_seconds() - cpu  # the fit's CPU seconds (the machine is shared: wall time drifts)
    return clf


def stc_record(clf) -> dict:
    return {"fit_s": round(clf.fit_seconds_, 1), "fit_cpu_s": round(clf.bench_fit_cpu_s, 1), "timings": {k: round(v, 1) for k, v in clf.fit_timings_.items()},
            "readout": clf.configuration_["readout"], "n_features": int(clf.n_features_),
            "exit_layer": int(clf.exit_layer_), "C": clf.configuration_["C"], "folds": clf.selection_["folds"]}


def run_stc(data, rows, train_sets, Y_test, seed) -> dict:
    clf = fit_stc(data, rows, [train_sets[i] for i in rows], seed)
    predicted = clf.readout_.head.labels(stored_features(data.store, clf, data.test_rows))
    # the stored features give what predict gives from the texts (checked on a few test texts)
    few = data.dataset.test.texts[:16]
    same = [tuple(labels) for labels in clf.readout_.head.label_sets(predicted[:16])] == clf.predict(few)
    return {**test_scores(Y_test, predicted), "estimate": round(clf.expected_score_, 5),
            "estimate_se": round(clf.expected_score_se_, 5), "val_score": round(clf.val_score_, 5),
            "metric": clf.metric_, "predict_matches_store": same, **stc_record(clf)}


def run_drama(data, rows, train_sets, Y_test, genres, seed) -> dict:
    labels = [int("Drama" in train_sets[i]) for i in rows]
    clf = fit_stc(data, rows, labels, seed)
    predicted = clf.readout_.head.labels(stored_features(data.store, clf, data.test_rows))
    truth = Y_test[:, list(genres).index("Drama")]
    return {"test_accuracy": round(float(np.mean(predicted == truth)), 5), **stc_record(clf)}


def run_embedding(data, rows, train_sets, Y_test, seed) -> dict:
    from stc._multilabel import encode_label_sets
    from stc.baselines import EmbeddingClassifier
    from stc.extract import feature_key

    class StoredEmbedding(EmbeddingClassifier):
        """The baseline, its embedding read from the films store (the same array a forward pass gives)."""

        def _embed(self, backbone, texts, *, reuse_store=False):
            key = feature_key("hidden", backbone.num_layers, self.pooling_)
            return data.store.load(key, rows=data.rows(texts))

    texts = [data.pool_texts[i] for i in rows]
    cpu = cpu_seconds()
    model = StoredEmbedding(random_state=seed, show_progress_bar=False).fit(texts, [train_sets[i] for i in rows])
    cpu = cpu_seconds() - cpu
    predicted = encode_label_sets(model.predict(data.dataset.test.texts), len(Y_test), classes=model.classes_)[1]
    return {**test_scores(Y_test, predicted), "estimate": round(model.val_score_, 5), "C": model.C_,
            "pooling": model.pooling_, "fit_s": round(model.fit_seconds_, 1), "fit_cpu_s": round(cpu, 1)}


def run_ovr(data, rows, train_sets, Y_test, genres, seed) -> dict:
    predicted = np.zeros_like(Y_test)
    per_genre = {}
    for j, genre in enumerate(genres):
        clf = fit_stc(data, rows, [int(genre in train_sets[i]) for i in rows], seed)
        predicted[:, j] = clf.readout_.head.labels(stored_features(data.store, clf, data.test_rows))
        per_genre[str(genre)] = {"fit_s": round(clf.fit_seconds_, 1), "fit_cpu_s": round(clf.bench_fit_cpu_s, 1),
                                 "readout": clf.configuration_["readout"],
                                 "n_features": int(clf.n_features_), "predicted_positive": int(predicted[:, j].sum())}
    return {**test_scores(Y_test, predicted), "fit_s": round(sum(g["fit_s"] for g in per_genre.values()), 1),
            "fit_cpu_s": round(sum(g["fit_cpu_s"] for g in per_genre.values()), 1),
            "per_genre": per_genre}


def child(size: str, seed: int, method: str, store_dir: str) -> dict:
    data, train_sets, Y_train, Y_test, genres = films(store_dir)
    rows = draw(Y_train, size, seed)
    started = time.perf_counter()
    if method == "stc":
        record = run_stc(data, rows, train_sets, Y_test, seed)
    elif method == "embedding":
        record = run_embedding(data, rows, train_sets, Y_test, seed)
    elif method == "ovr":
        record = run_ovr(data, rows, train_sets, Y_test, genres, seed)
    else:
        record = run_drama(data, rows, train_sets, Y_test, genres, seed)
    return {"size": size, "n_train": int(len(rows)), "seed": seed, "method": method, **record,
            "wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(cpu_seconds(), 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def cpu_seconds() -> float:
    """CPU time so far (user + system) of this process's threads, its finished children and (with psutil) its live
    ones, where the probes' worker processes run: on a shared machine, the work a fit did, whatever its wall time."""
    total = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                for field in ("ru_utime", "ru_stime"))
    try:
        import psutil
    except ImportError:
        return total
    for process in psutil.Process().children(recursive=True):
        try:
            times = process.cpu_times()
        except psutil.Error:  # ended meanwhile
            continue
        total += times.user + times.system
    return total


# --- the parent: every cell, each in a subprocess ---------------------------------------------------------------------

def extraction_seconds(store_dir: str) -> dict:
    """Builds (or finds) the films store; the forward pass's seconds per text when it was built here."""
    started = time.perf_counter()
    data = films(store_dir)[0]
    seconds = time.perf_counter() - started
    record = {"method": "store", "n_texts": int(data.store.n_texts), "seconds": round(seconds, 1),
              "n_train": len(data.dataset.train.texts)}
    print(f"films store: {data.store.n_texts} texts, {seconds:.0f} s (found on disk if a few seconds)", flush=True)
    return record


def run(sizes, seeds, all_seeds, ovr_seeds, ovr_max_size, methods, ratio_size, out_path: Path,
        store_dir: str, first_seed: int = 0) -> None:
    sys.path.insert(0, str(HERE))
    from bench_selection import revision as code_revision

    revision = code_revision()  # the commit the records were measured on ("+": with uncommitted changes)
    records = read(out_path)
    done = {(r.get("size"), r.get("seed"), r["method"]) for r in records}
    if not any(r["method"] == "store" for r in records):
        store = extraction_seconds(store_dir)
        if store["seconds"] > 30:  # built now: its time is the forward pass (a found store's is not)
            append(out_path, {**store, "date": time.strftime("%Y-%m-%d")})
    jobs = []
    for size in sizes:
        for seed in range(first_seed, first_seed + (all_seeds if size == "all" else seeds)):
            for method in methods:
                if method == "ovr" and (seed >= first_seed + ovr_seeds or not within(size, ovr_max_size)):
                    continue
                jobs.append((size, seed, method))
                if size == ratio_size and seed == 0 and method == "stc":
                    jobs.append((size, seed, "drama"))  # side by side with the multi-label fit
    for size, seed, method in jobs:
        if (size, seed, method) in done:
            continue
        started = time.perf_counter()
        result = subprocess.run([sys.executable, __file__, "--child", size, str(seed), method, "--store-dir",
                                 store_dir], capture_output=True, text=True)
        if result.returncode != 0:
            print(f"{size} seed {seed} {method}: FAILED (exit {result.returncode}) after "
                  f"{time.perf_counter() - started:.0f} s\n{result.stderr[-3000:]}", flush=True)
            continue
        record = {**json.loads(result.stdout.strip().splitlines()[-1]), "date": time.strftime("%Y-%m-%d"),
                  "revision": revision}
        append(out_path, record)
        print(json.dumps({k: v for k, v in record.items() if k != "per_genre"}), flush=True)
    print(table(read(out_path)))


def within(size: str, max_size: str) -> bool:
    """Whether a training size is at most ``max_size`` (a number of texts or "all", which is above every number)."""
    if max_size == "all":
        return True
    return size != "all" and int(size) <= int(max_size)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def append(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


# --- the table ------------------------------------------------------------------------------------------------------

def _mean(rows, key, scale=1.0) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return "–"
    spread = f" ± {scale * np.std(values):.1f}" if len(values) > 1 else ""
    return f"{scale * np.mean(values):.1f}{spread}"


def table(records: list[dict]) -> str:
    """The markdown table: per size and method, the mean (± the spread over seeds) of each figure."""
    lines = ["| train texts | method | seeds | micro-F1 | macro-F1 | samples-F1 | estimate | optimism | fit s | "
             "fit CPU s | readout (n features) | peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    sizes = sorted({r["size"] for r in records if "size" in r}, key=lambda s: (s == "all", int(s) if s != "all" else 0))
    for size in sizes:
        for method in ("stc", "embedding", "ovr"):
            rows = [r for r in records if r.get("size") == size and r["method"] == method]
            if not rows:
                continue
            for r in rows:
                if method != "ovr":
                    r["optimism"] = r["estimate"] - r["micro_f1"]
            readouts = ", ".join(f"{r['readout']} ({r['n_features']})" for r in rows) if method == "stc" else "–"
            n_train = "/".join(sorted({str(r["n_train"]) for r in rows}))
            lines.append(f"| {size} ({n_train}) | {method} | {len(rows)} | {_mean(rows, 'micro_f1', 100)} | "
                         f"{_mean(rows, 'macro_f1', 100)} | {_mean(rows, 'samples_f1', 100)} | "
                         f"{_mean(rows, 'estimate', 100)} | {_mean(rows, 'optimism', 100)} | {_mean(rows, 'fit_s')} | "
                         f"{_mean(rows, 'fit_cpu_s')} | "
                         f"{readouts} | {max(r['peak_rss_mib'] for r in rows):.0f} |")
    lines += ratio_lines(records)
    return "\n".join(lines)


def ratio_lines(records: list[dict]) -> list[str]:
    """The fit-time comparison: multi-label vs single-label ("Drama") STC on the same texts, seed 0, per size."""
    lines = []
    store = [r for r in records if r["method"] == "store"]
    for single in [r for r in records if r["method"] == "drama"]:
        multi = [r for r in records if r.get("size") == single["size"] and r.get("seed") == 0 and r["method"] == "stc"]
        if not multi:
            continue
        multi = multi[-1]
        lines += ["", f"| fit on {multi['n_train']} texts ({single['size']}), seed 0 | fit s (no extraction) | "
                      f"with extraction | fit CPU s | phases (s) |", "|---|---|---|---|---|"]
        forward = store[-1]["seconds"] * multi["n_train"] / store[-1]["n_texts"] if store else None
        for name, r in (("multi-label (21 genres)", multi), ("single-label (Drama or not)", single)):
            total = f"{r['fit_s'] + forward:.0f}" if forward is not None else "–"
            phases = ", ".join(f"{k} {v:.0f}" for k, v in r["timings"].items())
            cpu = f"{r['fit_cpu_s']:.0f}" if r.get("fit_cpu_s") else "–"
            lines.append(f"| {name} | {r['fit_s']:.0f} | {total} | {cpu} | {phases} |")
        with_forward = (f"{(multi['fit_s'] + forward) / (single['fit_s'] + forward):.2f}x (forward pass "
                        f"{forward:.0f} s, pro rata of the store's)" if forward is not None else "–")
        cpu = (f"{multi['fit_cpu_s'] / single['fit_cpu_s']:.2f}x" if multi.get("fit_cpu_s") and single.get("fit_cpu_s")
               else "–")
        lines.append(f"| ratio | {multi['fit_s'] / single['fit_s']:.2f}x | {with_forward} | {cpu} | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,all", help="training sizes, comma-separated ('all': the train split)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per size (0, 1, ...)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first seed (seeds first, first + 1, ...: a second run in parallel takes others)")
    parser.add_argument("--all-seeds", type=int, default=None, help="seeds at 'all' (default: --seeds)")
    parser.add_argument("--ovr-seeds", type=int, default=None, help="seeds of the one-vs-rest STC (default: --seeds)")
    parser.add_argument("--ovr-max-size", default="2000",
                        help="the one-vs-rest STC only up to this size (a number of texts, or 'all')")
    parser.add_argument("--skip-ovr", action="store_true", help="leave out the one-vs-rest STC (21 fits per seed)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"of {METHODS}, comma-separated")
    parser.add_argument("--ratio-size", default="all", help="the size of the multi- vs single-label fit-time pair")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON lines, appended; done cells skipped")
    parser.add_argument("--store-dir", default=DEFAULT_STORE_DIR, help="where the films store is built and found")
    parser.add_argument("--table", action="store_true", help="only print the table of --out")
    parser.add_argument("--child", nargs=3, metavar=("SIZE", "SEED", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, seed, method = args.child
        print(json.dumps(child(size, int(seed), method, args.store_dir)))
        return
    if args.table:
        print(table(read(args.out)))
        return
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    methods = tuple(m for m in args.methods.split(",") if m in METHODS and not (m == "ovr" and args.skip_ovr))
    run(sizes, args.seeds, args.all_seeds if args.all_seeds is not None else args.seeds,
        args.ovr_seeds if args.ovr_seeds is not None else args.seeds, args.ovr_max_size, methods, args.ratio_size,
        args.out, args.store_dir, args.first_seed)


if __name__ == "__main__":
    main()
