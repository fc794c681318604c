"""Which ridge penalty a multi-label head wants, by size and width: the grid of ``stc.head.MULTILABEL_CS``.

    python benchmarks/bench_multilabel_penalty.py --sizes 500,2000,6000

On ``films`` (21 genres; texts drawn from the train split by iterative stratification, seed 0; MiniLM store, built
once by ``bench_multilabel.py``), three fixed feature sets: the embedding (hidden.L6.mean, 384), one FFN array
(ffn.L6.mean, 1,536), and a wide concatenation (every layer's mean hidden state and the FFN means of layers 3-6,
8,448). For each: 5 iteratively stratified folds, a ridge classifier for every label on the standardised training
rows (scikit-learn's ``RidgeClassifier``) at alpha 10^1 to 10^6 in half-decades, and ``RidgeClassifierCV``'s
leave-one-out choice among 15 alphas (the head before the penalty was searched); micro/macro-F1 of the held-out
decisions, thresholds cross-fitted over the folds (``stc._multilabel.cross_fitted_predictions``), as the search
scores a candidate. Prints, per size and set, the leave-one-out alphas of the folds and each alpha's scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import RidgeClassifier, RidgeClassifierCV
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
SETS = {"emb": ["hidden.L6.mean"], "ffn6": ["ffn.L6.mean"],
        "wide": [f"hidden.L{layer}.mean" for layer in range(1, 7)] + [f"ffn.L{layer}.mean" for layer in (3, 4, 5, 6)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,2000,6000", help="training sizes, comma-separated")
    parser.add_argument("--store-dir", default="/tmp/bench/stores", help="where the films store is built and found")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_multilabel import draw, films
    from stc._multilabel import cross_fitted_predictions
    from stc.folds import make_folds

    data, _, Y, _, _ = films(args.store_dir)
    alphas = 10.0 ** np.arange(1, 6.01, 0.5)
    for size in args.sizes.split(","):
        rows = draw(Y, size, 0)
        Y_rows = Y[rows].astype(np.int64)
        folds = make_folds(Y_rows, 5, 0)
        held = np.concatenate([val for _, val in folds])
        blocks, start = [], 0
        for _, val in folds:
            blocks.append(np.arange(start, start + len(val)))
            start += len(val)
        for name, keys in SETS.items():
            X = np.hstack([data.store.load(key, rows=rows) for key in keys]).astype(np.float64)
            decisions = {alpha: [] for alpha in [*alphas, "loo"]}
            chosen, loo_seconds, fixed_seconds = [], 0.0, 0.0
            for train, val in folds:
                scaler = StandardScaler().fit(X[train])
                X_train, X_val = scaler.transform(X[train]), scaler.transform(X[val])
                started = time.perf_counter()
                model = RidgeClassifierCV(alphas=np.logspace(-1, 6, 15)).fit(X_train, Y_rows[train])
                loo_seconds += time.perf_counter() - started
                chosen.append(round(float(model.alpha_)))
                decisions["loo"].append(model.decision_function(X_val))
                for alpha in alphas:
                    started = time.perf_counter()
                    model = RidgeClassifier(alpha=alpha).fit(X_train, Y_rows[train])
                    fixed_seconds += time.perf_counter() - started
                    decisions[alpha].append(model.decision_function(X_val))
            scores = []
            for alpha, parts in decisions.items():
                predicted = cross_fitted_predictions(np.vstack(parts), Y_rows[held], blocks)
                label = alpha if isinstance(alpha, str) else f"{np.log10(alpha):.1f}"
                scores.append(f"{label}:{f1_score(Y_rows[held], predicted, average='micro'):.4f}/"
                              f"{f1_score(Y_rows[held], predicted, average='macro'):.4f}")
            print(size, name, X.shape[1], "loo alphas", chosen,
                  f"t_loo {loo_seconds:.1f} t_fix/alpha {fixed_seconds / len(alphas):.1f}")
            print("   ", " ".join(scores), flush=True)


if __name__ == "__main__":
    main()
