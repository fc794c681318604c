"""Many tasks, one forward pass: a bundle of K models against the K models run one after another.

    python benchmarks/bench_bundle.py                          # K = 1, 2, 4, 8 on MiniLM, 2,000 MR test texts
    python benchmarks/bench_bundle.py --texts 500 --repeats 2  # a quicker look

The tasks are STC models on MiniLM fitted here (each once, cached under --work-dir) on labelled data of the
repository: MR, bbc-news and tweets, each on --train texts drawn with a seed, and each with two settings (every
default, and hidden states only), so that K = 8 has eight different models. Every model and bundle then labels the
same --texts MR test texts, in the same process, interleaved (bundle, separate, bundle, ...), --repeats times; the
figure is the median texts/s. The bundle's probabilities are checked bit for bit against each model's own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import stc
from stc import Bundle
from stc.data import load_dataset

#: (dataset, STCClassifier settings) of each task, in the order K takes them.
TASKS = [("mr", {}), ("bbc-news", {}), ("tweets", {}), ("mr", {"representations": ("hidden",)}),
         ("bbc-news", {"representations": ("hidden",)}), ("tweets", {"representations": ("hidden",)}),
         ("mr", {"poolings": ("max",)}), ("tweets", {"poolings": ("max",)})]


def fitted_models(k: int, train: int, work_dir: Path, seed: int) -> dict[str, stc.STCClassifier]:
    models = {}
    for index, (dataset, settings) in enumerate(TASKS[:k]):
        name = f"{dataset}-{index}"
        directory = work_dir / name
        if not (directory / "stc_model.json").is_file():
            data = load_dataset(dataset)
            rng = np.random.default_rng(seed + index)
            rows = rng.choice(len(data.train.texts), size=min(train, len(data.train.texts)), replace=False)
            clf = stc.STCClassifier(store_dir=str(work_dir / "stores"), show_progress_bar=False,
                                    random_state=seed + index, **settings)
            clf.fit([data.train.texts[i] for i in rows], [data.train.labels[i] for i in rows])
            clf.save(directory)
        models[name] = stc.load(directory)
    return models


def texts_per_second(run, n_texts: int) -> float:
    started = time.perf_counter()
    run()
    return n_texts / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default="/tmp/bench/bundle")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    texts = load_dataset("mr").test.texts[:args.texts]
    models = fitted_models(max(ks), args.train, Path(args.work_dir), args.seed)
    rows = []
    for k in ks:
        chosen = dict(list(models.items())[:k])
        bundle = Bundle.from_models(chosen)
        backbone = bundle.load_backbone()
        answers = bundle.predict_proba(texts, backbone=backbone)
        identical = all(np.array_equal(answers[name], clf.predict_proba(texts)) for name, clf in chosen.items())

        def separately():
            for clf in chosen.values():
                clf.readout_.head.probabilities(clf.readout_.features(backbone, texts))

        together, apart = [], []
        for _ in range(args.repeats):  # interleaved: a slow moment of the machine hits both
            together.append(texts_per_second(lambda: bundle.predict_proba(texts, backbone=backbone), len(texts)))
            apart.append(texts_per_second(separately, len(texts)))
        row = {"k": k, "tasks": list(chosen), "bundle_texts_per_s": statistics.median(together),
               "separate_texts_per_s": statistics.median(apart), "exit_layer": bundle.exit_layer,
               "union_neurons": int(sum(len(c) for c in bundle.union_columns.values())),
               "own_neurons": int(sum(clf.n_features_ for clf in chosen.values())),
               "byte_identical": identical}
        row["speedup"] = row["bundle_texts_per_s"] / row["separate_texts_per_s"]
        rows.append(row)
        print(f"K={k}: bundle {row['bundle_texts_per_s']:.1f} texts/s, separately {row['separate_texts_per_s']:.1f} "
              f"texts/s ({row['speedup']:.2f}x); one pass to layer {row['exit_layer']}, {row['union_neurons']} "
              f"neurons pooled for {row['own_neurons']}; each task's probabilities byte-identical: {identical}",
              flush=True)
    one = next((row for row in rows if row["k"] == 1), None)
    if one:
        for row in rows:
            print(f"K={row['k']}: the bundle runs at {row['bundle_texts_per_s'] / one['bundle_texts_per_s']:.2f}x "
                  f"one model's texts/s")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
