"""How extraction scales on Ray: one process vs an actor pool of 1 and 2 workers, a worker killed mid-run, and
the on-paper projection to 10 million texts.

    nice python benchmarks/bench_scale.py [--model minilm] [--n 3000] [--shard-size 250]

Each configuration runs in a fresh subprocess (its own torch, its own embedded Ray) on the same texts and writes
its own store; the stores' hashes are compared with the single-process one. Times are split into the model load,
Ray's start-up (``ray.init``) and the extraction itself (actors' start-up and the backbone load inside them
included: that is the engine's overhead besides ray.init). Prints a JSON summary last.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_CHILD = r"""
import json, sys, time
started = time.perf_counter()
import torch
from stc.backbone import load_backbone
from stc.data import load_dataset
from stc.extract import default_poolings
from stc.store import ExtractionSettings, build_store
config = json.loads(sys.argv[1])
dataset = load_dataset("mr")
texts = [t for split in (dataset.train, dataset.validation, dataset.test) if split for t in split.texts]
texts = texts[:config["n"]]
imported = time.perf_counter()
backbone = load_backbone(config["model"], device="cpu")
loaded = time.perf_counter()
engine = None
if config["workers"]:
    from stc.distributed import RayEngine
    engine = RayEngine(workers=config["workers"])
    engine.connect()
connected = time.perf_counter()
settings = ExtractionSettings(representations=("hidden", "ffn"), poolings=default_poolings(backbone))
store = build_store(backbone, texts, settings, root=config["root"], shard_size=config["shard_size"],
                    show_progress_bar=False, engine=engine)
done = time.perf_counter()
print("RESULT " + json.dumps({"n_texts": len(texts), "n_shards": store.meta["n_shards"], "path": str(store.path),
                              "threads": torch.get_num_threads(), "imports_s": imported - started,
                              "load_s": loaded - imported, "ray_init_s": connected - loaded,
                              "extract_s": done - connected}), flush=True)
"""


def store_hash(path: Path) -> str:
    """sha256 over the store's arrays (name and bytes, in name order) and its meta.json."""
    digest = hashlib.sha256()
    for file in sorted((path / "arrays").iterdir()) + [path / "meta.json"]:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _shard_workers() -> list[int]:
    busy = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if entry.name.isdigit() and title.startswith("ray::_ShardWorker.extract"):
            busy.append(int(entry.name))
    return busy


def run(config: dict, *, threads: int | None = None, kill_after_shards: int | None = None) -> dict:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    killed = {}

    def killer():
        while process.poll() is None:
            shards = list(Path(config["root"]).glob("*/shards/*.safetensors"))
            busy = _shard_workers()
            if len(shards) >= kill_after_shards and busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.update(pid=busy[0], at_s=time.perf_counter() - started, shards_done=len(shards))
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=killer) if kill_after_shards else None
    if watcher:
        watcher.start()
    stdout, stderr = process.communicate()
    if watcher:
        watcher.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"configuration {config} failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.split("RESULT ")[-1])
    result.update(wall_s=wall, hash=store_hash(Path(result["path"])), killed=killed or None)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--n", type=int, default=3000, help="MR texts (train, then validation, then test)")
    parser.add_argument("--shard-size", type=int, default=250)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="stc-bench-scale-"))
    runs = {}
    plan = [("single process, all cores", 0, None, None), ("single process, 1 thread", 0, 1, None),
            ("ray, 1 worker", 1, None, None), ("ray, 2 workers", 2, None, None),
            ("ray, 2 workers, one killed mid-run", 2, None, 2)]
    for name, workers, threads, kill in plan:
        config = {"model": args.model, "n": args.n, "shard_size": args.shard_size, "workers": workers,
                  "root": str(root / name.replace(" ", "_").replace(",", ""))}
        runs[name] = run(config, threads=threads, kill_after_shards=kill)
        r = runs[name]
        print(f"{name:<36} load {r['load_s']:5.1f} s  ray.init {r['ray_init_s']:5.1f} s  extract "
              f"{r['extract_s']:6.1f} s  ({r['n_texts'] / r['extract_s']:6.1f} texts/s)  wall {r['wall_s']:6.1f} s"
              f"  threads {r['threads']}  store {r['hash'][:12]}" + (f"  killed {r['killed']}" if r["killed"] else ""),
              flush=True)
    single, one_thread = runs["single process, all cores"], runs["single process, 1 thread"]
    summary = {"model": args.model, "n_texts": single["n_texts"], "n_shards": single["n_shards"],
               "load_average_before_after": os.getloadavg(), "runs": runs}
    base = single["ray_init_s"] + single["extract_s"]
    for name in ("ray, 1 worker", "ray, 2 workers", "ray, 2 workers, one killed mid-run"):
        r = runs[name]
        summary.setdefault("overhead", {})[name] = {
            "vs_single_s": r["ray_init_s"] + r["extract_s"] - base,
            "vs_single_share": (r["ray_init_s"] + r["extract_s"] - base) / base,
            "same_store_as_single": r["hash"] == single["hash"],
            "same_store_as_single_1_thread": r["hash"] == one_thread["hash"]}
    w1 = runs["ray, 1 worker"]
    per_shard = (w1["extract_s"] - one_thread["extract_s"]) / w1["n_shards"]
    summary["one_worker_vs_one_thread_process"] = {
        "extra_extract_s": w1["extract_s"] - one_thread["extract_s"], "ray_init_s": w1["ray_init_s"],
        "extra_per_shard_s_upper_bound": per_shard,
        "per_worker_texts_per_s": w1["n_texts"] / w1["extract_s"]}
    print(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
