"""Peak memory of extraction and of a whole ``fit`` on 2,000 vs 8,000 texts, each in a fresh subprocess.

    python benchmarks/bench_memory.py [--sizes 2000,8000] [--model minilm]

Extraction streams pooled activations to the on-disk store shard by shard, and probing reads one array at a time,
so peak RSS should barely grow with N while the store on disk grows linearly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from stc import STCClassifier, load_backbone
from stc.data import load_dataset
from stc.extract import default_poolings
from stc.store import ExtractionSettings, build_store

phase, model, n, store_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
mr = load_dataset("mr")
texts = (mr.train.texts + mr.validation.texts)[:n]
labels = (mr.train.labels + mr.validation.labels)[:n]
started = time.perf_counter()
if phase == "extract":  # the texts in the order fit will ask for them, so that fit reuses this store
    from stc._estimator import encode_labels, validation_split

    classes, codes = encode_labels(labels, len(texts))
    train, _, val, _ = validation_split(texts, codes, classes, None, None, validation_size=0.2, random_state=42)
    backbone = load_backbone(model)
    settings = ExtractionSettings(representations=("hidden", "ffn"), poolings=default_poolings(backbone))
    store = build_store(backbone, train + val, settings, root=store_dir, show_progress_bar=False)
    size = sum(p.stat().st_size for p in Path(store.path).rglob("*") if p.is_file())
else:
    STCClassifier(model, store_dir=store_dir, show_progress_bar=False).fit(texts, labels)
    size = None
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"phase": phase, "n": n, "peak_rss_mib": round(peak_mib, 1), "store_mib":
                  None if size is None else round(size / 2**20, 1), "seconds": round(time.perf_counter() - started, 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,8000")
    parser.add_argument("--model", default="minilm")
    args = parser.parse_args()
    rows = []
    for n in (int(size) for size in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="stc-bench-memory-") as store_dir:
            for phase in ("extract", "fit"):  # fit reuses the store the extract phase wrote: its peak is probing
                result = subprocess.run([sys.executable, "-c", CHILD, phase, args.model, str(n), store_dir],
                                        capture_output=True, text=True, check=True)
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    by = {(row["phase"], row["n"]): row for row in rows}
    sizes = sorted({row["n"] for row in rows})
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for phase in ("extract", "fit"):
            growth = by[(phase, large)]["peak_rss_mib"] / by[(phase, small)]["peak_rss_mib"]
            print(f"{phase}: peak RSS {by[(phase, small)]['peak_rss_mib']} MiB at N={small}, "
                  f"{by[(phase, large)]['peak_rss_mib']} MiB at N={large} (x{growth:.2f} for x{large / small:.1f} texts)")
        print(f"store on disk: {by[('extract', small)]['store_mib']} MiB at N={small}, "
              f"{by[('extract', large)]['store_mib']} MiB at N={large}")


if __name__ == "__main__":
    main()
