"""Many classes: peak memory and seconds of the probe stage and of the whole fit, and STC against the embedding.

    python benchmarks/bench_many_classes.py                  # every cell below, 3 seeds
    python benchmarks/bench_many_classes.py --cells reuters-5,bbc-news --seeds 1
    python benchmarks/bench_many_classes.py --solver-only    # the probe solver alone on planted problems

Cells: ``reuters-K`` is the R52 corpus (``stc.data``, ``reuters``) restricted to its K largest classes, with the
same number of training texts (``--n``, drawn per class in proportion, every class keeping one text at least)
for every K, so that only the number of classes changes; ``reuters-all`` is every training text of all 52 classes;
``bbc-news`` every training text of its 5. Each fit is ``STCClassifier()`` with every default, run in a fresh
subprocess (its peak RSS is the fit's own) on the activations of one store per dataset, so extraction is left
out; it is scored by macro-F1 on the dataset's test split (restricted to the cell's classes). The embedding is the
last layer's mean-pooled hidden state + logistic regression, C by 5-fold CV (``bench_selection.embedding_run``).
``reuters-KxM`` takes M training texts of each of the K largest classes (many classes, few texts: fewer texts
than neurons, where ``stc.probe._resolved_solver`` sends the probes to liblinear); ``--methods
stc,stc-ovr-own-solver`` fits them side by side with the one-vs-rest probes left to stc's own solver.
``--compare-joint`` also fits the cells of up to 5 classes with the probes' joint multinomial steps at every
number of classes (the solver before one-vs-rest), side by side; ``--methods stc,stc-ovr`` fits them with
one-vs-rest probes from 3 classes (``MULTINOMIAL_MAX_CLASSES`` lowered to 2). Any dataset of ``stc.data`` takes
the ``-K`` and ``-KxM`` suffixes, and ``NAME:L`` caps its splits at L texts (``tweets:3000-3``: 2,000 of the
6,000 pool texts of tweets capped at 3,000 a split, in proportion to its 3 classes).

``--solver-only``: ``stc._solver.l1_logistic_path`` (one-vs-rest beyond ``MULTINOMIAL_MAX_CLASSES``, and joint
multinomial), scikit-learn's ``LogisticRegression(l1_ratio=1, solver="saga")`` and liblinear one-vs-rest on the
same planted (2,000 x 300) problems with 2 to 20 classes, 3 C values: seconds and traced peak memory.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
#: Cells where the joint multinomial probes (the solver before one-vs-rest) fit on this machine: 5 classes at most.
JOINT_CELLS = ("reuters-2", "reuters-5", "bbc-news")

CHILD = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import stc._solver
from bench_many_classes import cell_rows, parse_cell
from bench_selection import StoredSTC, bench_data, embedding_run
from stc._metrics import score
from stc.extract import feature_key

cell, n, seed, method = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
name, limit, _ = parse_cell(cell)
data = bench_data(name, limit=limit)
train, test = cell_rows(data, cell, n, seed)
texts = [data.pool_texts[i] for i in train]
labels = np.asarray(data.pool_labels)[train]
test_labels = np.asarray(data.dataset.test.labels)
test_rows = data.test_rows[np.isin(test_labels, np.unique(labels))]
test_labels = test_labels[np.isin(test_labels, np.unique(labels))]
started = time.perf_counter()
out = {"cell": cell, "n_train": len(train), "n_classes": int(len(np.unique(labels))), "seed": seed,
       "method": method}
if method == "embedding":
    key = feature_key("hidden", data.backbone.num_layers, "mean")
    estimate, test, extra = embedding_run(data.store.load(key, rows=data.rows(texts)), labels,
                                          data.store.load(key, rows=test_rows), test_labels, "macro_f1", seed)
    out.update(test=test, estimate=estimate)
else:
    if method == "stc-joint":
        stc._solver.MULTINOMIAL_MAX_CLASSES = 10**9  # every probe takes joint multinomial steps, as before
    if method == "stc-ovr":
        stc._solver.MULTINOMIAL_MAX_CLASSES = 2  # every probe of 3 classes or more one-vs-rest
    if method == "stc-ovr-own-solver":  # one-vs-rest probes with fewer texts than neurons to stc's solver
        import stc.probe
        from stc._solver import fits_one_vs_rest
        K = int(len(np.unique(labels)))
        stc.probe._resolved_solver = lambda solver, n, d: ("liblinear" if solver == "auto" and n < d
                                                           and not fits_one_vs_rest(K) else solver)
    clf = StoredSTC(metric="macro_f1", random_state=seed, show_progress_bar=False).fit(texts, labels)
    predicted = clf.classes_[clf.classifier_.predict(np.hstack(
        [data.store.load(k, columns=c, rows=test_rows) for k, c in clf.kept_columns_.items()]))]
    timings = clf.fit_timings_
    out.update(test=score(test_labels, predicted, "macro_f1"), estimate=clf.expected_score_,
               probe_s=round(sum(v for k, v in timings.items() if "probes" in k), 1),
               timings={k: round(v, 1) for k, v in timings.items()}, readout=clf.configuration_["readout"],
               n_features=clf.n_features_, folds=clf.selection_["folds"], floor=clf.selection_.get("floor"),
               floor_margin=clf.selection_.get("floor_margin"), dense_key=clf.configuration_.get("dense_key"),
               unscored=len(clf.selection_.get("unscored_classes", [])))
out["fit_s"] = round(time.perf_counter() - started, 1)
out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print(json.dumps(out))
"""


def parse_cell(cell: str) -> tuple[str, int | None, str]:
    """(dataset name, its splits' cap or None, size: "" for every pool text, "all", "K" or "KxM") of a cell."""
    base, _, size = cell.rpartition("-")
    if not base or not re.fullmatch(r"all|\d+(x\d+)?", size):
        base, size = cell, ""
    name, _, limit = base.partition(":")
    return name, int(limit) if limit else None, size


def cell_rows(data, cell: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool rows to train on, test rows) of a cell: ``reuters-K`` draws ``n`` texts of the K largest classes, in
    proportion per class (one at least), seeded; ``reuters-KxM`` draws M texts of each of the K largest (few texts,
    many classes); ``reuters-all`` and a dataset's bare name take every pool text. Any dataset takes the same
    suffixes, and ``NAME:L`` loads it with each split capped at L texts (``tweets:3000-3``)."""
    labels = np.asarray(data.pool_labels)
    size = parse_cell(cell)[2]
    if size in ("", "all"):
        return np.arange(len(labels)), data.test_rows
    k, _, per_class = size.partition("x")
    k = int(k)
    classes, counts = np.unique(labels, return_counts=True)
    largest = classes[np.argsort(-counts, kind="stable")[:k]]
    rng = np.random.default_rng(seed)
    if per_class:
        return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == label))[:int(per_class)]
                                       for label in largest])), data.test_rows
    total = counts[np.isin(classes, largest)].sum()
    rows = []
    for label in largest:
        members = rng.permutation(np.flatnonzero(labels == label))
        rows.append(members[:max(1, int(round(n * len(members) / total)))])
    return np.sort(np.concatenate(rows)), data.test_rows


def run_cells(cells, seeds, n, methods, out_path: Path) -> None:
    here = str(Path(__file__).resolve().parent)
    done = set()
    if out_path.exists():
        done = {(r["cell"], r["seed"], r["method"]) for r in map(json.loads, out_path.read_text().splitlines())}
    for cell in cells:
        for seed in range(seeds):
            for method in methods:
                if (cell, seed, method) in done or (method == "stc-joint" and cell not in JOINT_CELLS):
                    continue
                result = subprocess.run([sys.executable, "-c", CHILD, here, cell, str(n), str(seed), method],
                                        capture_output=True, text=True)
                if result.returncode != 0:
                    print(f"{cell} seed {seed} {method}: FAILED\n{result.stderr[-2000:]}", flush=True)
                    continue
                record = json.loads(result.stdout.strip().splitlines()[-1])
                record["date"] = time.strftime("%Y-%m-%d")
                with out_path.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)
    table(out_path)


def table(out_path: Path) -> None:
    records = [json.loads(line) for line in out_path.read_text().splitlines()]
    def order(cell):
        size = cell.split("-")[-1].partition("x")
        return cell.split("-")[0], int(size[0]) if size[0].isdigit() else 10**6, int(size[2] or 0)
    cells = sorted({r["cell"] for r in records}, key=order)
    print("| cell | classes | train texts | seeds | method | macro-F1 | estimate | probe s | fit s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cell in cells:
        for method in ("stc", "stc-joint", "stc-ovr", "stc-ovr-own-solver", "embedding"):
            rows = [r for r in records if r["cell"] == cell and r["method"] == method]
            if not rows:
                continue
            mean = lambda key: np.mean([r[key] for r in rows]) if all(key in r for r in rows) else float("nan")
            print(f"| {cell} | {rows[0]['n_classes']} | {rows[0]['n_train']} | {len(rows)} | {method} | "
                  f"{100 * mean('test'):.1f} | {100 * mean('estimate'):.1f} | {mean('probe_s'):.1f} | "
                  f"{mean('fit_s'):.0f} | {max(r['peak_rss_mib'] for r in rows):.0f} |")


def planted(n: int, d: int, n_classes: int, seed: int = 0):
    """Correlated standardised columns (a 16-factor latent plus noise) and a sparse signal per class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    X = rng.standard_normal((n, 16)) @ rng.standard_normal((16, d)) + rng.standard_normal((n, d))
    X += 0.4 * (rng.standard_normal((n_classes, d)) * (rng.random((n_classes, d)) < 0.05))[y]
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


def solver_only(class_counts, time_limit: float, shape: tuple[int, int] = (2000, 300), Cs_grid=(3, 10, 30),
                solvers=None) -> None:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from stc._solver import l1_logistic_path
    from stc.probe import smallest_useful_C

    def sklearn_path(X, y, Cs, solver):
        classes = np.unique(y)
        for C in Cs:
            model = LogisticRegression(C=C, l1_ratio=1.0, solver=solver, max_iter=1000, tol=1e-4)
            if solver == "liblinear" and len(classes) > 2:
                for c in classes:
                    model.fit(X, (y == c).astype(int))
            else:
                model.fit(X, y)

    methods = {"stc (auto)": lambda X, y, Cs, K: l1_logistic_path(X, y, Cs, n_classes=K),
               "stc joint multinomial": lambda X, y, Cs, K: l1_logistic_path(X, y, Cs, n_classes=K,
                                                                            multi_class="multinomial"),
               "liblinear one-vs-rest": lambda X, y, Cs, K: sklearn_path(X, y, Cs, "liblinear"),
               "saga": lambda X, y, Cs, K: sklearn_path(X, y, Cs, "saga")}
    methods = {name: method for name, method in methods.items() if solvers is None or name in solvers}
    slow = set()
    print(f"planted {shape[0]:,} x {shape[1]:,}, C = C_min x {Cs_grid}")
    print("| classes | solver | seconds | CPU seconds | traced peak MiB |\n|---|---|---|---|---|")
    for K in class_counts:
        X, y = planted(*shape, K)
        C_min = smallest_useful_C(X, y, K)
        Cs = [C_min * m for m in Cs_grid]
        for name, method in methods.items():
            if name in slow:
                print(f"| {K} | {name} | skipped (over {time_limit:.0f} s with fewer classes) | | |", flush=True)
                continue
            tracemalloc.start()
            started, cpu = time.perf_counter(), time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                method(X, y, Cs, K)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            if seconds > time_limit:
                slow.add(name)
            # scikit-learn's solvers allocate in C, where numpy's tracing does not see
            traced = f"{peak:.0f}" if name.startswith("stc") else "not traced"
            print(f"| {K} | {name} | {seconds:.2f} | {cpu:.2f} | {traced} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="reuters-all,reuters-2,reuters-5,reuters-20,reuters-52,bbc-news")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000, help="training texts of each reuters-K cell")
    parser.add_argument("--methods", default="stc,embedding")
    parser.add_argument("--compare-joint", action="store_true", help="also fit with joint multinomial probes")
    parser.add_argument("--out", type=Path, default=RESULTS / "many_classes.jsonl")
    parser.add_argument("--solver-only", action="store_true")
    parser.add_argument("--classes", default="2,5,10,20", help="with --solver-only")
    parser.add_argument("--time-limit", type=float, default=120.0,
                        help="with --solver-only: a solver slower than this is not run with more classes")
    parser.add_argument("--shape", default="2000x300", help="with --solver-only: rows x columns of the problems")
    parser.add_argument("--probe-grid", action="store_true",
                        help="with --solver-only: the probes' own 4 C values (RELATIVE_PROBE_CS), not 3")
    parser.add_argument("--solvers", default=None, help="with --solver-only: a comma-separated subset of the names")
    args = parser.parse_args()
    if args.solver_only:
        from stc.probe import RELATIVE_PROBE_CS
        rows, _, columns = args.shape.partition("x")
        solver_only([int(k) for k in args.classes.split(",")], args.time_limit, (int(rows), int(columns)),
                    RELATIVE_PROBE_CS if args.probe_grid else (3, 10, 30),
                    None if args.solvers is None else args.solvers.split(","))
        return
    methods = args.methods.split(",") + (["stc-joint"] if args.compare_joint else [])
    run_cells(args.cells.split(","), args.seeds, args.n, methods, args.out)


if __name__ == "__main__":
    main()
