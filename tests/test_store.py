"""The activation store: sharded writes, resume after an interruption, reuse by hash, float16 safety."""

from __future__ import annotations

import numpy as np
import pytest

import stc.store as store_module
from stc.store import ActivationStore, ExtractionSettings, build_store

from ._helpers import quiet_env, save_tiny

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


# --- many writers on one store -----------------------------------------------------------------------------------

# `python -m stc` counting the shards this process extracts; before its first shard it waits until the other
# writer has reached its own first shard too, so that the two really work side by side.
_COUNTING_EXTRACT = """
import os, pathlib, sys, time
import stc.store
from stc.cli import main
calls = []
original = stc.store.extract_features
gate = pathlib.Path(os.environ["STC_TEST_GATE"])
def counted(backbone, texts, *args, **kwargs):
    if not calls:
        (gate / str(os.getpid())).touch()
        deadline = time.monotonic() + 120
        while len(list(gate.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    calls.append(len(texts))
    return original(backbone, texts, *args, **kwargs)
stc.store.extract_features = counted
code = main(sys.argv[1:])
print("EXTRACTED_SHARDS", len(calls), flush=True)
sys.exit(code)
"""


def _debris(root) -> list[str]:
    """Anything in a finished store besides its arrays, metadata, plan and lock file."""
    expected = {"arrays", "meta.json", "plan.json", "store.lock"}
    return sorted(str(path.relative_to(root)) for store in root.iterdir() for path in store.iterdir()
                  if path.name not in expected)


def test_two_processes_extracting_the_same_store_both_succeed_and_leave_no_debris(tmp_path):
    import subprocess
    import sys
    import time

    model_dir = save_tiny(tmp_path / "tiny-bert")
    rng = np.random.default_rng(1)
    words = "good bad movie film plot actor great awful boring fun story scene".split()
    rows = ["text,label"] + [" ".join(rng.choice(words, size=int(rng.integers(10, 40)))) + f",{i % 2}"
                             for i in range(300)]
    data = tmp_path / "texts.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    args = ["extract", "--data", str(data), "--model", model_dir, "--shard-size", "10", "--token-budget", "128",
            "--representations", "hidden,ffn", "--poolings", "mean,max", "--quiet", "--store-dir"]
    gate = tmp_path / "gate"
    gate.mkdir()
    writers = [subprocess.Popen([sys.executable, "-c", _COUNTING_EXTRACT, *args, str(shared)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=quiet_env(STC_TEST_GATE=str(gate))) for _ in range(2)]
    # Meanwhile a reader opens the store as often as it can: it is either incomplete or whole, never half-written.
    from stc.store import ActivationStore

    complete_reads = 0
    deadline = time.monotonic() + 300
    while any(writer.poll() is None for writer in writers) and time.monotonic() < deadline:
        for meta in shared.glob("*/meta.json"):
            store = ActivationStore(meta.parent)
            assert all(store.load(key).shape == (300, store.dim(key)) for key in store.keys)
            complete_reads += 1
        time.sleep(0.01)
    outputs = [writer.communicate(timeout=60) for writer in writers]
    for writer, (stdout, stderr) in zip(writers, outputs):
        assert writer.returncode == 0, stderr[-2000:]
    extracted = [int(stdout.split("EXTRACTED_SHARDS")[-1]) for stdout, _ in outputs]
    assert sum(extracted) == 30 and min(extracted) >= 1  # both worked; no shard was extracted twice
    assert _debris(shared) == []
    reference = subprocess.run([sys.executable, "-m", "stc", *args, str(alone)], capture_output=True, text=True,
                               env=quiet_env(), timeout=300)
    assert reference.returncode == 0, reference.stderr[-2000:]
    (together,), (single,) = ([ActivationStore(m.parent) for m in root.glob("*/meta.json")] for root in (shared, alone))
    assert together.path.name == single.path.name and _arrays(together) == _arrays(single)
    print(f"shards per writer: {extracted}; complete reads during the run: {complete_reads}")


def test_what_a_killed_merge_left_behind_is_cleared_by_the_next_writer(tiny_backbones, tmp_path):
    backbone = tiny_backbones["bert"]
    assert build_store(backbone, TEXTS, SETTINGS, root=tmp_path, shard=(0, 2), shard_size=5,
                       show_progress_bar=False) is None
    directory = next(tmp_path.iterdir())
    (directory / "arrays.tmp-99999").mkdir()  # a merger killed mid-merge
    (directory / "arrays").mkdir()  # ... or killed between the rename and meta.json
    (directory / "arrays" / "hidden.L0.mean.npy").write_bytes(b"half")
    (directory / "shards" / "00001.safetensors.tmp-99999").write_bytes(b"half")  # a writer killed mid-write
    store = build_store(backbone, TEXTS, SETTINGS, root=tmp_path, shard=(1, 2), shard_size=5,
                        show_progress_bar=False)
    whole = build_store(backbone, TEXTS, SETTINGS, root=tmp_path / "whole", shard_size=5, show_progress_bar=False)
    assert _arrays(store) == _arrays(whole)
    assert sorted(p.name for p in directory.iterdir()) == ["arrays", "meta.json", "plan.json", "store.lock"]


def test_a_store_path_that_cannot_be_written_is_one_clear_error(tiny_backbones, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="cannot write the activation store at .*a-file"):
        build_store(tiny_backbones["bert"], TEXTS, SETTINGS, root=blocker / "stores", show_progress_bar=False)
