"""Where a label-set fit's search spends its time: timers around every call of the ridge's primal and dual fits.

    python benchmarks/profile_multilabel_ridge.py [--size 6000] [--seed 0] [--out /tmp/ridge-calls.json]

Fits ``STCClassifier(random_state=seed)`` with every default on ``--size`` films texts (drawn as
``bench_multilabel.py`` draws them, read from its store, so no forward pass), with ``stc._ridge._primal`` and
``_dual`` wrapped by timers. Prints the fit's phases and, per route (primal or dual) and number of Cs in a call
(stage 1 tries 5, stage 2 more), the calls, the (columns, C) members they fitted and their seconds (per call, so
calls that ran side by side on two workers add up to more than the wall time). ``--out`` keeps every call as
(route, rows, columns, members, distinct widths, distinct Cs, widest, seconds).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stc._ridge as ridge  # noqa: E402
from bench_multilabel import DEFAULT_STORE_DIR, draw, films  # noqa: E402
from bench_selection import StoreRows  # noqa: E402
from stc import STCClassifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="6000", help="training texts, or 'all'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store-dir", default=DEFAULT_STORE_DIR)
    parser.add_argument("--out", type=Path, default=None, help="every call, as JSON")
    args = parser.parse_args()

    calls = []

    def timed(route, function):
        def wrapper(Z, T, members, Z_held=None):
            start = time.perf_counter()
            out = function(Z, T, members, Z_held)
            if members:
                calls.append((route, len(Z), Z.shape[1], len(members), len({m for m, _ in members}),
                              len({C for _, C in members}), max(m for m, _ in members), time.perf_counter() - start))
            return out
        return wrapper

    ridge._primal, ridge._dual = timed("primal", ridge._primal), timed("dual", ridge._dual)
    data, sets, Y, _, _ = films(args.store_dir)
    rows = draw(Y, args.size, args.seed)
    clf = STCClassifier(random_state=args.seed, show_progress_bar=False).fit_store(StoreRows(data.store, rows),
                                                                                   [sets[i] for i in rows])
    print(f"fit {clf.fit_seconds_:.1f} s, phases {dict(clf.fit_timings_)}")
    print(f"chosen: {clf.configuration_['readout']} of {clf.n_features_} features, C {clf.configuration_['C']:g}; "
          f"estimate {clf.expected_score_:.4f}")
    seconds, count, members = collections.Counter(), collections.Counter(), collections.Counter()
    for route, _, _, n_members, _, n_Cs, _, elapsed in calls:
        seconds[route, n_Cs] += elapsed
        count[route, n_Cs] += 1
        members[route, n_Cs] += n_members
    for key in sorted(seconds):
        print(f"{key[0]:6s} {key[1]:2d} Cs: {count[key]:4d} calls, {members[key]:5d} members, {seconds[key]:7.1f} s")
    if args.out:
        args.out.write_text(json.dumps(calls))


if __name__ == "__main__":
    main()
