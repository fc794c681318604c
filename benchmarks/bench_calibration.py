"""Calibration of a fitted model on a labelled split: ECE (15 bins), log loss and accuracy, with and without its
temperature, from one extraction of the split's features.

    python benchmarks/bench_calibration.py --model-dir stc-runs/demo-model --data mr   # after `make demo`

The sampling spread of ECE on the split is measured by a bootstrap over its texts (``--bootstrap`` resamples,
seeded): the standard error of ECE before, after, and of their difference (paired: the same resample for both).
Its floor is measured too: the ECE of a perfectly calibrated model with the calibrated probabilities, each text's
label drawn from them (seeded draws): no model scored on this many texts is expected to go below it.
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
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for the ECE's standard error")
    args = parser.parse_args()
    clf = load(args.model_dir)
    clf.show_progress_bar = False
    split = getattr(load_dataset(args.data), args.split)
    codes = np.searchsorted(clf.classes_, np.asarray(split.labels))
    features = clf.transform(split.texts)
    fitted_temperature = clf.temperature_
    rows, probas = {}, []
    for name, temperature in (("uncalibrated (T = 1)", 1.0), (f"calibrated (T = {fitted_temperature:.3f})",
                                                               fitted_temperature)):
        proba = replace(clf.readout_.head, temperature=temperature).probabilities(features)
        probas.append(proba)
        rows[name] = {"accuracy": float((proba.argmax(axis=1) == codes).mean()),
                      "ece": expected_calibration_error(proba, codes), "log_loss": log_loss(proba, codes),
                      "share of p > 0.99": float((proba.max(axis=1) > 0.99).mean())}
    print(json.dumps({"model": args.model_dir, "data": args.data, "split": args.split, "n": len(codes),
                      "rows": rows}, indent=1))
    before, after = rows.values()
    print(f"ECE {before['ece']:.4f} -> {after['ece']:.4f} ({after['ece'] / before['ece']:.2f}x); accuracy "
          f"{before['accuracy']:.4f} -> {after['accuracy']:.4f}")
    if args.bootstrap:
        rng = np.random.default_rng(0)
        draws = np.array([[expected_calibration_error(p[sample], codes[sample]) for p in probas]
                          for sample in (rng.integers(0, len(codes), len(codes)) for _ in range(args.bootstrap))])
        se_before, se_after = draws.std(axis=0, ddof=1)
        se_difference = (draws[:, 1] - draws[:, 0]).std(ddof=1)
        print(f"bootstrap ({args.bootstrap} resamples of the {len(codes)} texts): se of ECE before {se_before:.4f}, "
              f"after {se_after:.4f}, of the difference {se_difference:.4f}")
        calibrated = probas[1]
        cumulative = calibrated.cumsum(axis=1)
        last = calibrated.shape[1] - 1  # rounding may leave the cumulative sum a hair below 1
        floor = [expected_calibration_error(calibrated, np.minimum((rng.random((len(codes), 1)) > cumulative)
                                                                   .sum(axis=1), last)) for _ in range(200)]
        print(f"ECE floor on {len(codes)} texts (labels drawn from the calibrated probabilities, 200 draws): "
              f"mean {np.mean(floor):.4f}, 95 % of draws below {np.quantile(floor, 0.95):.4f}")


if __name__ == "__main__":
    main()
