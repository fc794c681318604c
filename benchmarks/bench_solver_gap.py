"""The inner coordinate descent's duality gap: an upper bound of ``||y||^2`` against the huge dummy, side by side.

    python benchmarks/bench_solver_gap.py                       # MR (binary) and tweets (one-vs-rest), 2,000 rows
    python benchmarks/bench_solver_gap.py --rows 500 --arrays 12
    python benchmarks/bench_solver_gap.py --datasets tweets --limit 3000 --multi-class multinomial  # joint steps

``stc._solver`` solves each Newton step's L1 quadratic model with scikit-learn's ``enet_path`` on a Gram matrix,
whose duality gap needs ``||y||^2``. Until 2026-12-06 a dummy of 1e30 stood in for it: where every gradient of the
model is within the penalty (the gap's dual point feasible) the gap is then lost to cancellation, reads 0, and
``enet_path`` returns unmoved; the Newton step gains nothing and the path stops at that C short of the optimum
(seen on 217 x 1,536 one-vs-rest probes: 20 % above liblinear's objective at one C, every cold start stuck).
Binary and one-vs-rest steps pass ``_least_squares_norm``, an upper bound from the IRLS form of the model, since
2026-12-06; multinomial steps (up to four classes, joint) later that day.

For each array of the dataset's MiniLM store (``bench_selection``'s, built on first use) and the same seeded rows,
the probe path at the probes' own C grid (``RELATIVE_PROBE_CS`` times the smallest useful C, standardised rows)
is fitted both ways in one process: seconds (process CPU, one BLAS thread) and the objective at each C
(``||W||_1 + C * sum of logistic losses``, intercepts unpenalised, as the solver minimises it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits

import stc._solver as solver
from stc.probe import RELATIVE_PROBE_CS, smallest_useful_C, standardize

from bench_selection import bench_data

RESULTS = Path(__file__).resolve().parent / "results"


def objective(X, y, n_classes, C, coef, intercept, multi_class) -> float:
    """||W||_1 + C * (the binary loss, each one-vs-rest class's binary loss summed, or the multinomial loss)."""
    targets = y[:, None] == np.arange(n_classes)[None, :] if n_classes > 2 else (y == 1)[:, None]
    scores = X.astype(np.float64) @ coef.T.astype(np.float64) + intercept
    if n_classes > 2 and not solver.fits_one_vs_rest(n_classes, multi_class):
        losses = logsumexp(scores, axis=1) - scores[np.arange(len(y)), y]
    else:
        losses = np.logaddexp(0.0, scores) - targets * scores
    return float(np.abs(coef).sum() + C * losses.sum())


def path(X, y, n_classes, Cs, bound: bool, multi_class: str):
    original = solver._least_squares_norm
    if not bound:
        solver._least_squares_norm = lambda *arguments, **options: None
    try:
        started = time.process_time()
        coef, intercept = solver.l1_logistic_path(X, y, Cs, n_classes=n_classes, multi_class=multi_class)
        return time.process_time() - started, coef, intercept
    finally:
        solver._least_squares_norm = original


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="mr,tweets")
    parser.add_argument("--rows", type=int, default=2000, help="rows drawn (seeded) from each dataset's pool")
    parser.add_argument("--arrays", type=int, default=None, help="the first N arrays of the store (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="cap each split of the dataset (load_dataset's limit)")
    parser.add_argument("--multi-class", default="ovr", choices=solver.MULTI_CLASS,
                        help="more than two classes: one-vs-rest (the default here, as first measured) or joint")
    parser.add_argument("--out", type=Path, default=RESULTS / "solver-gap.jsonl")
    args = parser.parse_args(argv)
    for name in args.datasets.split(","):
        data = bench_data(name, limit=args.limit)
        classes, codes = np.unique(np.asarray(data.pool_labels), return_inverse=True)
        rows = np.sort(np.random.default_rng(args.seed).choice(len(codes), size=min(args.rows, len(codes)),
                                                                replace=False))
        y, n_classes = codes[rows], len(classes)
        totals = {"bound": 0.0, "dummy": 0.0}
        for key in data.store.keys[:args.arrays]:
            X = data.store.load(key, rows=rows)
            mean, scale = standardize(X)
            X = (X - mean) / scale
            Cs = [smallest_useful_C(X, y, n_classes) * multiple for multiple in RELATIVE_PROBE_CS]
            record = {"dataset": name, "limit": args.limit, "rows": len(rows), "classes": n_classes, "array": key,
                      "Cs": Cs, "multi_class": args.multi_class,
                      "date": time.strftime("%Y-%m-%d")}
            with threadpool_limits(limits=1, user_api="blas"):
                for variant in ("dummy", "bound"):
                    seconds, coef, intercept = path(X, y, n_classes, Cs, variant == "bound", args.multi_class)
                    totals[variant] += seconds
                    record[f"{variant}_seconds"] = seconds
                    record[f"{variant}_objective"] = [
                        objective(X, y, n_classes, C, coef[i], intercept[i], args.multi_class)
                        for i, C in enumerate(Cs)]
                    record[f"{variant}_nonzero"] = [int((c != 0).sum()) for c in coef]
            gain = [(d - b) / d for d, b in zip(record["dummy_objective"], record["bound_objective"])]
            record["relative_gain"] = gain
            print(f"[{name}] {key}: {record['dummy_seconds']:.2f} s -> {record['bound_seconds']:.2f} s; objective "
                  f"gain {' '.join(f'{g:+.1e}' for g in gain)}", flush=True)
            with open(args.out, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        print(f"[{name}] total CPU seconds: dummy {totals['dummy']:.1f}, bound {totals['bound']:.1f}", flush=True)


if __name__ == "__main__":
    main()
