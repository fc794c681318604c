"""Peak memory of prediction with and without one 1 MB text, truncated or read in windows.

Fits two small STC models on MiniLM + MR sentences (one truncating, one with windows), then predicts in fresh
processes: normal texts alone, and normal texts plus one 1 MB text. Each prediction runs in its own child process
and its peak resident memory is read from the kernel (``os.wait4`` rusage ``ru_maxrss``), so the figures do not
include the parent or each other.

    .venv/bin/python benchmarks/bench_messy_text.py [--megabytes 1.0] [--texts 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_FIT = """
import json, sys
from stc import STCClassifier
from stc.data import load_dataset
out, windows = sys.argv[1], sys.argv[2] == "windows"
mr = load_dataset("mr", limit=120)
clf = STCClassifier("minilm", representations=("hidden",), poolings=("mean",), etas=(0.5,), probe_Cs=(0.1,),
                    final_Cs=(1.0,), windows=windows, show_progress_bar=False, store_dir=sys.argv[3])
clf.fit(mr.train.texts, mr.train.labels, X_val=mr.validation.texts, y_val=mr.validation.labels)
clf.save(out)
print(json.dumps({"exit_layer": clf.exit_layer_, "max_length": clf.extraction_["max_length"]}))
"""

_PREDICT = """
import json, sys, time
import stc
from stc.data import load_dataset
model, n_texts, megabytes = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
texts = load_dataset("mr", limit=max(n_texts, 10)).test.texts[:n_texts]
if megabytes > 0:
    sentence = "the plot was thin but the actors carried it with charm and wit . "
    size = int(megabytes * 1_000_000)
    texts.append((sentence * (size // len(sentence) + 1))[:size])
clf = stc.load(model)
started = time.perf_counter()
probabilities = clf.predict_proba(texts)
print(json.dumps({"seconds": time.perf_counter() - started, "n": len(texts),
                  "finite": bool((probabilities == probabilities).all())}))
"""


def run_child_measured(code: str, args: list[str], threads: int) -> tuple[dict, float]:
    """(the child's JSON line, its peak RSS in MiB): waits with wait4, so the rusage is exactly this child's."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"child failed ({process.returncode}):\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=1.0, help="size of the one long text (default 1.0)")
    parser.add_argument("--texts", type=int, default=200, help="normal MR test sentences predicted alongside")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each child (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stc-bench-") as work:
        work = Path(work)
        rows = []
        for mode in ("truncation", "windows"):
            info, fit_peak = run_child_measured(_FIT, [str(work / mode), mode, str(work / "stores")], args.threads)
            print(f"[fit {mode}] exit layer {info['exit_layer']}, max_length {info['max_length']}, "
                  f"fit peak RSS {fit_peak:.0f} MiB", flush=True)
            for megabytes in (0.0, args.megabytes):
                result, peak = run_child_measured(_PREDICT, [str(work / mode), str(args.texts), str(megabytes)],
                                                  args.threads)
                rows.append({"mode": mode, "long_text_MB": megabytes, "texts": result["n"],
                             "predict_s": round(result["seconds"], 2), "peak_rss_MiB": round(peak, 1),
                             "finite": result["finite"]})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'mode':<11} {'long text':>9} {'texts':>6} {'predict s':>10} {'peak RSS MiB':>13}")
    for row in rows:
        print(f"{row['mode']:<11} {row['long_text_MB']:>7.1f}MB {row['texts']:>6} {row['predict_s']:>10.2f} "
              f"{row['peak_rss_MiB']:>13.1f}")


if __name__ == "__main__":
    main()
