"""Extraction on tiny models of every family: hidden states, FFN neurons, poolings, batching and windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stc.extract import TokenizedTexts, all_keys, extract_features, pool_tokens, tokenize
from ._helpers import FAMILIES

TEXTS = [
    "A quiet, moving film.",
    "The plot never takes off, and the jokes land with a thud in nearly every scene of this long movie.",
    "Fine.",
    "An ambitious story about memory, grief and the small rituals that get a family through a hard winter.",
    "Bad.",
    "It is neither as clever nor as funny as it thinks it is.",
]
POOLINGS = ("mean", "max", "first", "last")


def _padded_batch(backbone, texts):
    encoded = backbone.tokenizer(texts, padding=True, truncation=True, max_length=backbone.max_length,
                                 return_tensors="pt")
    return encoded["input_ids"], encoded["attention_mask"]


def _ffn_inputs(backbone, ids, mask):
    """The input of each block's MLP, captured by hooks on the MLP modules (not stc's sites)."""
    captured, handles = {}, []
    family = backbone.layer_map.family
    for index, block in enumerate(backbone.layer_map.blocks):
        mlp = {"gpt2": "mlp", "llama": "mlp", "distilbert": "ffn"}.get(family, "intermediate")
        handles.append(block.get_submodule(mlp).register_forward_pre_hook(
            lambda module, args, index=index: captured.__setitem__(index + 1, args[0])))
    with torch.no_grad():
        output = backbone.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    for handle in handles:
        handle.remove()
    return output.hidden_states, captured


def _recompute_ffn(backbone, layer, x):
    """FFN neuron activations recomputed by hand from the MLP input."""
    block = backbone.layer_map.blocks[layer - 1]
    family = backbone.layer_map.family
    if family == "gpt2":
        return block.mlp.act(block.mlp.c_fc(x))
    if family == "llama":
        return block.mlp.act_fn(block.mlp.gate_proj(x)) * block.mlp.up_proj(x)
    if family == "distilbert":
        return block.ffn.activation(block.ffn.lin1(x))
    return block.intermediate.intermediate_act_fn(block.intermediate.dense(x))


@pytest.mark.parametrize("family", FAMILIES)
def test_hidden_and_ffn_match_the_model_for_every_pooling(tiny_backbones, family):
    backbone = tiny_backbones[family]
    keys = all_keys(backbone.num_layers, ("hidden", "ffn"), POOLINGS)
    # A small token budget forces several length-sorted batches.
    features = extract_features(backbone, TEXTS, keys, token_budget=40)
    ids, mask = _padded_batch(backbone, TEXTS)
    hidden_states, ffn_inputs = _ffn_inputs(backbone, ids, mask)
    assert len(hidden_states) == backbone.num_layers + 1
    with torch.no_grad():
        for layer in range(backbone.num_layers + 1):
            for pooling in POOLINGS:
                expected = pool_tokens(hidden_states[layer], mask, pooling).numpy()
                np.testing.assert_allclose(features[f"hidden.L{layer}.{pooling}"], expected, rtol=1e-4, atol=1e-5)
        for layer in range(1, backbone.num_layers + 1):
            neurons = _recompute_ffn(backbone, layer, ffn_inputs[layer])
            assert neurons.shape[-1] == backbone.ffn_size
            for pooling in POOLINGS:
                expected = pool_tokens(neurons, mask, pooling).numpy()
                np.testing.assert_allclose(features[f"ffn.L{layer}.{pooling}"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
def test_pool_tokens_equals_hand_computation_under_either_padding(side):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 4, generator=generator)
    lengths = [6, 3, 1]
    mask = torch.zeros(3, 6, dtype=torch.long)
    for row, length in enumerate(lengths):
        if side == "right":
            mask[row, :length] = 1
        else:
            mask[row, 6 - length:] = 1
    for row, length in enumerate(lengths):
        real = x[row, :length] if side == "right" else x[row, 6 - length:]
        torch.testing.assert_close(pool_tokens(x, mask, "mean")[row], real.mean(0))
        torch.testing.assert_close(pool_tokens(x, mask, "max")[row], real.max(0).values)
        torch.testing.assert_close(pool_tokens(x, mask, "first")[row], real[0])
        torch.testing.assert_close(pool_tokens(x, mask, "last")[row], real[-1])


@pytest.mark.parametrize("lengths", [[7, 7, 5, 5, 5, 2], [2, 5, 7, 5, 7, 5], [7, 7, 7, 7, 7, 7], [4, 3, 3, 1, 1, 1]])
@pytest.mark.parametrize("side", ["left", "right"])
def test_max_pooling_reads_only_real_tokens_for_sorted_unsorted_and_tied_lengths(lengths, side):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(len(lengths), 7, 5, generator=generator) - 100.0  # padding would win if it were read
    mask = torch.zeros(len(lengths), 7, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1 if side == "right" else 0
        if side == "left":
            mask[row, 7 - length:] = 1
        x[row][mask[row] == 0] = 1000.0
    expected = torch.stack([x[row][mask[row] == 1].max(0).values for row in range(len(lengths))])
    torch.testing.assert_close(pool_tokens(x, mask, "max"), expected)


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="unknown pooling 'median'"):
        pool_tokens(torch.zeros(1, 2, 3), torch.ones(1, 2), "median")


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_batching_and_order_do_not_change_results(tiny_backbones, family):
    backbone = tiny_backbones[family]
    keys = ["hidden.L2.mean", "ffn.L1.max", "hidden.L3.last"]
    together = extract_features(backbone, TEXTS, keys, token_budget=10_000)
    one_by_one = extract_features(backbone, TEXTS, keys, token_budget=1)
    reversed_order = extract_features(backbone, TEXTS[::-1], keys, token_budget=64)
    for key in keys:
        np.testing.assert_allclose(together[key], one_by_one[key], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(together[key], reversed_order[key][::-1], rtol=1e-4, atol=1e-5)


def _windows_of_lengths(lengths) -> TokenizedTexts:
    n = len(lengths)
    return TokenizedTexts([[1] * length for length in lengths], np.arange(n), np.zeros(n, dtype=np.int64),
                          np.ones(n, dtype=np.int64))


@pytest.mark.parametrize("budget", [1, 100, 10_000])
def test_batches_hold_every_row_once_within_the_budget_and_the_padding_bound(budget):
    lengths = np.random.default_rng(0).integers(1, 70, size=300)
    batches = _windows_of_lengths(lengths).batches(budget)
    assert sorted(np.concatenate(batches).tolist()) == list(range(300))
    for rows in batches:
        longest = lengths[rows].max()
        assert len(rows) == 1 or len(rows) * longest <= budget
        # no row padded by more than a quarter of its length or 8 tokens (whichever is more)
        assert (longest - lengths[rows] <= np.maximum(0.25 * lengths[rows], 8)).all()


def test_a_small_mixed_batch_is_split_by_length_and_a_uniform_one_is_not():
    planted = [60, 58, 50, 45, 40, 30, 26, 20, 12, 10, 5, 4]
    batches = _windows_of_lengths(planted).batches(8192)
    assert [np.asarray(planted)[rows].tolist() for rows in batches] == [[60, 58, 50], [45, 40], [30, 26],
                                                                         [20, 12], [10, 5, 4]]
    assert len(_windows_of_lengths([30] * 64).batches(8192)) == 1


@pytest.mark.parametrize("windows", [False, True])
def test_columns_select_the_same_values_bit_for_bit_for_every_pooling(tiny_backbones, windows):
    # a max pools only the selected columns, the others select after pooling: either way the same bits as
    # selecting from every column (a bundle's task reads its neurons from a wider union than its own model does)
    backbone = tiny_backbones["gpt2"]
    keys = [f"{site}.{pooling}" for site in ("ffn.L2", "hidden.L1") for pooling in POOLINGS]
    settings = {"max_length": 16, "windows": True, "window_overlap": 4} if windows else {}
    full = extract_features(backbone, TEXTS, keys, **settings)
    columns = {key: np.array([3, 0, 17]) if index % 2 else np.array([1, 5, 9, 30]) for index, key in enumerate(keys)}
    part = extract_features(backbone, TEXTS, keys, columns=columns, **settings)
    for key in keys:
        np.testing.assert_array_equal(part[key], full[key][:, columns[key]], err_msg=key)


def test_forward_stops_after_the_deepest_needed_block(tiny_backbones):
    backbone = tiny_backbones["bert"]
    calls = []
    handle = backbone.layer_map.blocks[2].register_forward_hook(lambda *args: calls.append(1))
    try:
        extract_features(backbone, TEXTS, ["hidden.L1.mean", "ffn.L2.max"])
        assert calls == []
        extract_features(backbone, TEXTS, ["hidden.L3.mean"])
        assert calls
    finally:
        handle.remove()


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_windows_pool_across_all_windows_of_a_long_text(tiny_backbones, family):
    backbone = tiny_backbones[family]
    long_text = " ".join(f"word{i} is here and there" for i in range(60))
    texts = [long_text, "short text"]
    keys = [f"hidden.L2.{pooling}" for pooling in POOLINGS]
    features = extract_features(backbone, texts, keys, max_length=32, windows=True, window_overlap=8,
                                token_budget=64)
    tokens = tokenize(backbone, texts, max_length=32, windows=True, window_overlap=8)
    assert tokens.n_windows[0] > 2 and tokens.n_windows[1] == 1
    windows = [torch.tensor([ids]) for ids, owner in zip(tokens.input_ids, tokens.text_index) if owner == 0]
    per_window = []
    with torch.no_grad():
        for ids in windows:
            per_window.append(backbone.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                                             output_hidden_states=True).hidden_states[2][0])
    counts = np.array([len(w) for w in per_window], dtype=np.float64)
    expected_mean = sum(w.sum(0).numpy() for w in per_window) / counts.sum()
    expected_max = np.max([w.max(0).values.numpy() for w in per_window], axis=0)
    np.testing.assert_allclose(features["hidden.L2.mean"][0], expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features["hidden.L2.max"][0], expected_max, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features["hidden.L2.first"][0], per_window[0][0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features["hidden.L2.last"][0], per_window[-1][-1].numpy(), rtol=1e-4, atol=1e-5)


def test_truncation_keeps_the_first_max_length_tokens(tiny_backbones):
    backbone = tiny_backbones["bert"]
    long_text = " ".join(["token"] * 300)
    tokens = tokenize(backbone, [long_text], max_length=20)
    assert len(tokens.input_ids) == 1 and len(tokens.input_ids[0]) == 20


def test_a_layer_outside_the_model_is_a_clear_error(tiny_backbones):
    with pytest.raises(ValueError, match="layer 9 is outside"):
        extract_features(tiny_backbones["bert"], TEXTS, ["hidden.L9.mean"])
