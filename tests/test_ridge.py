"""The multi-label head's ridge fits (``stc._ridge.ridge_path``) are scikit-learn's ``RidgeClassifier``'s."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier
from sklearn.preprocessing import StandardScaler

from stc._ridge import ridge_fits
from stc.head import MULTILABEL_CS, make_final_classifier, ridge_alpha
from stc.heads import fit_head_estimator, head_from_pipeline, multilabel_heads


def _labels(n_rows: int, n_features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)) * rng.uniform(0.1, 5.0, size=n_features) + rng.normal(size=n_features)
    Y = (X[:, :4] @ rng.normal(size=(4, 5)) + rng.normal(size=(n_rows, 5)) > 0.5).astype(np.uint8)
    Y[:, 4] = 0  # a label no row carries: a constant head
    return X, Y


@pytest.mark.parametrize("n_rows, n_features", [(120, 30), (40, 200)], ids=["primal", "dual"])
def test_every_C_and_prefix_is_scikit_learns_ridge_classifier_on_its_standardised_columns(n_rows, n_features):
    X, Y = _labels(n_rows, n_features)
    # nested column sets (prefixes) at several Cs, in any order, a prefix twice: each its own fit
    members = [(n_features, 5e-4), (n_features // 3, 0.05), (n_features, 5.0), (7, 0.05), (n_features // 3, 5e-4),
               (1, 5.0), (7, 0.05)]
    for (m, C), fit in zip(members, ridge_fits(X, Y, members), strict=True):
        scaler = StandardScaler().fit(X[:, :m])
        reference = RidgeClassifier(alpha=ridge_alpha(C), solver="cholesky").fit(scaler.transform(X[:, :m]),
                                                                               Y.astype(np.int64))
        np.testing.assert_allclose(fit.mean, scaler.mean_, rtol=1e-12)
        np.testing.assert_allclose(fit.scale, scaler.scale_, rtol=1e-12)
        np.testing.assert_allclose(fit.coef, reference.coef_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(fit.intercept, reference.intercept_, rtol=1e-6, atol=1e-9)
    fits = ridge_fits(X, Y, [(n_features, C) for C in (5e-4, 0.05, 5.0)])
    np.testing.assert_allclose(fits[0].coef[4], 0.0, atol=1e-12)  # a label no row carries: a constant head
    assert fits[0].intercept[4] == pytest.approx(-1.0)
    # a larger C is a weaker penalty: larger weights
    norms = [np.linalg.norm(fit.coef) for fit in fits]
    assert norms[0] < norms[1] < norms[2]


@pytest.mark.parametrize("n_rows, n_features", [(120, 30), (40, 200)], ids=["primal", "dual"])
def test_without_refinement_the_float64_factorisation_gives_the_same_fits(monkeypatch, n_rows, n_features):
    """The systems are factorised in float32 and the solutions refined in float64 (``stc._ridge._solve``); where the
    refinement does not converge in its steps (none allowed here), or the float32 factorisation fails, a float64
    factorisation solves them: the same weights."""
    X, Y = _labels(n_rows, n_features, seed=6)
    members = [(n_features, 5e-4), (n_features // 2, 0.05), (n_features, 5.0)]
    refined = ridge_fits(X, Y, members)
    monkeypatch.setattr("stc._ridge.REFINEMENT_STEPS", 0)
    unrefined = ridge_fits(X, Y, members)
    monkeypatch.undo()
    monkeypatch.setattr("stc._ridge._factor", lambda single, alpha: (None, True))  # float32 not positive definite
    for a, b, c in zip(refined, unrefined, ridge_fits(X, Y, members), strict=True):
        for other in (b, c):
            np.testing.assert_allclose(a.coef, other.coef, rtol=1e-8, atol=1e-11)
            np.testing.assert_allclose(a.intercept, other.intercept, rtol=1e-8, atol=1e-11)


def test_the_duals_float32_gram_matrix_built_block_by_block_is_each_prefixs(monkeypatch):
    """The dual factorises a float32 Gram matrix cast and added ``GRAM_BLOCK`` columns at a time (films readouts are
    thousands of columns wide, the other tests' a few hundred): with blocks that split a prefix and straddle two, what
    each (prefix, C) factorises is that prefix's Gram matrix. (The fits alone would not show a wrong one: the
    refinement against the float64 columns corrects the solution, at the cost of more steps.)"""
    import stc._ridge as ridge

    X, Y = _labels(40, 200, seed=7)
    members = [(200, 5e-4), (61, 0.05), (200, 5.0), (45, 5e-4)]
    factorised, factor = [], ridge._factor
    monkeypatch.setattr("stc._ridge.GRAM_BLOCK", 7)
    monkeypatch.setattr("stc._ridge._factor", lambda single, alpha: factorised.append(single.copy())
                        or factor(single, alpha))
    fits = ridge_fits(X, Y, members)
    Z = ridge._prepared(X, Y)[1]
    widths = [45, 61, 200, 200]  # the dual's order: by width, then C
    assert len(factorised) == len(widths)
    for m, single in zip(widths, factorised, strict=True):
        assert single.dtype == np.float32
        np.testing.assert_allclose(single, Z[:, :m] @ Z[:, :m].T, rtol=1e-5, atol=1e-3 * m)
    for (m, C), fit in zip(members, fits, strict=True):
        scaler = StandardScaler().fit(X[:, :m])
        reference = RidgeClassifier(alpha=ridge_alpha(C), solver="cholesky").fit(scaler.transform(X[:, :m]),
                                                                               Y.astype(np.int64))
        np.testing.assert_allclose(fit.coef, reference.coef_, rtol=1e-6, atol=1e-9)


def test_the_duals_refinement_reads_the_columns_block_by_block_and_reaches_float64_without_refactorising(
        monkeypatch):
    """The dual's refinement forms ``Z (Z' x)`` ``PRODUCT_BLOCK`` columns at a time: with blocks that do not divide
    the width it is that product, and every wider-than-rows fit converges from its float32 factor, with no float64
    factorisation (the fall-back, which would hide a wrong product: it solves the system anew)."""
    import stc._ridge as ridge

    monkeypatch.setattr("stc._ridge.PRODUCT_BLOCK", 7)
    rng = np.random.default_rng(0)
    Z, x = np.asfortranarray(rng.normal(size=(30, 52))), rng.normal(size=(30, 3))
    np.testing.assert_allclose(ridge._columns_product(Z, x), Z @ (Z.T @ x), rtol=1e-12)
    factored, cho_factor = [], ridge.cho_factor
    monkeypatch.setattr("stc._ridge.cho_factor", lambda a, **kw: factored.append(a.dtype) or cho_factor(a, **kw))
    X, Y = _labels(40, 200, seed=3)
    members = [(200, 5e-4), (150, 0.05), (90, 5.0)]
    fits = ridge_fits(X, Y, members)
    assert factored == [np.float32] * 3
    for (m, C), fit in zip(members, fits, strict=True):
        scaler = StandardScaler().fit(X[:, :m])
        reference = RidgeClassifier(alpha=ridge_alpha(C), solver="cholesky").fit(scaler.transform(X[:, :m]),
                                                                               Y.astype(np.int64))
        np.testing.assert_allclose(fit.coef, reference.coef_, rtol=1e-6, atol=1e-9)


def test_the_fitted_head_and_its_pipeline_give_the_same_decisions():
    X, Y = _labels(80, 12, seed=1)
    C = MULTILABEL_CS[3]
    pipeline = fit_head_estimator("linear", C, 0, None, X, Y, multilabel=True)
    head = head_from_pipeline(pipeline, np.arange(5))
    (direct,) = multilabel_heads(X, Y, [(12, C)], np.arange(5))
    new = np.random.default_rng(2).normal(size=(7, 12))
    np.testing.assert_allclose(head.decision(new), direct.decision(new), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pipeline.decision_function(new), direct.decision(new), rtol=1e-9, atol=1e-9)
    assert pipeline.named_steps["ridge"].alpha == pytest.approx(ridge_alpha(C))


def test_a_multi_label_head_needs_a_C():
    with pytest.raises(ValueError, match="positive C"):
        make_final_classifier(None, multilabel=True)


@pytest.mark.parametrize("large_chain", [None, 0], ids=["side-by-side", "one-at-a-time"])
def test_the_search_scores_each_candidate_as_its_own_fit_would_while_sharing_one_gram_per_chain(tmp_path,
                                                                                             monkeypatch,
                                                                                             large_chain):
    """Label sets: candidates are fitted in chains of nested column sets (``stc.aggregate._nested_chains``); each
    candidate's held-out decisions are still those of a head fitted on its own columns at its own C, whether the
    chains run side by side or (large ones, every chain with ``LARGE_CHAIN`` 0) one at a time."""
    if large_chain is not None:
        monkeypatch.setattr("stc.aggregate.LARGE_CHAIN", large_chain)
    import json

    from stc.aggregate import Candidate, Split, _distinct_jobs, _nested_chains, candidate_columns, evaluate_candidates
    from stc.probe import fit_probes
    from stc.store import FORMAT_VERSION, ActivationStore

    rng = np.random.default_rng(4)
    n = 160
    arrays = {f"hidden.L{layer}.mean": rng.normal(size=(n, 25)) for layer in (1, 2, 3)}
    Y = np.zeros((n, 3), dtype=np.uint8)
    Y[:, 0] = arrays["hidden.L1.mean"][:, 3] > 0.3
    Y[:, 1] = arrays["hidden.L2.mean"][:, 5] + arrays["hidden.L3.mean"][:, 9] > 0
    Y[:, 2] = rng.random(n) < 0.2
    (tmp_path / "arrays").mkdir()
    for key, values in arrays.items():
        np.save(tmp_path / "arrays" / f"{key}.npy", values.astype(np.float32))
    (tmp_path / "meta.json").write_text(json.dumps({"format_version": FORMAT_VERSION, "n_texts": n, "arrays": {
        key: {"dim": 25, "dtype": "float32"} for key in arrays}}))
    store = ActivationStore(tmp_path)
    halves = np.arange(n) % 2 == 0
    splits = [Split(np.flatnonzero(train), np.flatnonzero(~train),
                    fit_probes(store, store.keys, Y, np.flatnonzero(train), np.flatnonzero(~train), Cs=(0.05, 0.5)))
              for train in (halves, ~halves)]
    dims = {key: 25 for key in arrays}
    Cs = MULTILABEL_CS[5], MULTILABEL_CS[8]
    candidates = ([Candidate("sparse", ("hidden",), ("mean",), eta, 3, Cs[0], 1) for eta in (0.2, 0.5, 0.9)]
                  + [Candidate("sparse", ("hidden",), ("mean",), 0.5, k, C, 2) for k in (1, 2, 3) for C in Cs]
                  + [Candidate("dense", ("hidden",), ("mean",), None, 3, C, 2, "hidden.L3.mean") for C in Cs]
                  + [Candidate("hybrid", ("hidden",), ("mean",), 0.5, 3, Cs[1], 2, "hidden.L2.mean")])
    evaluations = evaluate_candidates(candidates, splits, lambda key, columns: store.load(key, columns=columns), Y,
                                      dims)
    assert len(evaluations) == len(_distinct_jobs(candidates, splits, dims)) >= 8
    for evaluation in evaluations:
        candidate, expected = evaluation.candidate, []
        for split in splits:
            columns = candidate_columns(candidate, split.probes, dims)
            X = np.hstack([store.load(key, columns=indices) for key, indices in columns.items()])
            pipeline = fit_head_estimator("linear", candidate.C, 0, None, X[split.train_rows], Y[split.train_rows],
                                          multilabel=True)
            expected.append(head_from_pipeline(pipeline, np.arange(3)).decision(X[split.val_rows]))
        np.testing.assert_allclose(evaluation.decisions, np.vstack(expected), rtol=1e-6, atol=1e-8)
    # and the fits were shared: fewer chains than distinct column sets on each split
    jobs = _distinct_jobs(candidates, splits, dims)
    for s in range(2):
        column_sets = {tuple((k, v.tobytes()) for k, v in job[1][s].items()) for job in jobs}
        assert len(_nested_chains(jobs, s)) < len(column_sets)


@pytest.mark.parametrize("n_rows, n_features, n_held", [(120, 30, 9), (40, 200, 9), (40, 200, 300)],
                         ids=["primal", "dual-by-products", "dual-by-weights"])
def test_the_decisions_are_those_of_the_fitted_heads(n_rows, n_features, n_held):
    """Held-out decisions equal the fitted heads' on every route: the primal's weights; in the dual the held-out
    rows' products with the training rows (few held-out rows) or each member's weights (many)."""
    from stc._ridge import ridge_decisions

    X, Y = _labels(n_rows, n_features, seed=3)
    held = np.random.default_rng(5).normal(size=(n_held, n_features)) * 2.0
    members = [(n_features, 5e-4), (n_features // 2, 0.05), (5, 5.0), (n_features, 0.05)]
    heads = multilabel_heads(X, Y, members, np.arange(5))
    for (m, _), head, decision in zip(members, heads, ridge_decisions(X, Y, held, members), strict=True):
        np.testing.assert_allclose(decision, head.decision(held[:, :m]), rtol=1e-8, atol=1e-9)
