"""Many tasks, one forward pass: a bundle of K models against the K models run one after another.

    python benchmarks/bench_bundle.py                          # K = 1, 2, 4, 8 on MiniLM, 2,000 MR test texts
    python benchmarks/bench_bundle.py --runtime onnx           # the same, each bundle and model exported to ONNX
    python benchmarks/bench_bundle.py --texts 500 --repeats 2  # a quicker look

The tasks are STC models on MiniLM fitted here (each once, cached under --work-dir) on labelled data of the
repository: MR, bbc-news and tweets, each on --train texts drawn with a seed, with three settings (every default,
hidden states only, max pooling only), so that K = 8 has eight different models. Every model and bundle then labels
the same --texts MR test texts, in the same process, interleaved (bundle, the K models one after another, the first
model alone: the issue's "one model", then again), --repeats times; the figure is the median texts/s. With the torch
runtime the bundle's probabilities are checked bit for bit against each model's own ``predict_proba``; with
``--runtime onnx`` the bundle is one exported graph (``stc export`` of the bundle) against each model's own export
(both cached under --work-dir/onnx), and the largest difference between a task's probabilities from the bundle's
graph and from its model's own graph is reported.
"""

from __future__ import annotations

import argparse
import json
import os
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


def exported(model, directory: Path, fitted: list[Path], tasks: list[str] | None = None, spinning: bool = True):
    """The ONNX predictor of a model or bundle (its ``tasks``), exported into ``directory`` unless an export of
    the same tasks, newer than every ``fitted`` model directory it is made of, is there already. Without
    ``spinning``, its session's threads sleep between runs instead of spinning (onnxruntime's default): with K
    sessions in one process on 2 cores, the spinning threads of one slow down the next (measured: 240 -> 42 texts/s)."""
    import onnxruntime as ort

    from stc.export import OnnxPredictor, export_onnx

    document = directory / "stc_onnx.json"
    fresh = document.is_file() and list(json.loads(document.read_text()).get("tasks") or []) == (tasks or []) \
        and all(document.stat().st_mtime > (path / "stc_model.json").stat().st_mtime for path in fitted)
    if not fresh:
        export_onnx(model, directory)
    predictor = OnnxPredictor(directory)
    if not spinning:
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        predictor.session = ort.InferenceSession(str(directory / "model.onnx"), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
    return predictor


def texts_per_second(run, n_texts: int) -> float:
    started = time.perf_counter()
    run()
    return n_texts / (time.perf_counter() - started)


def runs(runtime: str, chosen: dict, bundle: Bundle, texts: list[str], work_dir: Path, spinning: bool = True):
    """(the bundle's run, the K models' run one after another, the first model's run alone), each giving every
    task's probabilities by name."""
    if runtime == "onnx":
        together = exported(bundle, work_dir / "onnx" / f"bundle-{len(chosen)}", [work_dir / n for n in chosen],
                            list(chosen), spinning)
        own = {name: exported(clf, work_dir / "onnx" / name, [work_dir / name], spinning=spinning)
               for name, clf in chosen.items()}
        apart = {name: predictor.predict_proba for name, predictor in own.items()}
        return (lambda: together.predict_proba(texts)), \
            (lambda: {name: run(texts) for name, run in apart.items()}), (lambda: next(iter(apart.values()))(texts))
    backbone = bundle.load_backbone()
    apart = {name: lambda texts, readout=clf.readout_: readout.head.probabilities(readout.features(backbone, texts))
             for name, clf in chosen.items()}
    return (lambda: bundle.predict_proba(texts, backbone=backbone)), \
        (lambda: {name: run(texts) for name, run in apart.items()}), (lambda: next(iter(apart.values()))(texts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--no-spinning", action="store_true",
                        help="onnx: session threads sleep between runs (onnxruntime's allow_spinning=0)")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default="/tmp/bench/bundle")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    texts = load_dataset("mr").test.texts[:args.texts]
    work_dir = Path(args.work_dir)
    models = fitted_models(max(ks), args.train, work_dir, args.seed)
    rows = []
    for k in ks:
        chosen = dict(list(models.items())[:k])
        bundle = Bundle.from_models(chosen)
        together, apart, alone = runs(args.runtime, chosen, bundle, texts, work_dir,
                                       spinning=not args.no_spinning)
        answers = together()  # against each model's own public path (torch) or its own exported graph (onnx)
        own = {name: clf.predict_proba(texts) for name, clf in chosen.items()} if args.runtime == "torch" else apart()
        identical = all(np.array_equal(answers[name], own[name]) for name in chosen)
        gap = max(float(np.abs(answers[name] - own[name]).max()) for name in chosen)
        speeds_together, speeds_apart, speeds_alone, load = [], [], [], [os.getloadavg()[0]]
        for _ in range(args.repeats):  # interleaved: a slow moment of the machine hits all three
            speeds_together.append(texts_per_second(together, len(texts)))
            speeds_apart.append(texts_per_second(apart, len(texts)))
            speeds_alone.append(texts_per_second(alone, len(texts)))
            load.append(os.getloadavg()[0])
        row = {"k": k, "runtime": args.runtime, "tasks": list(chosen),
               "bundle_texts_per_s": statistics.median(speeds_together),
               "separate_texts_per_s": statistics.median(speeds_apart),
               "first_model_alone_texts_per_s": statistics.median(speeds_alone),
               "bundle_runs": speeds_together, "separate_runs": speeds_apart, "first_model_alone_runs": speeds_alone,
               "load_average_1min": load,
               "exit_layer": bundle.exit_layer,
               "union_neurons": int(sum(len(c) for c in bundle.union_columns.values())),
               "own_neurons": int(sum(clf.n_features_ for clf in chosen.values())),
               "byte_identical": identical, "max_abs_probability_difference": gap}
        row["speedup"] = row["bundle_texts_per_s"] / row["separate_texts_per_s"]
        row["bundle_vs_first_model"] = row["bundle_texts_per_s"] / row["first_model_alone_texts_per_s"]
        rows.append(row)
        print(f"K={k} ({args.runtime}): bundle {row['bundle_texts_per_s']:.1f} texts/s, separately "
              f"{row['separate_texts_per_s']:.1f} texts/s ({row['speedup']:.2f}x), the first model alone "
              f"{row['first_model_alone_texts_per_s']:.1f} ({row['bundle_vs_first_model']:.2f}x); one pass to layer "
              f"{row['exit_layer']}, {row['union_neurons']} neurons pooled for {row['own_neurons']}; each task's "
              f"probabilities byte-identical to its own model's: {identical} (max |dp| {gap:.2e}); load "
              f"{min(load):.1f}-{max(load):.1f}", flush=True)
        if args.json:  # after every K: a long run cut short keeps what it measured
            Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
