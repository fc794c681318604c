"""``stc._metrics.score`` of indicator matrices is scikit-learn's (its own arithmetic, without the input checks)."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from stc._metrics import score


@pytest.mark.parametrize("metric", ["micro_f1", "macro_f1", "samples_f1", "accuracy"])
@pytest.mark.parametrize("seed", range(4))
def test_indicator_scores_are_scikit_learns(metric, seed):
    rng = np.random.default_rng(seed)
    n, k = rng.integers(1, 30), rng.integers(2, 6)  # label sets have two labels or more (one is a column vector)
    Y_true = (rng.random((n, k)) < rng.uniform(0, 0.6)).astype(np.uint8)
    Y_pred = (rng.random((n, k)) < rng.uniform(0, 0.6)).astype(np.int64)
    Y_true[:, 0] = 0  # a label no text carries
    if n > 2:
        Y_true[1], Y_pred[1] = 0, 0  # a text with no label, predicted to have none
        Y_pred[2] = 0  # a text predicted to have no label
    if metric == "accuracy":
        expected = accuracy_score(Y_true, Y_pred)
    else:
        expected = f1_score(Y_true, Y_pred, average=metric[:-3], zero_division=1.0 if metric == "samples_f1" else 0)
    assert score(Y_true, Y_pred, metric) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("metric", ["micro_f1", "macro_f1", "samples_f1"])
def test_nothing_true_and_nothing_predicted(metric):
    empty = np.zeros((3, 2), dtype=np.uint8)
    expected = f1_score(empty, empty, average=metric[:-3], zero_division=1.0 if metric == "samples_f1" else 0)
    assert score(empty, empty, metric) == expected
