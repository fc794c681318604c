"""stc serve under load: the real server on loopback, 16 concurrent clients, with and without micro-batching,
then under overload.

    python benchmarks/bench_serve.py                                      # stc-runs/demo-model, torch runtime
    python benchmarks/bench_serve.py --runtime onnx --model-dir stc-runs/bench-export/onnx-fp32
    python benchmarks/bench_serve.py --requests 400                       # a quicker look
    python benchmarks/bench_serve.py --overload-only --overload-s 25      # only the overload phase

The overload phase (after the two above, on a fresh server with ``--timeout-s``): first ``--clients`` clients for
``--requests`` requests (the steady state: its RSS is the reference), then ``--overload-factor`` times as many
clients with no pause for ``--overload-s`` seconds (bounded in time and count; nothing retried), while /health is
polled every 0.5 s. Counted: answered (checked like above), 503, 504, anything else, lost; p50/p99 of the answered;
the server's RSS at steady state and its peak (VmHWM) after the overload; /health's failures and slowest answer.

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


def server_memory(pid: int) -> dict[str, float]:
    """The server's resident memory now (VmRSS) and at its peak so far (VmHWM), in MiB (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


async def overload_test(base: str, requests: list[list[int]], texts: list[str], clients: int, seconds: float):
    """Clients posting with no pause for ``seconds`` (and at most len(requests) requests), /health polled beside:
    per request (index, status or None when lost, latency, answer); /health's failures and slowest answer."""
    outcomes = []
    next_request = iter(range(len(requests)))
    stop_at = time.perf_counter() + seconds
    health = {"failures": 0, "slowest_s": 0.0, "polls": 0}

    async def client(http: httpx.AsyncClient):
        for index in next_request:
            if time.perf_counter() > stop_at:
                return
            started = time.perf_counter()
            try:
                response = await http.post("/predict", json={"texts": [texts[i] for i in requests[index]]})
            except httpx.HTTPError:
                outcomes.append((index, None, time.perf_counter() - started, None))
                continue
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") \
                else None
            outcomes.append((index, response.status_code, time.perf_counter() - started, body))

    async def poll_health(http: httpx.AsyncClient):
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                ok = (await http.get("/health", timeout=5)).status_code == 200
            except httpx.HTTPError:
                ok = False
            health["polls"] += 1
            health["failures"] += not ok
            health["slowest_s"] = max(health["slowest_s"], time.perf_counter() - started)
            await asyncio.sleep(0.5)

    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        await asyncio.gather(poll_health(http), *(client(http) for _ in range(clients)))
    return outcomes, health


def overload_phase(args, requests, pool, expected, classes) -> dict:
    """The steady state, then the overload, on one server; the figures the issue's targets read."""
    server, base = start_server(args.model_dir, args.runtime, ["--timeout-s", str(args.timeout_s)] + (
        ["--threads", str(args.threads)] if args.threads else []))
    try:
        asyncio.run(load_test(base, requests, pool, args.clients))
        steady = server_memory(server.pid)
        many = requests * 50  # enough for any duration; the clock stops first
        outcomes, health = asyncio.run(overload_test(base, many, pool, args.clients * args.overload_factor,
                                                     args.overload_s))
        peak = server_memory(server.pid)
    finally:
        server.terminate()
        log = server.communicate(timeout=60)[0]
    statuses = [status for _, status, _, _ in outcomes]
    answered = [(index, latency, body) for index, status, latency, body in outcomes if status == 200]
    wrong = sum(int((np.array([[row["probabilities"][c] for c in classes] for row in body["predictions"]]).argmax(1)
                     != np.stack([expected[i] for i in many[index]]).argmax(1)).sum()) for index, _, body in answered)
    refusals_with_error = all(isinstance(body, dict) and isinstance(body.get("error"), str)
                              for _, status, _, body in outcomes if status in (503, 504))
    latencies = np.array([latency for _, latency, _ in answered]) * 1000
    return {"clients": args.clients * args.overload_factor, "seconds": args.overload_s, "requests": len(outcomes),
            "answered": len(answered), "503": statuses.count(503), "504": statuses.count(504),
            "other_status": sum(s not in (200, 503, 504, None) for s in statuses), "lost": statuses.count(None),
            "wrong_labels": wrong, "refusals_with_json_error": refusals_with_error,
            "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
            "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
            "timeout_s": args.timeout_s, "steady_rss_mib": steady["VmRSS"], "peak_rss_mib": peak["VmHWM"],
            "rss_ratio": peak["VmHWM"] / steady["VmRSS"], "health_polls": health["polls"],
            "health_failures": health["failures"], "health_slowest_ms": health["slowest_s"] * 1000,
            "tracebacks_in_log": log.count("Traceback")}


def print_overload(row: dict) -> None:
    print(f"overload: {row['clients']} clients for {row['seconds']:g} s: {row['requests']} requests, "
          f"{row['answered']} answered, {row['503']} x 503, {row['504']} x 504, {row['other_status']} other, "
          f"{row['lost']} lost, {row['wrong_labels']} wrong labels; refusals carry a JSON error: "
          f"{row['refusals_with_json_error']}")
    print(f"overload: answered p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms (--timeout-s "
          f"{row['timeout_s']:g} s); server RSS steady {row['steady_rss_mib']:.0f} MiB, peak {row['peak_rss_mib']:.0f} "
          f"MiB ({row['rss_ratio']:.2f}x); /health {row['health_polls']} polls, {row['health_failures']} failed, "
          f"slowest {row['health_slowest_ms']:.0f} ms; tracebacks {row['tracebacks_in_log']}")


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
    parser.add_argument("--overload-s", type=float, default=25.0, help="seconds of the overload phase (0: skip it)")
    parser.add_argument("--overload-factor", type=int, default=4, help="overload clients = this x --clients")
    parser.add_argument("--timeout-s", type=float, default=5.0, help="the server's --timeout-s in the overload phase")
    parser.add_argument("--overload-only", action="store_true", help="skip the two throughput phases")
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
    if args.overload_only:
        row = overload_phase(args, requests, pool, expected, classes)
        print_overload(row)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "overload": row}, indent=1))
        return
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
    overload = overload_phase(args, requests, pool, expected, classes) if args.overload_s > 0 else None
    if overload:
        print_overload(overload)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "baseline_max_abs_prob_diff": baseline,
                                               "rows": results, "overload": overload}, indent=1))


if __name__ == "__main__":
    main()
