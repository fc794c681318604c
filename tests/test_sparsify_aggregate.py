"""η selection, probes and the aggregation search on planted problems with known answers."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from stc.aggregate import CandidateEvaluator, Split, feature_names, kept_columns
from stc.folds import estimate_blocks
from stc.selection import Selector, configuration_rows
from stc.probe import fit_probe_paths, fit_probes
from stc.protocol import FitOptions, KFolds
from stc.search import SearchSpace, TwoStageSearch
from stc.sparsify import select_neurons
from stc.store import FORMAT_VERSION, ActivationStore


def test_select_neurons_keeps_the_shortest_prefix_reaching_eta():
    importance = np.array([0.0, 5.0, 1.0, 3.0, 1.0])  # total 10; sorted 5, 3, 1, 1
    assert select_neurons(importance, 0.5).tolist() == [1]
    assert select_neurons(importance, 0.51).tolist() == [1, 3]
    assert select_neurons(importance, 0.8).tolist() == [1, 3]
    assert select_neurons(importance, 0.85).tolist() == [1, 2, 3]  # tie 1 vs 1 goes to the lower index
    assert select_neurons(importance, 1.0).tolist() == [1, 2, 3, 4]


def test_a_probe_with_all_zero_weights_keeps_nothing():
    assert select_neurons(np.zeros(7), 0.5).size == 0


@pytest.mark.parametrize("eta", [0.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_eta_out_of_range_is_refused(eta):
    with pytest.raises(ValueError, match="eta must be a number in"):
        select_neurons(np.ones(3), eta)


def _write_store(tmp_path, arrays: dict[str, np.ndarray]):
    """A complete store on disk holding the given arrays."""
    (tmp_path / "arrays").mkdir()
    for key, values in arrays.items():
        np.save(tmp_path / "arrays" / f"{key}.npy", values.astype(np.float32))
    n_texts = len(next(iter(arrays.values())))
    meta = {"format_version": FORMAT_VERSION, "n_texts": n_texts,
            "arrays": {key: {"dim": values.shape[1], "dtype": "float32"} for key, values in arrays.items()}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return ActivationStore(tmp_path)


def _planted(n_classes: int, seed: int = 0):
    """Three layers of 40 noise neurons; the label is carried by hidden.L1 neuron 7 and hidden.L2 neuron 23."""
    rng = np.random.default_rng(seed)
    n = 900
    y = rng.integers(0, n_classes, size=n)
    arrays = {f"hidden.L{layer}.mean": rng.normal(size=(n, 40)) for layer in range(3)}
    if n_classes == 2:
        signal = 2.0 * y - 1.0
        arrays["hidden.L1.mean"][:, 7] += 1.5 * signal
        arrays["hidden.L2.mean"][:, 23] += 1.5 * signal
    else:  # each class shifts the two informative neurons in its own direction
        directions = np.array([[3.0, 0.0], [-1.5, 2.6], [-1.5, -2.6]])
        arrays["hidden.L1.mean"][:, 7] += directions[y, 0]
        arrays["hidden.L2.mean"][:, 23] += directions[y, 1]
    return arrays, y


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("solver", ["auto", "liblinear"])
def test_planted_informative_neurons_are_the_ones_kept(tmp_path, n_classes, solver):
    if solver == "liblinear" and n_classes == 3:
        solver = "saga"
    arrays, y = _planted(n_classes)
    store = _write_store(tmp_path, arrays)
    train, val = np.arange(600), np.arange(600, 900)
    probes = fit_probes(store, store.keys, y, train, val, Cs=(0.001, 0.01, 0.1), solver=solver)
    chance = 1.0 / n_classes
    assert probes["hidden.L1.mean"].val_score > chance + 0.2
    assert probes["hidden.L0.mean"].val_score < chance + 0.1
    chosen = kept_columns(probes, ("hidden",), ("mean",), eta=0.5, exit_layer=2)
    assert chosen["hidden.L1.mean"].tolist() == [7]
    assert chosen["hidden.L2.mean"].tolist() == [23]
    # The pure-noise layer's probe may fit some noise, but never more than a weak share of a real signal.
    assert probes["hidden.L0.mean"].importance.sum() < probes["hidden.L1.mean"].importance.sum()
    informative = {key: chosen[key] for key in ("hidden.L1.mean", "hidden.L2.mean")}
    assert feature_names(informative) == ["hidden.L1.mean.7", "hidden.L2.mean.23"]


def test_a_neuron_of_almost_no_spread_is_never_kept_however_well_it_separates(tmp_path):
    # Like MiniLM's FFN at the first token: values ~3e-6 that vary by ~1e-10, 1e-10 of the other neurons' spread.
    # Standardised, it separates the classes perfectly; its variation is float32 rounding, which changes with the
    # other texts of a batch, so keeping it would make predictions depend on the batch.
    arrays, y = _planted(2)
    arrays["hidden.L1.mean"][:, 3] = 3e-6 + 1e-10 * (2.0 * y - 1.0)
    store = _write_store(tmp_path, arrays)
    train, val = np.arange(600), np.arange(600, 900)
    probes = fit_probes(store, store.keys, y, train, val, Cs=(0.001, 0.01, 0.1, 1.0))
    assert probes["hidden.L1.mean"].importance[3] == 0.0
    assert kept_columns(probes, ("hidden",), ("mean",), eta=0.99, exit_layer=2)["hidden.L1.mean"].tolist() == [7]


def test_search_prefers_the_shallowest_exit_that_holds_the_signal(tmp_path):
    rng = np.random.default_rng(1)
    n = 900
    y = rng.integers(0, 2, size=n)
    arrays = {f"hidden.L{layer}.mean": rng.normal(size=(n, 30)) for layer in range(4)}
    arrays["hidden.L1.mean"][:, 4] += 2.0 * (2.0 * y - 1.0)  # everything is known after layer 1
    store = _write_store(tmp_path, arrays)
    train, val = np.arange(600), np.arange(600, 900)
    probes = fit_probes(store, store.keys, y, train, val, Cs=(0.001, 0.01))

    selector = Selector(y[val], estimate_blocks(y[val], 0), "accuracy", "best")
    evaluate = CandidateEvaluator([Split(train, val, probes)], store, y, {key: store.dim(key) for key in store.keys})
    space = SearchSpace([("hidden",)], [("mean",)], etas=(0.5, 0.9), exit_layers=(1, 2, 3), Cs=(0.1, 1.0))
    searched = TwoStageSearch(space, evaluate, selector).run()
    table = configuration_rows(selector, searched.table)
    best = table[searched.chosen]
    assert best.exit_layer == 1
    assert best.val_score >= max(row.val_score for row in table)
    assert {row.stage for row in table} == {1, 2}


def test_probes_work_with_more_neurons_than_texts(tmp_path):
    """Small training sets are common: n < d makes the probe Hessian singular, which must not break the fit."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=80)
    X = rng.normal(size=(80, 300))
    X[:, 11] += 2.5 * (2.0 * y - 1.0)
    store = _write_store(tmp_path, {"hidden.L1.mean": X})
    probes = fit_probes(store, store.keys, y, np.arange(50), np.arange(50, 80))
    assert probes["hidden.L1.mean"].val_score > 0.8
    assert select_neurons(probes["hidden.L1.mean"].importance, 0.3).tolist() == [11]


@pytest.mark.parametrize("solver", ["auto", "liblinear"])
def test_probes_fitted_side_by_side_equal_probes_fitted_one_by_one(tmp_path, solver):
    """Side by side: stc's solver on threads; liblinear (one process-wide random state) in processes."""
    arrays, y = _planted(3 if solver == "auto" else 2, seed=4)
    store = _write_store(tmp_path, arrays)
    train, val = np.arange(600), np.arange(600, 900)
    one_by_one = fit_probes(store, store.keys, y, train, val, solver=solver, n_jobs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threaded = fit_probes(store, store.keys, y, train, val, solver=solver, n_jobs=-1)
    assert not [w for w in caught if "converge" in str(w.message)]  # expected solver chatter stays silenced
    assert list(threaded) == list(one_by_one)
    for key, probe in one_by_one.items():
        assert threaded[key].C == probe.C and threaded[key].scores_by_C == probe.scores_by_C
        if solver == "liblinear":  # the same seeded fit in another process: the same bits
            assert np.array_equal(threaded[key].coef, probe.coef)
        else:
            np.testing.assert_allclose(threaded[key].coef, probe.coef, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("labels", ["binary", "three classes", "liblinear", "label sets"])
def test_a_path_stopped_at_a_C_gives_the_whole_paths_first_probes_bit_for_bit(tmp_path, labels):
    """The final probes solve their grid only up to the C the folds chose: the larger Cs cost the most."""
    arrays, y = _planted(2 if labels in ("binary", "liblinear") else 3, seed=5)
    if labels == "label sets":
        y = np.stack([y == 1, y != 0], axis=1).astype(np.uint8)
    store = _write_store(tmp_path, arrays)
    solver = "liblinear" if labels == "liblinear" else "auto"
    train, val = np.arange(600), np.arange(600, 900)
    whole = fit_probe_paths(store, store.keys, y, train, val, solver=solver)
    last = {"hidden.L0.mean": 0, "hidden.L1.mean": 2, "hidden.L2.mean": 3}
    stopped = fit_probe_paths(store, store.keys, y, train, val, solver=solver, last_C_index=last)
    for key, index in last.items():
        assert len(stopped[key].coefs) == index + 1 and stopped[key].Cs == whole[key].Cs
        assert stopped[key].val_scores == whole[key].val_scores[:index + 1]
        assert np.array_equal(stopped[key].coefs, whole[key].coefs[:index + 1])
        assert np.array_equal(stopped[key].intercepts, whole[key].intercepts[:index + 1])
    with pytest.raises(IndexError, match="C index 1 not solved"):
        stopped["hidden.L0.mean"].at(1)
    with pytest.raises(ValueError, match="last_C_index"):
        fit_probe_paths(store, store.keys, y, train, val, last_C_index={"hidden.L0.mean": 4})


def test_the_final_probes_are_the_whole_paths_probes_at_the_folds_C(tmp_path):
    arrays, y = _planted(2, seed=6)
    store = _write_store(tmp_path, arrays)
    protocol = KFolds(y, 3, seed=0, rule="one_se", given=False, kinds=("sparse",))
    options = FitOptions()
    splits = protocol.fit_splits(store, store.keys, options)
    final = protocol.final_probes(store, store.keys, options, splits)
    whole = fit_probe_paths(store, store.keys, y, np.arange(len(y)), np.arange(0))
    chosen = set()
    for key, probe in final.items():
        means = np.mean([split.probes[key].scores_by_C for split in splits], axis=0)
        index = int(np.argmax(means))
        chosen.add(index)
        assert probe.C == whole[key].Cs[index] and probe.Cs == whole[key].Cs
        assert probe.val_score == means[index] and probe.scores_by_C == means.tolist()
        assert np.array_equal(probe.coef, whole[key].coefs[index])
        assert np.array_equal(probe.intercept, whole[key].intercepts[index])
    assert chosen != {len(whole["hidden.L0.mean"].Cs) - 1}  # some path stopped before the grid's end
