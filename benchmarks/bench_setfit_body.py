"""STC on a SetFit-tuned body against SetFit's own head (issue 23, point 3).

Per dataset and seed: k texts per class drawn (stratified, seeded) from the training split; the same test texts for
every method (the first ``--n-test`` of the test split). MiniLM everywhere. Methods:

- ``setfit``: SetFit with its paper's few-shot recipe (num_iterations=20, 1 epoch, batch 16), its own logistic head.
  It trains on all k x classes texts (they are passed as its validation set too, so nothing is held out; its
  ``val_score_`` is then a training score and is not reported).
- ``stc-tuned``: ``save_body`` of that SetFit model, then ``STCClassifier(model=body_dir)`` with every default.
- ``stc-base``: ``STCClassifier(model="minilm")`` with every default, same draw.
- ``embedding``: ``stc.baselines.EmbeddingClassifier`` on base MiniLM (its own extraction, no store reuse).

``fit_s`` is each method's wall time for ``fit``; stc-tuned's ``fit_s`` excludes the SetFit fit it starts from
(``total_s`` adds it). One JSON line per (dataset, seed, method); a markdown table of means and per-seed values.

    python benchmarks/bench_setfit_body.py --datasets mr bbc-news --seeds 0 1 2 --k 8 \\
        --out benchmarks/results/setfit-body-2026-12-05.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections import defaultdict

import numpy as np

METHODS = ("setfit", "stc-tuned", "stc-base", "embedding")


def draw(labels: list, k: int, seed: int) -> list[int]:
    """k row indices per class, seeded, in a seeded shuffled order."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    rows = []
    for label in sorted(set(labels.tolist()), key=str):
        candidates = np.flatnonzero(labels == label)
        rows.extend(rng.choice(candidates, size=k, replace=False).tolist())
    return [int(i) for i in rng.permutation(rows)]


def accuracy(truth, predicted) -> float:
    return float(np.mean(np.asarray(truth, dtype=object) == np.asarray(predicted, dtype=object)))


def run_one(name: str, seed: int, texts, labels, test_texts, test_labels, scratch: str, write) -> None:
    import stc
    from stc.baselines import EmbeddingClassifier, SetFitClassifier

    base = dict(dataset=name, seed=seed, k=len(texts) // len(set(labels)), n_train=len(texts),
                n_test=len(test_texts))
    store = os.path.join(scratch, f"stores-{name}-{seed}")

    started = time.perf_counter()
    setfit = SetFitClassifier(model="minilm", num_iterations=20, epochs=1, batch_size=16, device="cpu",
                              random_state=seed, show_progress_bar=False).fit(texts, labels, X_val=texts,
                                                                              y_val=labels)
    setfit_s = time.perf_counter() - started
    write(dict(base, method="setfit", accuracy=accuracy(test_labels, setfit.predict(test_texts)),
               fit_s=round(setfit_s, 1), total_s=round(setfit_s, 1)))

    started = time.perf_counter()
    body = setfit.save_body(os.path.join(scratch, f"body-{name}-{seed}"))
    del setfit
    tuned = stc.STCClassifier(model=body, random_state=seed, store_dir=store, device="cpu",
                              show_progress_bar=False).fit(texts, labels)
    tuned_s = time.perf_counter() - started
    write(dict(base, method="stc-tuned", accuracy=accuracy(test_labels, tuned.predict(test_texts)),
               fit_s=round(tuned_s, 1), total_s=round(setfit_s + tuned_s, 1),
               readout=tuned.configuration_.get("readout"), n_features=int(tuned.n_features_),
               exit_layer=int(tuned.exit_layer_), expected_score=round(float(tuned.expected_score_), 4),
               val_score=round(float(tuned.val_score_), 4)))
    del tuned
    shutil.rmtree(body, ignore_errors=True)

    started = time.perf_counter()
    plain = stc.STCClassifier(model="minilm", random_state=seed, store_dir=store, device="cpu",
                              show_progress_bar=False).fit(texts, labels)
    plain_s = time.perf_counter() - started
    write(dict(base, method="stc-base", accuracy=accuracy(test_labels, plain.predict(test_texts)),
               fit_s=round(plain_s, 1), total_s=round(plain_s, 1),
               readout=plain.configuration_.get("readout"), n_features=int(plain.n_features_),
               exit_layer=int(plain.exit_layer_), expected_score=round(float(plain.expected_score_), 4),
               val_score=round(float(plain.val_score_), 4)))
    del plain

    started = time.perf_counter()
    embedding = EmbeddingClassifier(model="minilm", random_state=seed, store_dir=store, reuse_store=False,
                                    device="cpu", show_progress_bar=False).fit(texts, labels)
    embedding_s = time.perf_counter() - started
    write(dict(base, method="embedding", accuracy=accuracy(test_labels, embedding.predict(test_texts)),
               fit_s=round(embedding_s, 1), total_s=round(embedding_s, 1)))
    shutil.rmtree(store, ignore_errors=True)


def table(rows: list[dict]) -> str:
    """Markdown: per dataset and method, mean accuracy and fit seconds over seeds, and the per-seed values."""
    groups = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["method"])].append(row)
    lines = ["| dataset | method | seeds | accuracy (mean) | per seed | fit s (mean) | readout / n_features "
             "(per seed) | expected_score_ (mean) |",
             "|---|---|---|---|---|---|---|---|"]
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        for method in METHODS:
            group = sorted(groups.get((dataset, method), []), key=lambda r: r["seed"])
            if not group:
                continue
            per_seed = ", ".join(f"{r['seed']}: {r['accuracy']:.3f}" for r in group)
            readouts = ", ".join(f"{r['readout']}/{r['n_features']}" for r in group if "readout" in r) or "-"
            expected = (f"{np.mean([r['expected_score'] for r in group]):.3f}"
                        if all("expected_score" in r for r in group) else "-")
            lines.append(f"| {dataset} | {method} | {len(group)} | {np.mean([r['accuracy'] for r in group]):.3f} "
                         f"| {per_seed} | {np.mean([r['fit_s'] for r in group]):.0f} | {readouts} | {expected} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["mr", "bbc-news"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--k", type=int, default=8, help="training texts per class")
    parser.add_argument("--n-test", type=int, default=1000, help="the first N test texts (all if fewer)")
    parser.add_argument("--out", default="benchmarks/results/setfit-body.jsonl")
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args()

    if args.table_only:
        with open(args.out) as handle:
            print(table([json.loads(line) for line in handle if line.strip()]))
        return

    from stc.data import load_dataset

    rows = []

    def write(row: dict) -> None:
        row = dict(row, machine=f"{platform.machine()} {os.cpu_count()} cpus", date=time.strftime("%Y-%m-%d"))
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as handle:
            handle.write(json.dumps(row) + "\n")

    with tempfile.TemporaryDirectory(prefix="stc-setfit-body-") as scratch:
        datasets = {name: load_dataset(name) for name in args.datasets}
        for seed in args.seeds:  # seed-major: a run cut short still covers every dataset
            for name, data in datasets.items():
                test_texts, test_labels = data.test.texts[:args.n_test], data.test.labels[:args.n_test]
                rows_drawn = draw(data.train.labels, args.k, seed)
                texts = [data.train.texts[i] for i in rows_drawn]
                labels = [data.train.labels[i] for i in rows_drawn]
                run_one(name, seed, texts, labels, test_texts, test_labels, scratch, write)
    print(table(rows))


if __name__ == "__main__":
    main()
