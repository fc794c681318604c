"""Multi-label probe paths (issue 22): one ``l1_logistic_path`` per label, as ``stc.probe._label_paths`` fitted
them before, against ``stc._solver_multilabel.l1_logistic_label_paths`` (every label at once), side by side on real
activations.

    .venv/bin/python benchmarks/bench_multilabel_probes.py                       # 3 arrays, 3 rounds (~1 min)
    .venv/bin/python benchmarks/bench_multilabel_probes.py --keys ffn.L3.mean --rounds 1

Data: the films store that ``bench_multilabel.py`` builds (MiniLM, every films text: train split, validation
split, then test split, so store row i is training text i), ``--store``. ``--size`` training texts are drawn from
the train split as ``bench_multilabel.py`` draws them (iterative stratification, ``--seed``); their 21 genres are
the labels. Each array (``--keys``: a 384-wide hidden mean, a 1536-wide FFN mean, a 1536-wide FFN max) is
standardised as ``stc.probe.standardize`` does and gets the probes' grid (``smallest_useful_C`` times
``RELATIVE_PROBE_CS``), as in ``stc.probe._fit_path``.

Per array, in ``--rounds`` rounds, the two solvers run one after the other (the order alternating by round), with
``--threads`` BLAS threads (1: as the probes run, side by side on threads with single-threaded BLAS). Printed: wall
and CPU seconds (the fastest round of each), their ratio, and for every label and C the objective
``||w||_1 + C * sum(loss)`` of both: the largest relative excess of the new solver's over the old one's (positive:
the new is worse) and the largest relative shortfall (negative: the new is better); whether the new solver gave the
same bits in every round.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import log_expit
from threadpoolctl import threadpool_limits

from stc._multilabel import encode_label_sets
from stc._quiet import quiet_solver_warnings
from stc._solver import l1_logistic_path
from stc._solver_multilabel import l1_logistic_label_paths
from stc.data import load_dataset
from stc.probe import RELATIVE_PROBE_CS, _constant_path, smallest_useful_C, standardize
from stc.store import ActivationStore

HERE = Path(__file__).resolve().parent
DEFAULT_STORE = "/tmp/bench/stores/9e02c73911bfa046d410776e"
DEFAULT_KEYS = ("hidden.L6.mean", "ffn.L3.mean", "ffn.L6.max")


def per_label_paths(X: np.ndarray, Y: np.ndarray, Cs) -> tuple[np.ndarray, np.ndarray]:
    """``stc.probe._label_paths`` before issue 22: one binary ``l1_logistic_path`` per label."""
    paths = [l1_logistic_path(X, Y[:, j].astype(np.int64), Cs, n_classes=2) if Y[:, j].min() != Y[:, j].max()
             else _constant_path(len(Cs), X.shape[1], int(Y[0, j])) for j in range(Y.shape[1])]
    return np.concatenate([c for c, _ in paths], axis=1), np.concatenate([b for _, b in paths], axis=1)


def joint_paths(X: np.ndarray, Y: np.ndarray, Cs) -> tuple[np.ndarray, np.ndarray]:
    """Every varying label at once with ``l1_logistic_label_paths``, a constant one on its constant path (what
    ``stc.probe._label_paths`` runs since issue 22)."""
    varying = np.flatnonzero(Y.min(axis=0) != Y.max(axis=0))
    coef, intercept = np.zeros((len(Cs), Y.shape[1], X.shape[1])), np.zeros((len(Cs), Y.shape[1]))
    coef[:, varying], intercept[:, varying] = l1_logistic_label_paths(X, Y[:, varying], Cs)
    for j in np.setdiff1d(np.arange(Y.shape[1]), varying):
        coef[:, j:j + 1], intercept[:, j:j + 1] = _constant_path(len(Cs), X.shape[1], int(Y[0, j]))
    return coef, intercept


def objectives(X: np.ndarray, Y: np.ndarray, Cs, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """(n_C, n_labels): scikit-learn's objective ``||w||_1 + C * sum(loss)`` of every label at every C, float64."""
    X = X.astype(np.float64)
    out = np.empty(coef.shape[:2])
    for j, C in enumerate(Cs):
        scores = X @ coef[j].T.astype(np.float64) + intercept[j]
        loss = -log_expit(np.where(Y == 1, scores, -scores)).sum(axis=0)
        out[j] = np.abs(coef[j]).sum(axis=1) + C * loss
    return out


def training_draw(store: ActivationStore, size: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(store rows of the drawn training texts, their 0/1 genre matrix)."""
    sys.path.insert(0, str(HERE))
    from bench_multilabel import draw

    dataset = load_dataset("films")
    train_sets = list(dataset.train.labels)
    expected = len(train_sets) + len(dataset.validation.labels if dataset.validation else []) + len(dataset.test.labels)
    if store.n_texts != expected:
        raise ValueError(f"the store at {store.path} holds {store.n_texts} texts, films has {expected}: "
                         "not the films store of bench_multilabel.py")
    _, Y_train, _ = encode_label_sets(train_sets, len(train_sets))
    rows = draw(Y_train, size, seed)
    return rows, Y_train[rows]


def timed(function, *arguments):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*arguments)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def compare(store: ActivationStore, key: str, rows: np.ndarray, Y: np.ndarray, rounds: int) -> None:
    X = store.load(key, rows=rows)
    mean, scale = standardize(X)
    X = (X - mean) / scale  # float32, as stc.probe._fit_path has it
    Cs = [smallest_useful_C(X, Y, Y.shape[1]) * multiple for multiple in RELATIVE_PROBE_CS]
    times = {"old": [], "new": []}
    outputs = {"old": [], "new": []}
    solvers = {"old": per_label_paths, "new": joint_paths}
    for r in range(rounds):
        for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
            result, wall, cpu = timed(solvers[name], X, Y, Cs)
            times[name].append((wall, cpu))
            outputs[name].append(result)
    old, new = outputs["old"][0], outputs["new"][0]
    f_old, f_new = objectives(X, Y, Cs, *old), objectives(X, Y, Cs, *new)
    relative = (f_new - f_old) / f_old
    worst = np.unravel_index(np.argmax(relative), relative.shape)
    best = np.unravel_index(np.argmin(relative), relative.shape)
    same_bits = all(c.tobytes() == new[0].tobytes() and b.tobytes() == new[1].tobytes()
                    for c, b in outputs["new"][1:])
    wall_old, cpu_old = min(t[0] for t in times["old"]), min(t[1] for t in times["old"])
    wall_new, cpu_new = min(t[0] for t in times["new"]), min(t[1] for t in times["new"])
    print(f"{key} ({X.shape[0]} x {X.shape[1]}, {Y.shape[1]} labels, Cs {', '.join(f'{C:.3g}' for C in Cs)})")
    print(f"  wall s: old {' '.join(f'{t[0]:.2f}' for t in times['old'])} | new "
          f"{' '.join(f'{t[0]:.2f}' for t in times['new'])} -> {wall_old / wall_new:.2f}x (fastest rounds)")
    print(f"  CPU s:  old {' '.join(f'{t[1]:.2f}' for t in times['old'])} | new "
          f"{' '.join(f'{t[1]:.2f}' for t in times['new'])} -> {cpu_old / cpu_new:.2f}x (fastest rounds)")
    print(f"  objective (new - old) / old over {relative.size} label/C: largest {relative[worst]:+.2e} "
          f"(label {worst[1]}, C #{worst[0]}), smallest {relative[best]:+.2e} (label {best[1]}, C #{best[0]}); "
          f"|.| > 1e-4: {int((relative > 1e-4).sum())} worse, {int((relative < -1e-4).sum())} better")
    print(f"  nonzero weights at each C: old {np.count_nonzero(old[0], axis=(1, 2)).tolist()}, "
          f"new {np.count_nonzero(new[0], axis=(1, 2)).tolist()}; new bit-identical across rounds: {same_bits}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=DEFAULT_STORE)
    parser.add_argument("--size", default="1600", help="training texts drawn from the train split, or 'all'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keys", nargs="+", default=list(DEFAULT_KEYS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads")
    args = parser.parse_args(argv)
    store = ActivationStore(args.store)
    rows, Y = training_draw(store, args.size, args.seed)
    print(f"films: {len(rows)} training texts (seed {args.seed}), {Y.shape[1]} genres, "
          f"{int((Y.min(axis=0) == Y.max(axis=0)).sum())} constant; BLAS threads {args.threads}")
    with threadpool_limits(limits=args.threads), quiet_solver_warnings():
        for key in args.keys:
            compare(store, key, rows, Y, args.rounds)


if __name__ == "__main__":
    main()
