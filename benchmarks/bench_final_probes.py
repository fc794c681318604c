"""The final probes, each path stopped at the C the folds chose, against the whole path, side by side.

    python benchmarks/bench_final_probes.py                 # mr, tweets (3,000 texts a split), reuters; 2,000 texts
    python benchmarks/bench_final_probes.py --datasets mr --rows 500 --seeds 4

With cross-validation (the default protocol, ``stc.protocol.KFolds``) every array's probe is refitted on all texts
at the C of its grid the folds chose. The grid is solved from the smallest C up, each C warm-started from the last
(larger C, weaker L1, more neurons: the costliest), so since 2026-12-06 the final path stops at the chosen C
(``fit_probe_paths(last_C_index=...)``); until then it solved the whole grid and threw the larger Cs away.

For each dataset's MiniLM store (``bench_selection``'s, built on first use), ``rows`` texts drawn (seeded) from
the pool, 5 folds: the fold probes once (untimed), then the final probes both ways in one process
(``KFolds.final_probes`` itself, and every path solved whole), one after the other, alternating which goes first
over the seeds: wall seconds (probes side by side on both cores, as a fit runs them), whether the probes are equal
bit for bit, and how often each grid index was chosen.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np

import bench_selection as bs
from stc.probe import fit_probe_paths
from stc.protocol import FitOptions, KFolds

RESULTS = Path(__file__).resolve().parent / "results"


def final_probes(protocol: KFolds, store, splits, options: FitOptions, stop: bool) -> tuple[float, dict, dict]:
    """Seconds, the final probes (key: (coef, intercept)) and each key's grid index: ``KFolds.final_probes`` as a
    fit runs it (each path stopped at the folds' C), or every path solved whole and read at the C it chose."""
    keys = list(store.keys)
    started = time.perf_counter()
    if stop:
        probes = protocol.final_probes(store, keys, options, splits)
        seconds = time.perf_counter() - started
        index = {key: probe.Cs.index(probe.C) for key, probe in probes.items()}
        return seconds, {key: (probe.coef, probe.intercept) for key, probe in probes.items()}, index
    paths = fit_probe_paths(store, keys, protocol.codes, protocol.fit_rows, np.arange(0), **options.probe_options())
    seconds = time.perf_counter() - started
    index = {key: int(np.argmax(np.mean([split.probes[key].scores_by_C for split in splits], axis=0)))
             for key in keys}
    return seconds, {key: (paths[key].coefs[index[key]], paths[key].intercepts[index[key]]) for key in keys}, index


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="mr,tweets:3000,reuters",
                        help="names, each with ':N' to cap its splits at N texts (load_dataset's limit)")
    parser.add_argument("--rows", type=int, default=2000, help="texts drawn (seeded) from each dataset's pool")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "final-probes.jsonl")
    args = parser.parse_args(argv)
    options = FitOptions(n_jobs=-1)
    for spec in args.datasets.split(","):
        name, _, limit = spec.partition(":")
        data = bs.bench_data(name, limit=int(limit) if limit else None)
        classes, codes = np.unique(np.asarray(data.pool_labels), return_inverse=True)
        totals, chosen, equal = {"whole": 0.0, "stopped": 0.0}, collections.Counter(), True
        for seed in range(args.seeds):
            drawn = np.sort(np.random.default_rng(seed).choice(len(codes), size=min(args.rows, len(codes)),
                                                                replace=False))
            store = bs.StoreRows(data.store, data.rows([data.pool_texts[i] for i in drawn]))
            for key in store.keys:  # page cache warmed, untimed
                store.load(key)
            protocol = KFolds(codes[drawn], 5, seed=seed, rule="one_se", given=False, kinds=("sparse",))
            splits = protocol.fit_splits(store, list(store.keys), options)
            order = ("whole", "stopped") if seed % 2 == 0 else ("stopped", "whole")
            probes, index = {}, {}
            for way in order:
                seconds, probes[way], index[way] = final_probes(protocol, store, splits, options,
                                                                stop=way == "stopped")
                totals[way] += seconds
            equal &= index["whole"] == index["stopped"] and all(
                np.array_equal(a, b) for key in probes["whole"]
                for a, b in zip(probes["whole"][key], probes["stopped"][key]))
            chosen.update(index["stopped"].values())
            so_far = ", ".join(f"{way} {totals[way]:.1f} s" for way in order)
            print(f"[{name}] after seed {seed}: {so_far}", flush=True)
        record = {"dataset": spec, "rows": int(min(args.rows, len(codes))), "classes": len(classes),
                  "seeds": args.seeds, "arrays": len(store.keys), "whole_s": round(totals["whole"], 1),
                  "stopped_s": round(totals["stopped"], 1),
                  "speedup": round(totals["whole"] / max(totals["stopped"], 1e-9), 2), "equal": bool(equal),
                  "chosen_index": {str(k): chosen[k] for k in sorted(chosen)}, "date": time.strftime("%Y-%m-%d")}
        print(json.dumps(record), flush=True)
        with open(args.out, "a") as out:
            out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
