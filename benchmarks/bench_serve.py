"""stc serve under load: the real server on loopback, 16 concurrent clients, with and without micro-batching.

    python benchmarks/bench_serve.py                                      # stc-runs/demo-model, torch runtime
    python benchmarks/bench_serve.py --runtime onnx --model-dir stc-runs/bench-export/onnx-fp32
    python benchmarks/bench_serve.py --requests 400                       # a quicker look

Each run starts ``stc serve`` as a process on a free loopback port, waits for /health, sends ``--requests``
requests of 1-8 MR test texts (seeded) from ``--clients`` concurrent clients, checks every answer against
``predict_proba`` computed here beforehand (label, and probabilities within 1e-4: the count beyond is printed beside
the model's own spread between batch compositions), and stops the server. Nothing is retried: a lost answer counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from stc.data import load_dataset
from stc.runtimes import load_predictor


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: str, runtime: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    server = subprocess.Popen([sys.executable, "-m", "stc", "serve", model_dir, "--runtime", runtime, "--port",
                               str(port), "--log-level", "warning", *extra], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stdout.read()}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.terminate()
            raise RuntimeError("the server did not answer /health within 300 s")
        time.sleep(0.3)


async def load_test(base: str, requests: list[list[int]], texts: list[str], clients: int):
    """(latencies, answers): one latency per request and its probabilities, None where it failed."""
    latencies = [None] * len(requests)
    answers = [None] * len(requests)
    next_request = iter(range(len(requests)))

    async def client(http: httpx.AsyncClient):
        for index in next_request:
            body = {"texts": [texts[i] for i in requests[index]]}
            started = time.perf_counter()
            try:
                response = await http.post("/predict", json=body)
            except httpx.HTTPError:
                continue
            latencies[index] = time.perf_counter() - started
            if response.status_code == 200:
                answers[index] = response.json()["predictions"]

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    return latencies, answers, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="stc-runs/demo-model")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--data", default="mr")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None,
                        help="the server's inference threads (default: stc serve's, the usable cores but one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    pool = load_dataset(args.data).test.texts
    rng = np.random.default_rng(args.seed)
    requests = [rng.choice(len(pool), size=int(rng.integers(1, 9)), replace=False).tolist()
                for _ in range(args.requests)]
    used = sorted({i for request in requests for i in request})
    predictor = load_predictor(args.model_dir, runtime=args.runtime)
    expected = dict(zip(used, predictor.predict_proba([pool[i] for i in used])))
    # The model's own noise: the same texts in other batches (padding, batch shape) give slightly other floats.
    baseline = max(float(np.abs(predictor.predict_proba([pool[i] for i in r]) - np.stack([expected[i] for i in r])
                                ).max()) for r in requests[:200])
    classes = [str(c) for c in predictor.head.classes]
    del predictor
    n_texts = sum(len(r) for r in requests)
    print(f"{args.requests} requests ({n_texts} texts, 1-8 each) from {args.clients} concurrent clients; "
          f"{args.runtime} runtime, model {args.model_dir}; server threads: {args.threads or 'its default'}")
    results = []
    threads = ["--threads", str(args.threads)] if args.threads else []
    for name, extra in (("micro-batching", ["--max-batch-size", str(args.max_batch_size), "--max-wait-ms",
                                            str(args.max_wait_ms)]),
                        ("one request per pass", ["--no-batching"])):
        server, base = start_server(args.model_dir, args.runtime, extra + threads)
        try:
            latencies, answers, wall = asyncio.run(load_test(base, requests, pool, args.clients))
            health = httpx.get(f"{base}/health", timeout=10).json()
        finally:
            server.terminate()
            log = server.communicate(timeout=60)[0]
        lost = sum(a is None for a in answers)
        wrong_label = over = 0
        gap = 0.0
        for request, answer in zip(requests, answers):
            if answer is None:
                continue
            got = np.array([[row["probabilities"][c] for c in classes] for row in answer])
            want = np.stack([expected[i] for i in request])
            if got.shape != want.shape:
                wrong_label += len(request)
                continue
            gap = max(gap, float(np.abs(got - want).max()))
            over += int((np.abs(got - want).max(axis=1) > 1e-4).sum())
            wrong_label += int((got.argmax(1) != want.argmax(1)).sum())
        done = [latency for latency in latencies if latency is not None]
        q = np.percentile(done, [50, 95, 99]) * 1000 if done else [float("nan")] * 3
        results.append({"mode": name, "requests_per_s": args.requests / wall, "texts_per_s": n_texts / wall,
                        "p50_ms": q[0], "p95_ms": q[1], "p99_ms": q[2], "lost": lost, "wrong_label": wrong_label,
                        "texts_over_1e-4": over,
                        "max_abs_prob_diff": gap, "passes": health["passes"], "wall_s": wall,
                        "mean_texts_per_pass": health["texts"] / max(health["passes"], 1),
                        "tracebacks_in_log": log.count("Traceback")})
    print(f"{'mode':<22} {'req/s':>7} {'texts/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'passes':>7} "
          f"{'texts/pass':>10} {'lost':>5} {'label!=':>7} {'|dp|>1e-4':>9} {'max|dp|':>8}")
    for row in results:
        print(f"{row['mode']:<22} {row['requests_per_s']:>7.1f} {row['texts_per_s']:>8.1f} {row['p50_ms']:>8.0f} "
              f"{row['p95_ms']:>8.0f} {row['p99_ms']:>8.0f} {row['passes']:>7} {row['mean_texts_per_pass']:>10.1f} "
              f"{row['lost']:>5} {row['wrong_label']:>7} {row['texts_over_1e-4']:>9} {row['max_abs_prob_diff']:>8.1e}")
    print(f"micro-batching / one request per pass throughput: "
          f"{results[0]['requests_per_s'] / results[1]['requests_per_s']:.2f}x; the model's own max |dp| between "
          f"batch compositions (200 requests in-process): {baseline:.1e}; tracebacks in server logs: "
          f"{sum(r['tracebacks_in_log'] for r in results)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "baseline_max_abs_prob_diff": baseline,
                                               "rows": results}, indent=1))


if __name__ == "__main__":
    main()
