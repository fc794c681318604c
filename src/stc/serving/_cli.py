"""``stc serve MODEL_DIR [--runtime torch|onnx] [--host] [--port] [limits] [micro-batching]``."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["register"]


def _cmd_serve(args) -> int:
    try:
        import uvicorn

        from . import ServeSettings, create_app
    except ImportError as error:
        raise ImportError(f"stc serve needs the serve extra ({error.name} is missing): "
                          f"pip install 'sparsify-then-classify[serve]'") from None
    from ..runtimes import load_predictor

    settings = ServeSettings(max_texts=args.max_texts, max_chars=args.max_chars,
                             max_batch_size=1 if args.no_batching else args.max_batch_size,
                             max_wait_ms=0.0 if args.no_batching else args.max_wait_ms, max_queue=args.max_queue,
                             timeout_s=args.timeout_s or None,
                             api_key=args.api_key or os.environ.get("STC_API_KEY") or None)
    threads = default_threads() if args.threads is None else args.threads
    # Loaded here, before the server binds: a bad model directory is a one-line error, not a failed start-up.
    predictor = load_predictor(args.model_dir, runtime=args.runtime, device=args.device, threads=threads)
    app = create_app(lambda: predictor, settings)
    print(f"stc serve: {args.runtime} model from {args.model_dir} on http://{args.host}:{args.port} "
          f"(max batch {settings.max_batch_size} texts, max wait {settings.max_wait_ms} ms, queue of "
          f"{settings.max_queue} texts, timeout {settings.timeout_s} s, {threads} inference "
          f"thread{'s' if threads > 1 else ''}; "
          f"{'a bearer key is required' if settings.api_key else 'open to anyone who can reach it: --api-key'})",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def default_threads() -> int:
    """Inference threads of a server: every core this process may use but one, which the event loop keeps.

    A runtime's threads wait for each other at every operator; when the event loop (reading requests, writing
    answers) takes one of their cores, each operator waits for a time slice: on 2 cores, torch with 2 threads
    served a one-text pass in ~700 ms, with 1 thread in ~25 ms (benchmarks/README.md, "Serving").
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="serve a saved model over HTTP (POST /predict, /explain; GET /health, "
                                         "/metadata, /metrics)")
    serve.add_argument("model_dir", help="an `stc fit` directory (torch) or an `stc export` directory (onnx)")
    serve.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--device", default=None, help="torch runtime: cpu, cuda … (default: as saved)")
    serve.add_argument("--max-texts", type=int, default=64, help="texts per request (default 64)")
    serve.add_argument("--max-chars", type=int, default=10_000, help="characters per text (default 10000)")
    serve.add_argument("--max-batch-size", type=int, default=64,
                       help="texts per backbone pass, gathered from concurrent requests (default 64)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0,
                       help="how long a pass waits for more requests after the first (default 5 ms)")
    serve.add_argument("--no-batching", action="store_true", help="one request per backbone pass")
    serve.add_argument("--max-queue", type=int, default=None,
                       help="texts that may wait for a pass; beyond, a request gets 503 with Retry-After at once "
                            "(default: 4 passes' worth, 4 x --max-batch-size)")
    serve.add_argument("--timeout-s", type=float, default=30.0,
                       help="a request not answered in this many seconds gets 504 and leaves the queue (default 30; "
                            "0: no limit)")
    serve.add_argument("--api-key", default=None,
                       help="require 'Authorization: Bearer KEY' on every route but /health (default: the "
                            "STC_API_KEY environment variable; prefer it: a command line is visible to other users)")
    serve.add_argument("--threads", type=int, default=None,
                       help="intra-op threads of the runtime (default: the usable cores but one, which the event "
                            "loop keeps; at least 1)")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    serve.set_defaults(handler=_cmd_serve)
