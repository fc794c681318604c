"""stc._solver_multilabel: every label's L1 path at once, against the per-label solver on planted problems."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_expit

from stc._solver import l1_logistic_path
from stc._solver_multilabel import l1_logistic_label_paths
from stc.probe import _constant_path, _label_paths, smallest_useful_C

PREVALENCES = (0.45, 0.2, 0.08, 0.03)  # frequent to rare labels


def planted_labels(n=300, d=40, seed=0):
    """Correlated standardised features; label j is 1 for the rows whose planted score (a few features plus noise)
    is in the top ``PREVALENCES[j]`` share, and a last label constant (all 0)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + 0.6 * rng.standard_normal((n, 1))  # a shared factor: correlated columns
    X = (X - X.mean(0)) / X.std(0)
    columns = []
    for j, share in enumerate(PREVALENCES):
        score = X[:, 3 * j:3 * j + 3] @ np.array([2.0, -1.5, 1.0]) + rng.logistic(size=n)
        columns.append(score >= np.quantile(score, 1.0 - share))
    Y = np.column_stack(columns + [np.zeros(n, dtype=bool)]).astype(np.uint8)
    return X, Y


def grid(X, Y):
    """The probes' grid: multiples of the C below which no label keeps a neuron."""
    return [smallest_useful_C(X, Y, Y.shape[1]) * multiple for multiple in (1.5, 3.0, 10.0, 30.0, 100.0)]


def objective(X, y, C, coef, intercept):
    """scikit-learn's objective ``||w||_1 + C * sum(loss)`` of one binary label, in float64."""
    scores = np.asarray(X, dtype=np.float64) @ np.asarray(coef, dtype=np.float64) + float(intercept)
    return float(np.abs(coef).sum() - C * log_expit(np.where(y == 1, scores, -scores)).sum())


def kkt_violation(X, y, C, coef, intercept):
    """Largest minimum-norm subgradient of one label's objective over its weights and intercept (0 at optimum)."""
    scores = np.asarray(X, dtype=np.float64) @ coef + intercept
    residual = (1.0 / (1.0 + np.exp(-scores)) - y) * C
    gradient = np.asarray(X, dtype=np.float64).T @ residual
    subgradient = np.where(coef != 0, gradient + np.sign(coef), np.sign(gradient) * np.maximum(
        np.abs(gradient) - 1.0, 0.0))
    return max(float(np.abs(subgradient).max()), abs(float(residual.sum())))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_label_matches_its_own_path_at_every_C(dtype):
    X, Y = planted_labels()
    X = X.astype(dtype)
    labels = Y[:, :-1]  # the constant label has no binary problem: see the _label_paths test
    Cs = grid(X, labels)
    coef, intercept = l1_logistic_label_paths(X, labels, Cs)
    assert coef.shape == (len(Cs), labels.shape[1], X.shape[1]) and intercept.shape == coef.shape[:2]
    for label in range(labels.shape[1]):
        y = labels[:, label].astype(np.int64)
        alone_coef, alone_intercept = l1_logistic_path(X, y, Cs, n_classes=2)
        for j, C in enumerate(Cs):
            ours = objective(X, y, C, coef[j, label], intercept[j, label])
            alone = objective(X, y, C, alone_coef[j, 0], alone_intercept[j, 0])
            assert ours <= alone * (1 + 1e-4), (label, C, ours, alone)


def test_solutions_are_optimal_with_exact_zeros():
    X, Y = planted_labels(seed=1)
    labels = Y[:, :-1]
    Cs = grid(X, labels)
    coef, intercept = l1_logistic_label_paths(X, labels, Cs, tol=1e-8)
    for label in range(labels.shape[1]):
        y = labels[:, label]
        for j, C in enumerate(Cs):
            # optimal: no weight or intercept can lower the objective (sizes relative to the L1 penalty's 1)
            assert kkt_violation(X, y, C, coef[j, label], intercept[j, label]) <= 1e-3, (label, C)
    # the L1 penalty removes weights exactly: few survive at the smallest C, and those removed are 0.0
    assert 0 < np.count_nonzero(coef[0]) < coef[0].size // 4
    assert np.count_nonzero(coef[0]) < np.count_nonzero(coef[-1])
    assert np.all((coef == 0.0) | (np.abs(coef) > 1e-12))


def test_same_input_same_output_bit_for_bit():
    X, Y = planted_labels(seed=2)
    labels = Y[:, :-1]
    first = l1_logistic_label_paths(X, labels, grid(X, labels))
    second = l1_logistic_label_paths(X.copy(), labels.copy(), grid(X, labels))
    assert first[0].tobytes() == second[0].tobytes() and first[1].tobytes() == second[1].tobytes()


def test_output_rows_follow_the_order_of_Cs_given():
    X, Y = planted_labels(seed=3)
    labels = Y[:, :-1]
    Cs = grid(X, labels)
    shuffled = [Cs[2], Cs[0], Cs[4], Cs[1], Cs[3]]
    coef, intercept = l1_logistic_label_paths(X, labels, shuffled)
    sorted_coef, sorted_intercept = l1_logistic_label_paths(X, labels, Cs)
    order = np.argsort(shuffled)
    np.testing.assert_array_equal(coef[order], sorted_coef)
    np.testing.assert_array_equal(intercept[order], sorted_intercept)


def test_label_paths_keep_the_constant_label_at_its_constant_path():
    X, Y = planted_labels(seed=4)
    Y[:, 1] = 1  # a second constant label, always present
    Cs = grid(X, Y)
    coef, intercept = _label_paths(X, Y, Cs)
    assert coef.shape == (len(Cs), Y.shape[1], X.shape[1]) and coef.dtype == np.float64
    for label, value in ((1, 1), (Y.shape[1] - 1, 0)):
        constant_coef, constant_intercept = _constant_path(len(Cs), X.shape[1], value)
        np.testing.assert_array_equal(coef[:, label:label + 1], constant_coef)
        np.testing.assert_array_equal(intercept[:, label:label + 1], constant_intercept)
    varying = [0, 2, 3]
    alone = l1_logistic_label_paths(X, Y[:, varying], Cs)
    np.testing.assert_array_equal(coef[:, varying], alone[0])
    np.testing.assert_array_equal(intercept[:, varying], alone[1])


@pytest.mark.parametrize("change, message", [
    (lambda X, Y, Cs: (X, Y[:, :1] * 0, Cs), "constant"),
    (lambda X, Y, Cs: (X, Y[:-1], Cs), "one row per row"),
    (lambda X, Y, Cs: (X, Y * 2, Cs), "only 0 and 1"),
    (lambda X, Y, Cs: (X, Y, []), "empty"),
    (lambda X, Y, Cs: (X, Y, [-1.0]), "> 0"),
    (lambda X, Y, Cs: (np.where(X > 2, np.nan, X), Y, Cs), "NaN"),
])
def test_bad_input_is_refused(change, message):
    X, Y = planted_labels(seed=5)
    Y = Y[:, :-1]
    with pytest.raises(ValueError, match=message):
        l1_logistic_label_paths(*change(X, Y, grid(X, Y)))
