"""The activation store: sharded writes, resume after an interruption, reuse by hash, float16 safety."""

from __future__ import annotations

import numpy as np
import pytest

import stc.store as store_module
from stc.store import ActivationStore, ExtractionSettings, build_store

TEXTS = [f"sentence number {i} says {'good' if i % 2 else 'bad'} things about the film" for i in range(23)]
SETTINGS = ExtractionSettings(representations=("hidden", "ffn"), poolings=("mean", "max"))


def _arrays(store: ActivationStore) -> dict[str, bytes]:
    return {key: (store.path / "arrays" / f"{key}.npy").read_bytes() for key in store.keys}


def test_store_holds_every_key_and_matches_direct_extraction(tiny_backbones, tmp_path):
    from stc.extract import extract_features

    backbone = tiny_backbones["gpt2"]
    store = build_store(backbone, TEXTS, SETTINGS, root=tmp_path, shard_size=5, show_progress_bar=False)
    assert store.n_texts == len(TEXTS) and len(store.keys) == (4 + 3) * 2
    direct = extract_features(backbone, TEXTS, ["ffn.L2.max", "hidden.L0.mean"])
    np.testing.assert_array_equal(store.load("ffn.L2.max"), direct["ffn.L2.max"])
    np.testing.assert_array_equal(store.load("hidden.L0.mean", columns=np.array([1, 4]), rows=np.array([3, 0])),
                                  direct["hidden.L0.mean"][[3, 0]][:, [1, 4]])
    assert not (store.path / "shards").exists()


def test_an_interrupted_extraction_resumes_and_ends_byte_identical(tiny_backbones, tmp_path, monkeypatch):
    backbone = tiny_backbones["bert"]
    reference = build_store(backbone, TEXTS, SETTINGS, root=tmp_path / "a", shard_size=5, show_progress_bar=False)
    real_extract = store_module.extract_features
    calls = []

    def failing_extract(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the third shard
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(store_module, "extract_features", failing_extract)
    with pytest.raises(KeyboardInterrupt):
        build_store(backbone, TEXTS, SETTINGS, root=tmp_path / "b", shard_size=5, show_progress_bar=False)
    directory = next((tmp_path / "b").iterdir())
    assert len(list((directory / "shards").glob("*.safetensors"))) == 2
    monkeypatch.setattr(store_module, "extract_features", real_extract)
    counted = []
    monkeypatch.setattr(store_module, "extract_features", lambda *a, **k: counted.append(1) or real_extract(*a, **k))
    resumed = build_store(backbone, TEXTS, SETTINGS, root=tmp_path / "b", shard_size=5, show_progress_bar=False)
    assert len(counted) == 3  # only the three missing shards of five
    assert _arrays(resumed) == _arrays(reference)


def test_the_same_run_again_reuses_the_store(tiny_backbones, tmp_path, monkeypatch):
    backbone = tiny_backbones["bert"]
    first = build_store(backbone, TEXTS, SETTINGS, root=tmp_path, show_progress_bar=False)
    monkeypatch.setattr(store_module, "extract_features", lambda *a, **k: pytest.fail("extracted again"))
    again = build_store(backbone, TEXTS, SETTINGS, root=tmp_path, show_progress_bar=False)
    assert again.path == first.path
    other = ExtractionSettings(representations=("hidden",), poolings=("mean",))
    with pytest.raises(BaseException, match="extracted again"):
        build_store(backbone, TEXTS, other, root=tmp_path, show_progress_bar=False)


def test_slices_from_several_workers_complete_one_store(tiny_backbones, tmp_path):
    backbone = tiny_backbones["llama"]
    assert build_store(backbone, TEXTS, SETTINGS, root=tmp_path, shard=(1, 2), shard_size=4,
                       show_progress_bar=False) is None
    store = build_store(backbone, TEXTS, SETTINGS, root=tmp_path, shard=(0, 2), shard_size=4,
                        show_progress_bar=False)
    whole = build_store(backbone, TEXTS, SETTINGS, root=tmp_path / "whole", shard_size=4, show_progress_bar=False)
    assert _arrays(store) == _arrays(whole)


def test_float16_is_used_only_where_no_value_overflows(tiny_backbones, tmp_path):
    backbone = tiny_backbones["gpt2"]  # GPT-2's embedding output is not normalised
    settings = ExtractionSettings(representations=("hidden",), poolings=("mean",), dtype="float16")
    original = backbone.model.wte.weight.data.clone()
    try:
        backbone.model.wte.weight.data *= 1e8  # the embedding layer now exceeds float16's 65504
        backbone._weights_hash = None
        store = build_store(backbone, TEXTS, settings, root=tmp_path, show_progress_bar=False)
    finally:
        backbone.model.wte.weight.data = original
        backbone._weights_hash = None
    dtypes = {key: store.meta["arrays"][key]["dtype"] for key in store.keys}
    assert dtypes["hidden.L0.mean"] == "float32"
    assert np.isfinite(store.load("hidden.L0.mean")).all()
    assert dtypes["hidden.L3.mean"] == "float16"  # the final layer norm brings the last layer back in range


def test_bad_shard_and_dtype_arguments_are_refused(tiny_backbones, tmp_path):
    with pytest.raises(ValueError, match="shard must be"):
        build_store(tiny_backbones["bert"], TEXTS, SETTINGS, root=tmp_path, shard=(2, 2))
    with pytest.raises(ValueError, match="store dtype"):
        ExtractionSettings(representations=("hidden",), poolings=("mean",), dtype="int8")
