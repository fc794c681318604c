"""The multi-label head's ridge fits (``stc._ridge.ridge_path``) are scikit-learn's ``RidgeClassifier``'s."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier
from sklearn.preprocessing import StandardScaler

from stc._ridge import ridge_path
from stc.head import MULTILABEL_CS, make_final_classifier, ridge_alpha
from stc.heads import fit_head_estimator, head_from_pipeline, multilabel_heads


def _labels(n_rows: int, n_features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)) * rng.uniform(0.1, 5.0, size=n_features) + rng.normal(size=n_features)
    Y = (X[:, :4] @ rng.normal(size=(4, 5)) + rng.normal(size=(n_rows, 5)) > 0.5).astype(np.uint8)
    Y[:, 4] = 0  # a label no row carries: a constant head
    return X, Y


@pytest.mark.parametrize("n_rows, n_features", [(120, 30), (40, 200)], ids=["primal", "dual"])
def test_every_C_is_scikit_learns_ridge_classifier_on_the_standardised_rows(n_rows, n_features):
    X, Y = _labels(n_rows, n_features)
    Cs = (5e-4, 0.05, 5.0)
    path = ridge_path(X, Y, Cs)
    Z = StandardScaler().fit_transform(X)
    for C, coef, intercept in zip(Cs, path.coefs, path.intercepts):
        reference = RidgeClassifier(alpha=ridge_alpha(C), solver="cholesky").fit(Z, Y.astype(np.int64))
        np.testing.assert_allclose(coef, reference.coef_, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(intercept, reference.intercept_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(path.coefs[0][4], 0.0, atol=1e-12)
    assert path.intercepts[0][4] == pytest.approx(-1.0)  # never carried: always "no"
    # a larger C is a weaker penalty: larger weights
    norms = [np.linalg.norm(coef) for coef in path.coefs]
    assert norms[0] < norms[1] < norms[2]


def test_the_fitted_head_and_its_pipeline_give_the_same_decisions():
    X, Y = _labels(80, 12, seed=1)
    C = MULTILABEL_CS[3]
    pipeline = fit_head_estimator("linear", C, 0, None, X, Y, multilabel=True)
    head = head_from_pipeline(pipeline, np.arange(5))
    (direct,) = multilabel_heads(X, Y, [C], np.arange(5))
    new = np.random.default_rng(2).normal(size=(7, 12))
    np.testing.assert_allclose(head.decision(new), direct.decision(new), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pipeline.decision_function(new), direct.decision(new), rtol=1e-9, atol=1e-9)
    assert pipeline.named_steps["ridge"].alpha == pytest.approx(ridge_alpha(C))


def test_a_multi_label_head_needs_a_C():
    with pytest.raises(ValueError, match="positive C"):
        make_final_classifier(None, multilabel=True)
