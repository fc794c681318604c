"""stc._solver: the L1 logistic path solver against scikit-learn, on planted problems with known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import log_expit, logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from stc._solver import MULTINOMIAL_MAX_CLASSES, l1_logistic_path


def objective(X, y, C, coef, intercept):
    """scikit-learn's objective ``||W||_1 + C * sum(loss)``, in float64, for either solver's output."""
    X, coef, intercept = (np.asarray(a, dtype=np.float64) for a in (X, coef, intercept))
    scores = X @ coef.T + intercept
    if coef.shape[0] == 1:
        loss = -log_expit(np.where(y == 1, scores[:, 0], -scores[:, 0])).sum()
    else:
        loss = (logsumexp(scores, axis=1) - scores[np.arange(len(y)), y]).sum()
    return float(np.abs(coef).sum() + C * loss)


def planted_problem(n=400, d=30, n_classes=2, informative=4, seed=0):
    """Correlated standardised features; the labels depend on the first ``informative`` features only."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + 0.6 * rng.standard_normal((n, 1))  # a shared factor: correlated columns
    X = (X - X.mean(0)) / X.std(0)
    weights = np.zeros((n_classes, d))
    for j in range(informative):  # each informative feature raises one class: none cancels out
        weights[j % n_classes, j] = 3.0
    y = np.argmax(X @ weights.T + rng.gumbel(size=(n, n_classes)), axis=1)
    return X, y


def saga(X, y, C):
    """scikit-learn's saga run to a tight tolerance (its n_iter_ says whether it got there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=C, l1_ratio=1.0, solver="saga", tol=1e-10, max_iter=20_000)
        return model.fit(X, y)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_objective_matches_scikit_learn_saga_at_every_C(n_classes):
    X, y = planted_problem(n_classes=n_classes)
    Cs = [0.003, 0.03, 0.3, 3.0]
    coef, intercept = l1_logistic_path(X, y, Cs, tol=1e-8)
    assert coef.shape == (len(Cs), 1 if n_classes == 2 else n_classes, X.shape[1])
    assert intercept.shape == coef.shape[:2]
    for j, C in enumerate(Cs):
        reference = saga(X, y, C)
        ours, theirs = objective(X, y, C, coef[j], intercept[j]), objective(X, y, C, reference.coef_,
                                                                            reference.intercept_)
        assert ours <= theirs * (1 + 1e-4), (C, ours, theirs)  # never worse than scikit-learn
        # ... and optimal in its own right: saga's stopping rule (on weight changes) can stop short at small C.
        assert kkt_violation(X, y, C, coef[j], intercept[j]) <= 1e-3


def test_binary_objective_matches_liblinear_and_keeps_its_sign_convention():
    X, y = planted_problem(n=600, d=40, seed=1)
    Cs = [0.01, 0.1, 1.0]
    coef, intercept = l1_logistic_path(X, y, Cs, tol=1e-8)
    for j, C in enumerate(Cs):
        # liblinear penalises the intercept too; a large intercept_scaling makes that penalty negligible.
        reference = LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", tol=1e-10, max_iter=10_000,
                                       intercept_scaling=1e3).fit(X, y)
        ours = objective(X, y, C, coef[j], intercept[j])
        theirs = objective(X, y, C, reference.coef_, reference.intercept_)
        assert ours <= theirs * (1 + 1e-4) and theirs <= ours * (1 + 1e-4), (C, ours, theirs)
        # One row: the weights of class 1, as scikit-learn's coef_ for two classes.
        assert np.array_equal(np.sign(coef[j]), np.sign(reference.coef_))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_C_below_the_null_threshold_gives_exact_zeros_and_the_null_intercepts(n_classes):
    X, y = planted_problem(n_classes=n_classes, seed=2)
    coef, intercept = l1_logistic_path(X, y, [1e-6, 1e-5])
    assert np.all(coef == 0.0)  # exact zeros, not 1e-12
    freq = np.bincount(y, minlength=n_classes) / len(y)
    if n_classes == 2:
        np.testing.assert_allclose(intercept[:, 0], np.log(freq[1] / freq[0]), rtol=1e-10)
    else:
        np.testing.assert_allclose(intercept - intercept.mean(1, keepdims=True),
                                   np.tile(np.log(freq) - np.log(freq).mean(), (2, 1)), rtol=1e-10)
    assert np.all(saga(X, y, 1e-5).coef_ == 0)  # scikit-learn agrees that nothing survives


def test_weights_below_the_penalty_are_exact_zeros_everywhere_on_the_path():
    X, y = planted_problem(n=500, d=60, seed=3)
    C_min = 1.0 / np.abs(X.T @ (y - y.mean())).max()  # below it no weight survives
    coef, _ = l1_logistic_path(X, y, [2 * C_min, 8 * C_min, 40 * C_min])
    nonzero = np.abs(coef[coef != 0])
    assert nonzero.min() > 1e-8  # a zero is a zero: no 1e-12 leftovers of a smooth solver
    assert 0 < np.count_nonzero(coef[0]) < np.count_nonzero(coef[2]) < X.shape[1]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_planted_informative_features_get_the_weights(n_classes):
    X, y = planted_problem(n=1000, d=50, n_classes=n_classes, informative=5, seed=4)
    (sparse, larger), _ = l1_logistic_path(X, y, [0.01, 0.05])
    kept = np.flatnonzero((sparse ** 2).sum(axis=0))
    assert 0 < len(kept) and set(kept) <= set(range(5))  # a strong penalty keeps informative features only
    importance = (larger ** 2).sum(axis=0)
    assert set(np.argsort(importance)[-5:]) == set(range(5))  # a weaker one ranks them first


def kkt_violation(X, y, C, coef, intercept):
    """Largest minimum-norm subgradient of ``||W||_1 + C * sum(loss)`` over weights and intercepts (0 at optimum)."""
    scores = X @ coef.T + intercept
    if coef.shape[0] == 1:
        residual = (1.0 / (1.0 + np.exp(-scores)) - (y == 1)[:, None]) * C
    else:
        residual = (np.exp(scores - logsumexp(scores, axis=1, keepdims=True)) - np.eye(coef.shape[0])[y]) * C
    gradient = (X.T @ residual).T
    subgradient = np.where(coef != 0, gradient + np.sign(coef), np.sign(gradient) * np.maximum(
        np.abs(gradient) - 1.0, 0.0))
    return max(float(np.abs(subgradient).max()), float(np.abs(residual.sum(axis=0)).max()))


def test_output_rows_follow_the_order_of_Cs_given():
    X, y = planted_problem(seed=5)
    Cs = [0.3, 0.01, 0.05]
    coef, intercept = l1_logistic_path(X, y, Cs, tol=1e-8)
    sorted_coef, sorted_intercept = l1_logistic_path(X, y, sorted(Cs), tol=1e-8)
    order = np.argsort(Cs)
    np.testing.assert_array_equal(coef[order], sorted_coef)
    np.testing.assert_array_equal(intercept[order], sorted_intercept)


def test_float32_input_reaches_the_same_objective():
    X, y = planted_problem(n=500, d=40, seed=6)
    Cs = [0.02, 0.2]
    coef64, intercept64 = l1_logistic_path(X, y, Cs, tol=1e-8)
    coef32, intercept32 = l1_logistic_path(X.astype(np.float32), y, Cs, tol=1e-8)
    for j, C in enumerate(Cs):
        f64, f32 = objective(X, y, C, coef64[j], intercept64[j]), objective(X, y, C, coef32[j], intercept32[j])
        assert abs(f32 - f64) <= 1e-5 * f64


def test_same_input_gives_bitwise_the_same_output():
    X, y = planted_problem(n=300, d=25, n_classes=3, seed=7)
    first = l1_logistic_path(X, y, [0.01, 0.1, 1.0])
    second = l1_logistic_path(X, y, [0.01, 0.1, 1.0])
    for a, b in zip(first, second):
        assert np.array_equal(a, b)


def test_warm_start_at_the_solution_stays_there():
    X, y = planted_problem(seed=8)
    Cs = [0.02, 0.2]
    coef, intercept = l1_logistic_path(X, y, Cs, tol=1e-8)
    again, again_intercept = l1_logistic_path(X, y, Cs, tol=1e-8, warm_start=(coef, intercept))
    for j, C in enumerate(Cs):
        assert objective(X, y, C, again[j], again_intercept[j]) <= objective(X, y, C, coef[j], intercept[j]) * (
            1 + 1e-10)
    with pytest.raises(ValueError, match="warm_start"):
        l1_logistic_path(X, y, Cs, warm_start=(coef[:, :, :3], intercept))


def test_a_rare_class_with_more_neurons_than_texts_reaches_the_optimum_from_a_cold_start():
    # 7 positives among 217 texts of 1,536 standardised neurons: where every gradient of a Newton step's model lay
    # within the penalty, the inner solve's duality gap (1e30 - 1e30 with the dummy ||y||) read 0 and the step
    # returned unmoved: the path stopped 20 % above the optimum at the first C, 3.6x above it from a cold start.
    rng = np.random.default_rng(0)
    y = np.arange(217) % 34
    rng.shuffle(y)
    X = rng.normal(size=(217, 1536)).astype(np.float32) + 0.9 * np.eye(34, 1536, dtype=np.float32)[y]
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = (y == 3).astype(np.int64)
    C_min = 1.0 / np.abs(X.T.astype(np.float64) @ (y - y.mean())).max()
    for C in (3 * C_min, 100 * C_min):  # each alone: a cold start
        coef, intercept = l1_logistic_path(X, y, [C])
        reference = LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", tol=1e-10, max_iter=100_000,
                                       intercept_scaling=1e3).fit(X, y)
        ours = objective(X, y, C, coef[0], intercept[0])
        theirs = objective(X, y, C, reference.coef_, reference.intercept_)
        assert ours <= theirs * (1 + 1e-4), (C / C_min, ours, theirs)


def _newton_model(rows, seed, scale, weighted=True, n=60, k=6):
    """The quadratic model of one Newton step at random weights, as ``_newton_step`` builds it: the exact
    ``q'Q^+q`` after the intercepts' elimination, and ``_least_squares_norm``'s bound of it."""
    from stc._solver import _hessian, _least_squares_norm, _probabilities

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k))
    W, b = rng.normal(scale=scale, size=(rows, k)), rng.normal(size=rows)
    scores = X @ W.T + b
    P = _probabilities(scores)
    y = rng.integers(0, 2 if rows == 1 else rows, n)
    targets = (y == 1)[:, None].astype(float) if rows == 1 else np.eye(rows)[y]
    weights = rng.uniform(0.5, 2.0, n) if weighted else None
    residual = (P - targets) * (1.0 if weights is None else weights[:, None])
    free = [0] if rows == 1 else list(range(1, rows))  # class 0's intercept is the softmax's gauge
    H = _hessian(X, P, free, weights)
    gradient = np.concatenate([(X.T @ residual).T.ravel() / n, residual.mean(axis=0)[free]])
    c = gradient - H @ np.concatenate([W.ravel(), b[free]])
    m = rows * k
    B, F = H[:m, m:], H[m:, m:]
    Q, q = H[:m, :m] - B @ np.linalg.solve(F, B.T), B @ np.linalg.solve(F, c[m:]) - c[:m]
    offset = scores.copy()
    if rows > 1:
        offset[:, 0] -= b[0]
    return float(q @ np.linalg.lstsq(Q, q, rcond=None)[0]), _least_squares_norm(offset, P, residual, free, weights)


@pytest.mark.parametrize("rows", [1, 3, 4])
@pytest.mark.parametrize("weighted", [True, False])
def test_the_bound_of_the_newton_models_least_squares_norm_holds(rows, weighted):
    for seed in range(4):
        exact, bound = _newton_model(rows, seed, 0.3, weighted)
        assert exact <= bound <= exact * 50  # an upper bound, not a vacuous one
        exact, bound = _newton_model(rows, seed, 3.0, weighted)  # confident mistakes: loose, still a bound
        assert exact <= bound


def test_the_bound_skips_texts_fitted_exactly_and_gives_up_on_saturated_mistakes():
    from stc._solver import _least_squares_norm

    offset, P = np.array([[40.0], [0.5], [-0.5]]), np.array([[1.0], [0.6], [0.4]])
    residual = P - np.array([[1.0], [1.0], [0.0]])  # the first text saturated and right: no curvature, no gradient
    assert _least_squares_norm(offset, P, residual, [0]) == pytest.approx(
        _least_squares_norm(offset[1:], P[1:], residual[1:], [0]) * 2 / 3)
    residual[0] = 1.0  # saturated and wrong: a gradient without curvature has no least-squares form
    assert _least_squares_norm(offset, P, residual, [0]) is None
    P3 = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    assert _least_squares_norm(np.zeros((2, 3)), P3, P3 - np.eye(3)[[0, 2]], [1, 2]) is not None
    assert _least_squares_norm(np.zeros((2, 3)), P3, P3 - np.eye(3)[[1, 2]], [1, 2]) is None


@pytest.mark.parametrize("n_classes", [2, 3])
def test_more_neurons_than_samples_in_float32(n_classes):
    # The Hessian on the working set is then singular: float32 rounding once broke its Cholesky factorisation.
    rng = np.random.default_rng(12)
    X = rng.standard_normal((30, 80)).astype(np.float32)
    y = np.arange(30) % n_classes
    Cs = [0.1, 1.0, 10.0]
    coef, intercept = l1_logistic_path(X, y, Cs, tol=1e-8)
    for j, C in enumerate(Cs):  # optimality certified by the KKT conditions (saga crawls on such problems)
        assert kkt_violation(X.astype(np.float64), y, C, coef[j], intercept[j]) <= 1e-3
    assert np.count_nonzero(coef[-1]) < 30 * max(1, n_classes - 1) + 1  # L1 keeps at most ~n neurons


def test_a_class_absent_from_y_but_counted_in_n_classes_is_never_predicted():
    X, y = planted_problem(n_classes=2, seed=10)
    coef, intercept = l1_logistic_path(X, y, [0.1], n_classes=3)
    assert coef.shape == (1, 3, X.shape[1]) and np.all(coef[0, 2] == 0)
    assert np.all(np.argmax(X @ coef[0].T + intercept[0], axis=1) != 2)


@pytest.mark.parametrize("X_change, y_change, Cs, match", [
    (None, None, [], "Cs is empty"),
    (None, None, [0.1, 0.0], "C must be finite and > 0"),
    (None, None, [-1.0], "C must be finite and > 0"),
    (None, None, [np.nan], "C must be finite and > 0"),
    (lambda X: X[:-1], None, [0.1], "X and y disagree"),
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), None, [0.1], "NaN or infinite"),
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X), None, [0.1], "NaN or infinite"),
    (None, lambda y: np.zeros_like(y), [0.1], "at least 2 classes"),
    (None, lambda y: y - 1, [0.1], "class codes 0..K-1"),
    (lambda X: X[:, 0], None, [0.1], "2-D array"),
])
def test_bad_input_is_refused_with_a_message_naming_the_problem(X_change, y_change, Cs, match):
    X, y = planted_problem(n=50, d=5, seed=11)
    X = X_change(X) if X_change else X
    y = y_change(y) if y_change else y
    with pytest.raises(ValueError, match=match):
        l1_logistic_path(X, y, Cs)


def test_three_class_probes_with_shared_working_neurons_need_no_eigendecomposition(monkeypatch):
    """Each working neuron enters the multinomial Hessian in every class, so it is singular (equal shifts across
    classes change nothing); that once sent each Newton step through an eigendecomposition (probes on 26k tweets
    crawled). The fit must neither need one nor lose accuracy."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(900, 40))
    y = rng.integers(0, 3, size=900)
    X[:, :6] += (y[:, None] - 1.0) * 0.8  # the same neurons carry every class

    def no_eigh(*args, **kwargs):
        raise AssertionError("an eigendecomposition was used")

    monkeypatch.setattr(np.linalg, "eigh", no_eigh)
    Cs = [0.01, 0.1, 1.0]
    coef, intercept = l1_logistic_path(X, y, Cs)
    assert (np.count_nonzero(coef[-1], axis=1) > 15).all()  # every class has a large working set
    for j, C in enumerate(Cs):
        reference = LogisticRegression(C=C, l1_ratio=1.0, solver="saga", max_iter=20000, tol=1e-10).fit(X, y)
        ours = objective(X, y, C, coef[j], intercept[j])
        theirs = objective(X, y, C, reference.coef_, reference.intercept_)
        assert ours <= theirs * (1 + 1e-4)


def binary_objective(X, target, C, coef, intercept):
    """scikit-learn's binary objective of one class against the rest."""
    return objective(X, target.astype(np.int64), C, coef[None], np.atleast_1d(intercept))


def test_beyond_a_few_classes_each_class_is_its_own_binary_problem_at_scikit_learns_optimum():
    """One-vs-rest: every row of the path minimises scikit-learn's binary objective of that class against the
    rest, so it is never worse than saga's solution of the same binary problem."""
    n_classes = MULTINOMIAL_MAX_CLASSES + 2
    X, y = planted_problem(n=500, d=30, n_classes=n_classes, informative=2 * n_classes, seed=12)
    Cs = [0.01, 0.3]
    coef, intercept = l1_logistic_path(X, y, Cs, tol=1e-8)
    assert coef.shape == (len(Cs), n_classes, X.shape[1])
    for j, C in enumerate(Cs):
        for c in range(n_classes):
            target = (y == c).astype(np.int64)
            reference = saga(X, target, C)
            ours = binary_objective(X, target, C, coef[j, c], intercept[j, c])
            theirs = binary_objective(X, target, C, reference.coef_[0], reference.intercept_[0])
            assert ours <= theirs * (1 + 1e-4), (C, c, ours, theirs)
    explicit = l1_logistic_path(X, y, Cs, tol=1e-8, multi_class="ovr")
    assert all(np.array_equal(a, b) for a, b in zip(explicit, (coef, intercept)))


def test_up_to_a_few_classes_the_loss_stays_multinomial():
    X, y = planted_problem(n=300, d=20, n_classes=MULTINOMIAL_MAX_CLASSES, informative=8, seed=13)
    auto = l1_logistic_path(X, y, [0.1])
    joint = l1_logistic_path(X, y, [0.1], multi_class="multinomial")
    rest = l1_logistic_path(X, y, [0.1], multi_class="ovr")
    assert all(np.array_equal(a, b) for a, b in zip(auto, joint))
    assert not np.array_equal(auto[0], rest[0])


def test_one_vs_rest_never_predicts_a_class_absent_from_y():
    X, y = planted_problem(n=400, d=20, n_classes=MULTINOMIAL_MAX_CLASSES + 1, informative=10, seed=14)
    y[y == 2] = 0
    coef, intercept = l1_logistic_path(X, y, [0.1, 1.0], n_classes=MULTINOMIAL_MAX_CLASSES + 1)
    assert np.all(coef[:, 2] == 0)
    assert np.all(np.argmax(X @ coef[-1].T + intercept[-1], axis=1) != 2)


def test_thirty_classes_fit_in_a_memory_budget_the_joint_hessian_exceeds():
    """A planted 30-class problem: the joint multinomial step builds a (classes x working set)^2 Hessian, here
    (30 x 200)^2 float64 = 288 MB on its first step at a weak penalty; one-vs-rest stays within a 64 MB budget
    (numpy's allocations, traced) and finds the planted neurons."""
    import tracemalloc

    budget = 64 * 2**20
    X, y = planted_problem(n=1200, d=200, n_classes=30, informative=60, seed=15)
    tracemalloc.start()
    try:
        coef, intercept = l1_logistic_path(X, y, [0.01, 0.1, 1.0])
        ovr_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        l1_logistic_path(X, y, [10.0], max_iter=1, multi_class="multinomial")
        joint_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ovr_peak < budget < joint_peak, (ovr_peak / 2**20, joint_peak / 2**20)
    importance = (coef[-1] ** 2).sum(axis=0)
    assert set(np.argsort(importance)[-60:]) == set(range(60))  # the planted neurons carry the most weight
    accuracy = np.mean(np.argmax(X @ coef[-1].T + intercept[-1], axis=1) == y)
    assert accuracy > 0.6
