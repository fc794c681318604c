"""stc._stratify: iterative stratification (Sechidis et al. 2011) of multi-label indicator matrices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import KFold, cross_validate

from stc._stratify import MultilabelStratifiedKFold, iterative_stratification, multilabel_train_test_split


def planted_skewed_labels(n_texts: int = 400, seed: int = 0) -> np.ndarray:
    """Ten labels from 40 % of the texts down to 1 %, the rarer ones riding on the common ones (as genres do)."""
    rng = np.random.default_rng(seed)
    prevalence = np.array([0.40, 0.30, 0.20, 0.12, 0.08, 0.05, 0.04, 0.03, 0.02, 0.01])
    labels = rng.random((n_texts, len(prevalence))) < prevalence
    labels[:, 6] |= labels[:, 0] & (rng.random(n_texts) < 0.05)  # co-occurring labels
    labels[:, 9] &= labels[:, 1] | labels[:, 2] | (rng.random(n_texts) < 0.5)
    return labels


def one_hot(sizes: list[int], seed: int = 0) -> np.ndarray:
    """Texts that carry exactly one label each, label ``l`` carried by ``sizes[l]`` texts, in shuffled order."""
    rows = np.repeat(np.eye(len(sizes), dtype=bool), sizes, axis=0)
    return rows[np.random.default_rng(seed).permutation(len(rows))]


def stratified_folds(y: np.ndarray, n_splits: int, seed: int = 0) -> list[np.ndarray]:
    splitter = MultilabelStratifiedKFold(n_splits, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(y.shape[0]), y)]



def deviation_from_share(y: np.ndarray, folds: list[np.ndarray]) -> np.ndarray:
    """|count of each label in each test fold - the label's count / number of folds|, shape (folds, labels)."""
    return np.abs(np.array([y[fold].sum(axis=0) for fold in folds]) - y.sum(axis=0) / len(folds))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 60).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=n, max_size=n),
    st.integers(2, min(6, n)), st.integers(0, 2**32 - 1))))
def test_every_text_is_held_out_exactly_once_and_no_fold_is_empty(case):
    rows, n_splits, seed = case
    y = np.array(rows, dtype=bool)
    splits = list(MultilabelStratifiedKFold(n_splits, random_state=seed).split(np.zeros(len(y)), y))
    assert len(splits) == n_splits
    held_out = np.concatenate([test for _, test in splits])
    assert sorted(held_out.tolist()) == list(range(len(y)))
    for train, test in splits:
        assert len(test) > 0
        assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(y)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_splits", [2, 3, 5, 10])
def test_folds_are_of_near_equal_size(n_splits, seed):
    y = planted_skewed_labels(1000, seed)
    y[~y.any(axis=1), 0] = True  # every text labelled: no unlabelled texts left to even the sizes out
    sizes = [len(fold) for fold in stratified_folds(y, n_splits, seed)]
    # not exact, as in the paper: measured here at most 8 % off the share (10 folds of 100)
    assert max(abs(size - 1000 / n_splits) for size in sizes) <= 0.1 * 1000 / n_splits, sizes


@pytest.mark.parametrize("n_splits", [2, 3, 5, 7])
def test_each_label_is_within_one_of_its_share_when_no_text_carries_two(n_splits):
    y = one_hot([97, 41, 13, 6, 3, 1])  # each label's texts are all unplaced when its turn comes
    assert deviation_from_share(y, stratified_folds(y, n_splits)).max() < 1


@pytest.mark.parametrize("proportions", [(0.7, 0.1, 0.2), (0.8, 0.1, 0.1), (0.5, 0.5), (0.9, 0.1)])
def test_each_label_is_within_one_of_its_share_for_any_proportions(proportions):
    y = one_hot([311, 97, 41, 13, 6, 3, 1])
    part_of = iterative_stratification(y, proportions, seed=3)
    counts = np.array([y[part_of == part].sum(axis=0) for part in range(len(proportions))])
    assert np.abs(counts - np.outer(proportions, y.sum(axis=0))).max() < 1


@pytest.mark.parametrize("seed", range(5))
def test_the_rarest_label_is_within_one_of_its_share_with_co_occurring_labels(seed):
    y = planted_skewed_labels(400, seed)[:, :8]  # the eight labels of 3 % and more
    rare = np.zeros((400, 1), dtype=bool)
    rare[np.flatnonzero(y[:, 0])[:7]] = True  # 7 texts, all carrying the commonest label too
    y = np.hstack([y, rare])
    assert np.sum(y.sum(axis=0) <= 7) == 1  # the one label placed first, before the commonest places them
    assert deviation_from_share(y, stratified_folds(y, 5, seed))[:, -1].max() < 1


def test_stratification_keeps_label_shares_far_better_than_a_random_kfold():
    iterative, random = [], []
    for seed in range(5):
        y = planted_skewed_labels(400, seed)
        iterative.append(deviation_from_share(y, stratified_folds(y, 5, seed)).mean())
        shuffled = [test for _, test in KFold(5, shuffle=True, random_state=seed).split(y)]
        random.append(deviation_from_share(y, shuffled).mean())
    assert np.mean(random) > 1  # the control: a random split does miss the shares (by 1.7 texts on average)
    assert np.mean(iterative) < np.mean(random) / 3, (iterative, random)


def test_same_seed_gives_the_same_folds_and_another_seed_other_folds():
    y = planted_skewed_labels(300)
    first, again, other = (stratified_folds(y, 5, seed) for seed in (7, 7, 8))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_a_label_with_fewer_texts_than_folds_is_spread_one_per_fold():
    y = np.zeros((50, 2), dtype=bool)
    y[:25, 0] = True
    y[[3, 30, 41], 1] = True  # 3 texts, 5 folds
    folds = stratified_folds(y, 5)
    assert sorted(int(y[fold, 1].sum()) for fold in folds) == [0, 0, 1, 1, 1]


def test_texts_without_labels_fill_the_folds_evenly():
    y = np.zeros((23, 3), dtype=bool)
    assert sorted(len(fold) for fold in stratified_folds(y, 4)) == [5, 6, 6, 6]


def test_it_is_a_scikit_learn_cross_validator():
    y = planted_skewed_labels(100)
    folds = MultilabelStratifiedKFold(n_splits=4, random_state=1)
    result = cross_validate(DummyClassifier(strategy="most_frequent"), np.zeros((100, 1)), y, cv=folds)
    assert len(result["test_score"]) == 4 == folds.get_n_splits()
    assert repr(folds) == "MultilabelStratifiedKFold(n_splits=4, random_state=1)"


def test_a_sparse_indicator_matrix_gives_the_same_folds():
    from scipy import sparse

    y = planted_skewed_labels(200)
    dense, sparse_ = stratified_folds(y, 3), stratified_folds(sparse.csr_matrix(y.astype(np.int8)), 3)
    assert all(np.array_equal(a, b) for a, b in zip(dense, sparse_))


def test_train_test_split_keeps_each_label_share_and_covers_every_text():
    y = one_hot([120, 45, 9, 2])
    train, test = multilabel_train_test_split(y, 0.25, seed=0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(y)))
    assert np.abs(y[test].sum(axis=0) - 0.25 * y.sum(axis=0)).max() < 1
    assert np.array_equal(train, np.sort(train)) and np.array_equal(test, np.sort(test))


@pytest.mark.parametrize(("y", "problem"), [
    ([[0, 1], [2, 0], [1, 1]], r"only 0 and 1; y\[1, 0\] is 2"),
    ([0, 1, 1], r"2-D 0/1 indicator matrix .* shape \(3,\)"),
    (np.zeros((0, 3)), "no rows"),
    ([["a", "b"], ["c", "d"]], "MultiLabelBinarizer"),
])
def test_a_matrix_that_is_not_an_indicator_is_refused_naming_the_problem(y, problem):
    with pytest.raises(ValueError, match=problem):
        iterative_stratification(y, (0.5, 0.5), seed=0)


@pytest.mark.parametrize(("n_splits", "problem"), [(1, "at least 2"), (2.0, "at least 2"), (11, "more than the 10")])
def test_a_bad_number_of_folds_is_refused(n_splits, problem):
    with pytest.raises(ValueError, match=problem):
        stratified_folds(np.ones((10, 2), dtype=bool), n_splits)


def test_split_without_y_is_refused():
    with pytest.raises(ValueError, match="needs y"):
        MultilabelStratifiedKFold(2).split(np.zeros(4))


@pytest.mark.parametrize("proportions", [(1.0,), (0.5, 0.6), (0.0, 1.0), (1.2, -0.2)])
def test_proportions_must_be_positive_and_sum_to_one(proportions):
    with pytest.raises(ValueError, match="proportions"):
        iterative_stratification(np.ones((4, 1)), proportions, seed=0)


@pytest.mark.parametrize("test_size", [0, 1, 1.5, True])
def test_a_test_size_outside_zero_to_one_is_refused(test_size):
    with pytest.raises(ValueError, match="test_size"):
        multilabel_train_test_split(np.ones((4, 1)), test_size, seed=0)


def test_a_seed_that_is_not_an_int_is_refused():
    with pytest.raises(TypeError, match="seed must be an int"):
        iterative_stratification(np.ones((4, 1)), (0.5, 0.5), seed=None)
