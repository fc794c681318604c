"""Predictions of a saved model, byte for byte: the same before and after a change to how a fitted model is held.

    # with the code before the change: fit and save a model, and record its probabilities on MR's test split
    stc fit --data mr --out /tmp/readout/before
    python benchmarks/check_readout_identity.py record --model-dir /tmp/readout/before --out /tmp/readout/before.npz
    # with the code after the change: load that model, predict again, save and load it again, compare
    python benchmarks/check_readout_identity.py compare --model-dir /tmp/readout/before --recorded /tmp/readout/before.npz

``record`` writes ``predict_proba`` and ``decision_function`` of the test texts; ``compare`` checks that the model
loaded by the current code gives the same arrays bit for bit (``np.array_equal``), and that a fresh save -> load
round trip of it does too. Nothing is timed: the figures are the equality and the largest difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import stc
from stc.data import load_dataset


def outputs(clf, texts: list[str]) -> dict[str, np.ndarray]:
    clf.show_progress_bar = False
    return {"proba": clf.predict_proba(texts), "decision": clf.decision_function(texts)}


def report(name: str, got: dict[str, np.ndarray], recorded: dict[str, np.ndarray]) -> bool:
    same = True
    for key, expected in recorded.items():
        equal = got[key].dtype == expected.dtype and np.array_equal(got[key], expected)
        largest = float(np.max(np.abs(got[key].astype(np.float64) - expected))) if got[key].shape == expected.shape \
            else float("nan")
        print(f"{name}: {key} {got[key].dtype}{got[key].shape} byte-identical={equal} max |diff|={largest:.3g}")
        same &= equal
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "compare"))
    parser.add_argument("--model-dir", required=True, help="a saved STC model")
    parser.add_argument("--data", default="mr", help="the dataset whose test split is predicted")
    parser.add_argument("--out", help="record: the .npz to write")
    parser.add_argument("--recorded", help="compare: the .npz that record wrote")
    args = parser.parse_args()
    texts = load_dataset(args.data).test.texts
    clf = stc.load(args.model_dir)
    if args.mode == "record":
        np.savez(args.out, **outputs(clf, texts))
        print(f"recorded {len(texts)} texts to {args.out}")
        return 0
    with np.load(args.recorded) as archive:
        recorded = {key: archive[key] for key in archive.files}
    print(f"{len(texts)} test texts of {args.data}")
    same = report("loaded", outputs(clf, texts), recorded)
    with tempfile.TemporaryDirectory() as scratch:
        clf.save(Path(scratch) / "model")
        same &= report("saved and loaded again", outputs(stc.load(Path(scratch) / "model"), texts), recorded)
    print("all byte-identical" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
