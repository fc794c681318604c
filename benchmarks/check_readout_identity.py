"""Predictions of a saved model across a change to how a fitted model is held, and across every face of it.

    # with the code before the change: fit and save a model, and record its probabilities on MR's test split
    stc fit --data mr --out /tmp/readout/before
    python benchmarks/check_readout_identity.py record --model-dir /tmp/readout/before --out /tmp/readout/before.npz
    # with the code after the change: load that model, predict again, save and load it again, compare
    python benchmarks/check_readout_identity.py compare --model-dir /tmp/readout/before --recorded /tmp/readout/before.npz
    # with the current code: every face of one model gives the same probabilities, bit for bit
    python benchmarks/check_readout_identity.py faces --model-dir /tmp/readout/before [--explain 300]

``record`` writes ``predict_proba`` and ``decision_function`` of the test texts. ``compare`` checks that the model
loaded by the current code predicts the same labels and probabilities within ``--tolerance`` (1e-6: a change of
arithmetic, such as the head's float64 standardisation, moves the last bits), and that a fresh save -> load round
trip of it gives bit for bit what the loaded model gives. ``faces`` checks that ``predict_proba``, ``stc predict``
(the CLI's JSONL file), ``stc serve`` with the torch runtime (its ``/predict`` answers, through the app in-process)
and ``explain`` (on the first ``--explain`` texts) give the very same float64 probabilities as ``predict_proba`` of
the same texts in the same call: one head computes them all. A text batched with others is padded to their length,
which moves the last float32 bits of its features; that gap is printed, not checked. Nothing is timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import stc
from stc.data import load_dataset


def outputs(clf, texts: list[str]) -> dict[str, np.ndarray]:
    clf.set_params(show_progress_bar=False)
    return {"proba": clf.predict_proba(texts), "decision": clf.decision_function(texts)}


def compare(name: str, got: dict[str, np.ndarray], recorded: dict[str, np.ndarray], tolerance: float) -> bool:
    """Same labels, and probabilities within ``tolerance``; prints byte-identity and the largest difference of each
    array."""
    same = bool(np.array_equal(got["proba"].argmax(axis=1), recorded["proba"].argmax(axis=1)))
    print(f"{name}: labels identical={same}")
    for key, expected in recorded.items():
        equal = got[key].dtype == expected.dtype and np.array_equal(got[key], expected)
        largest = float(np.max(np.abs(got[key].astype(np.float64) - expected))) if got[key].shape == expected.shape \
            else float("inf")
        print(f"{name}: {key} {got[key].dtype}{got[key].shape} byte-identical={equal} max |diff|={largest:.3g}")
        if key == "proba":  # decision values are reported: their size (up to ~10) makes 1e-6 a relative 1e-7
            same &= largest <= tolerance
    return same


def faces(clf, model_dir: str, texts: list[str], n_explain: int) -> bool:
    """predict_proba, stc predict, stc serve (torch) and explain give the same probabilities for the same texts
    in the same batches; how far a batch's padding moves them is printed beside."""
    from fastapi.testclient import TestClient

    from stc.cli import main as cli
    from stc.predictor import TorchPredictor
    from stc.serving import create_app

    expected = outputs(clf, texts)["proba"]
    classes = [str(c) for c in clf.classes_.tolist()]
    results, gaps = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        cli(["predict", model_dir, "--data", str(Path(scratch) / "texts.jsonl"), "--out",
             str(Path(scratch) / "out.jsonl"), "--quiet"])
        rows = [json.loads(line) for line in (Path(scratch) / "out.jsonl").read_text().splitlines()]
    written = np.array([[row["probabilities"][c] for c in classes] for row in rows])  # JSON floats round-trip
    results["stc predict (JSONL), every text in one call"] = bool(np.array_equal(written, expected))
    predictor, request = TorchPredictor(clf), 64
    with TestClient(create_app(lambda: predictor)) as client:
        answers = []
        for start in range(0, len(texts), request):
            answers += client.post("/predict", json={"texts": texts[start:start + request]}).json()["predictions"]
    served = np.array([[row["probabilities"][c] for c in classes] for row in answers])
    same_batches = np.vstack([clf.predict_proba(texts[start:start + request])
                              for start in range(0, len(texts), request)])
    results[f"stc serve --runtime torch, requests of {request} texts"] = bool(np.array_equal(served, same_batches))
    gaps["stc serve (requests of 64) vs predict_proba of every text in one call"] = np.abs(served - expected).max()
    if n_explain:
        explained = np.array([[clf.explain(text)["probabilities"][c] for c in classes] for text in texts[:n_explain]])
        alone = np.vstack([clf.predict_proba([text]) for text in texts[:n_explain]])
        results[f"explain, first {n_explain} texts, one by one"] = bool(np.array_equal(explained, alone))
        gaps["explain (one text) vs predict_proba of every text in one call"] = \
            np.abs(explained - expected[:n_explain]).max()
    for face, same in results.items():
        print(f"{face}: byte-identical to predict_proba of the same texts in the same call={same}")
    for what, gap in gaps.items():
        print(f"{what}: max |diff|={gap:.3g} (a text's float32 features move with its batch-mates' padding)")
    return all(results.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "compare", "faces"))
    parser.add_argument("--model-dir", required=True, help="a saved STC model")
    parser.add_argument("--data", default="mr", help="the dataset whose test split is predicted")
    parser.add_argument("--out", help="record: the .npz to write")
    parser.add_argument("--recorded", help="compare: the .npz that record wrote")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="compare: the largest difference allowed")
    parser.add_argument("--explain", type=int, default=300, help="faces: how many texts to explain one by one")
    args = parser.parse_args()
    texts = load_dataset(args.data).test.texts
    clf = stc.load(args.model_dir)
    if args.mode == "record":
        np.savez(args.out, **outputs(clf, texts))
        print(f"recorded {len(texts)} texts to {args.out}")
        return 0
    print(f"{len(texts)} test texts of {args.data}")
    if args.mode == "faces":
        same = faces(clf, args.model_dir, texts, args.explain)
        print("every face byte-identical" if same else "DIFFERENT")
        return 0 if same else 1
    with np.load(args.recorded) as archive:
        recorded = {key: archive[key] for key in archive.files}
    loaded = outputs(clf, texts)
    same = compare("loaded", loaded, recorded, args.tolerance)
    with tempfile.TemporaryDirectory() as scratch:
        clf.save(Path(scratch) / "model")
        again = outputs(stc.load(Path(scratch) / "model"), texts)
        round_trip = all(np.array_equal(again[key], loaded[key]) for key in loaded)
        print(f"saved and loaded again: byte-identical to loaded={round_trip}")
    print(f"labels identical and within {args.tolerance:g}" if same and round_trip else "DIFFERENT")
    return 0 if same and round_trip else 1


if __name__ == "__main__":
    sys.exit(main())
