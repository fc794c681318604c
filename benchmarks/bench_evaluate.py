"""``stc evaluate``: one pass of the backbone over the test texts vs the former one pass per metric.

    python benchmarks/bench_evaluate.py --model-dir stc-runs/demo-model --repeats 2   # any saved model; MR test split

Both sides run in this process on the same loaded model and the same texts, interleaved: the reference is what
``stc evaluate`` did before (``predict`` once for accuracy, once more for macro-F1), the other side is the
command's own scoring function. Model and data loading, common to both, are left out. Each side is reported as
wall time and as process CPU time (all threads): on a shared machine the wall time swings with the neighbours'
load, the CPU time much less; the number of texts sent through the backbone is exact.
"""

from __future__ import annotations

import argparse
import statistics
import time

import stc
import stc.readout
from stc._metrics import score
from stc.cli import _scores
from stc.data import load_dataset

METRICS = ("accuracy", "macro_f1")


def two_passes(clf, split) -> dict[str, float]:
    return {metric: score(split.labels, clf.predict(split.texts), metric) for metric in METRICS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a saved STC model")
    parser.add_argument("--data", default="mr")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    split = load_dataset(args.data).test
    clf = stc.load(args.model_dir)
    clf.show_progress_bar = False
    texts_through_backbone = [0]
    extract = stc.readout.extract_features

    def counting_extract(backbone, texts, *rest, **options):
        texts_through_backbone[0] += len(texts)
        return extract(backbone, texts, *rest, **options)

    stc.readout.extract_features = counting_extract
    sides = {"one pass per metric (before)": two_passes, "stc evaluate (one pass)": lambda c, s: _scores(c, s, METRICS)}
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    passes, results = {}, {}
    for _ in range(args.repeats):
        for name, run in sides.items():
            texts_through_backbone[0] = 0
            started, started_cpu = time.perf_counter(), time.process_time()
            results[name] = run(clf, split)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
            passes[name] = texts_through_backbone[0] / len(split.texts)
    print(f"{args.data} test split: {len(split.texts)} texts, model {args.model_dir}")
    for name in sides:
        print(f"{name}: {passes[name]:.0f} backbone pass(es); wall median {statistics.median(wall[name]):.1f} s "
              f"({', '.join(f'{s:.1f}' for s in wall[name])}); CPU median {statistics.median(cpu[name]):.1f} s "
              f"({', '.join(f'{s:.1f}' for s in cpu[name])}); scores {results[name]}")
    (wall_before, wall_after), (cpu_before, cpu_after) = ([statistics.median(v) for v in d.values()] for d in (wall, cpu))
    print(f"ratio: wall {wall_before / wall_after:.2f}x, CPU {cpu_before / cpu_after:.2f}x; "
          f"same scores: {len(set(map(str, results.values()))) == 1}")


if __name__ == "__main__":
    main()
