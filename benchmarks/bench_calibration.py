"""Calibration of a fitted model on a labelled split: ECE (15 bins), log loss and accuracy, with and without its
temperature, from one extraction of the split's features.

    python benchmarks/bench_calibration.py --model-dir stc-runs/demo-model --data mr   # after `make demo`
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np

from stc import load
from stc.calibration import expected_calibration_error, log_loss
from stc.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default="stc-runs/demo-model")
    parser.add_argument("--data", default="mr")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    clf = load(args.model_dir)
    clf.show_progress_bar = False
    split = getattr(load_dataset(args.data), args.split)
    codes = np.searchsorted(clf.classes_, np.asarray(split.labels))
    features = clf.transform(split.texts)
    fitted_temperature = clf.temperature_
    rows = {}
    for name, temperature in (("uncalibrated (T = 1)", 1.0), (f"calibrated (T = {fitted_temperature:.3f})",
                                                               fitted_temperature)):
        proba = replace(clf.readout_, temperature=temperature).probabilities(features)
        rows[name] = {"accuracy": float((proba.argmax(axis=1) == codes).mean()),
                      "ece": expected_calibration_error(proba, codes), "log_loss": log_loss(proba, codes),
                      "share of p > 0.99": float((proba.max(axis=1) > 0.99).mean())}
    print(json.dumps({"model": args.model_dir, "data": args.data, "split": args.split, "n": len(codes),
                      "rows": rows}, indent=1))
    before, after = rows.values()
    print(f"ECE {before['ece']:.4f} -> {after['ece']:.4f} ({after['ece'] / before['ece']:.2f}x); accuracy "
          f"{before['accuracy']:.4f} -> {after['accuracy']:.4f}")


if __name__ == "__main__":
    main()
