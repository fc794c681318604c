"""Interruptions lose nothing: ``kill -9`` during extraction resumes to a byte-identical store; a failed save
leaves the previous model directory intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import stc
from stc import STCClassifier

from ._helpers import LABELS, NUM_LAYERS, TEXTS, quiet_env, small_params

N_TEXTS, SHARD_SIZE = 480, 20
N_SHARDS = N_TEXTS // SHARD_SIZE

# The same entry point as `python -m stc`, counting how many shards this process extracts itself.
_COUNTING_MAIN = textwrap.dedent("""
    import sys
    import stc.store
    from stc.cli import main
    calls = []
    original = stc.store.extract_features
    def counted(backbone, texts, *args, **kwargs):
        calls.append(len(texts))
        return original(backbone, texts, *args, **kwargs)
    stc.store.extract_features = counted
    code = main(sys.argv[1:])
    print("EXTRACTED_SHARDS", len(calls), flush=True)
    sys.exit(code)
""")


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    words = "good bad movie film plot actor great awful boring fun story scene music long short".split()
    rng = np.random.default_rng(0)
    rows = ["text,label"] + [" ".join(rng.choice(words, size=int(rng.integers(20, 60)))) + f",{i % 2}"
                             for i in range(N_TEXTS)]
    path = tmp_path_factory.mktemp("kill-data") / "texts.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def _extract_args(data_csv: str, tiny_dir: str, store_dir: Path) -> list[str]:
    # A small token budget makes many small batches, so the kill lands between the first and the last shard.
    return ["extract", "--data", data_csv, "--model", tiny_dir, "--store-dir", str(store_dir), "--shard-size",
            str(SHARD_SIZE), "--token-budget", "64", "--representations", "hidden,ffn", "--poolings", "mean,max",
            "--quiet"]


def _start_counting(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _COUNTING_MAIN, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=quiet_env())


def _shards_extracted(process: subprocess.Popen) -> int:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    return int(stdout.split("EXTRACTED_SHARDS")[-1])


def _kill_9_when(process: subprocess.Popen, reached, what: str, seconds: float) -> None:
    """kill -9 the process as soon as ``reached()`` is true; it must not end (or take ``seconds``) before that."""
    deadline = time.monotonic() + seconds
    try:
        while not reached():
            assert process.poll() is None, f"the process ended before {what}: {process.stderr.read()[-2000:]!r}"
            assert time.monotonic() < deadline, f"{what} did not come within {seconds} s"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def _only_store(root: Path) -> Path:
    stores = [path.parent for path in root.glob("*/plan.json")]
    assert len(stores) == 1, stores
    return stores[0]


def test_kill_9_during_extraction_resumes_to_a_byte_identical_store(data_csv, tiny_dir, tmp_path):
    interrupted, reference = tmp_path / "interrupted", tmp_path / "uninterrupted"
    args = _extract_args(data_csv, tiny_dir, interrupted)
    # The uninterrupted run, in a store of its own, goes on meanwhile: each process is one thread.
    with _start_counting(_extract_args(data_csv, tiny_dir, reference)) as uninterrupted:
        process = subprocess.Popen([sys.executable, "-m", "stc", *args], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, env=quiet_env())
        _kill_9_when(process, lambda: list(interrupted.glob("*/shards/*.safetensors")), "the first shard", 240)
        store = _only_store(interrupted)
        done = len(list((store / "shards").glob("*.safetensors")))
        assert not (store / "meta.json").exists() and 1 <= done < N_SHARDS  # the kill landed mid-run
        print(f"killed after {done} of {N_SHARDS} shards")

        assert _shards_extracted(_start_counting(args)) == N_SHARDS - done  # the same command: the missing shards
        assert (store / "meta.json").is_file() and not (store / "shards").exists()
        assert _shards_extracted(uninterrupted) == N_SHARDS
    other = _only_store(reference)
    assert other.name == store.name
    names = sorted(path.name for path in (store / "arrays").iterdir())
    # hidden layers 0..NUM_LAYERS and ffn layers 1..NUM_LAYERS, each mean- and max-pooled
    assert names == sorted(path.name for path in (other / "arrays").iterdir())
    assert len(names) == 2 * (2 * NUM_LAYERS + 1)
    for name in names:
        assert (store / "arrays" / name).read_bytes() == (other / "arrays" / name).read_bytes(), name
    assert (store / "meta.json").read_bytes() == (other / "meta.json").read_bytes()


# --- an interrupted save ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_models(tiny_dir, tmp_path_factory):
    """Two fitted models that predict differently: the old one saved, the new one about to replace it."""
    store_dir = str(tmp_path_factory.mktemp("stores"))
    old = STCClassifier(tiny_dir, store_dir=store_dir, **small_params()).fit(TEXTS, LABELS)
    new = STCClassifier(tiny_dir, store_dir=store_dir, **small_params(final_Cs=(0.001,))).fit(TEXTS, LABELS[::-1])
    return old, new


def _siblings(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.parent.iterdir() if path.name != directory.name)


def _assert_old_model_intact(directory: Path, old) -> None:
    texts = ["good fun", "awful film", "number 3"]
    np.testing.assert_array_equal(stc.load(directory).predict_proba(texts), old.predict_proba(texts))
    assert _siblings(directory) == []  # no half-written or retired copy lies beside it


def test_a_save_whose_final_rename_fails_leaves_the_previous_model(two_models, tmp_path, monkeypatch):
    old, new = two_models
    directory = tmp_path / "model"
    old.save(directory)
    real_rename = os.rename

    def failing_rename(source, target):
        if ".tmp-" in str(source):  # the new model moving into place
            raise OSError("simulated: disk gone")
        return real_rename(source, target)

    monkeypatch.setattr("stc._persist.os.rename", failing_rename)
    with pytest.raises(OSError, match="simulated"):
        new.save(directory)
    monkeypatch.undo()
    _assert_old_model_intact(directory, old)


def test_a_save_interrupted_while_writing_leaves_the_previous_model(two_models, tmp_path, monkeypatch):
    old, new = two_models
    directory = tmp_path / "model"
    old.save(directory)

    def interrupted_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 10)  # a torn file, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr("stc.readout.save_file", interrupted_save_file)
    with pytest.raises(KeyboardInterrupt):
        new.save(directory)
    monkeypatch.undo()
    _assert_old_model_intact(directory, old)
    new.save(directory)  # and the next save goes through
    assert stc.load(directory).predict(["good fun"]).tolist() == new.predict(["good fun"]).tolist()
    assert _siblings(directory) == []


# A save of the model at argv[1] onto argv[2], the environment asking it to sleep between its two renames.
_SLOW_SAVE = textwrap.dedent("""
    import sys
    import stc
    stc.load(sys.argv[1], check_backbone=False).save(sys.argv[2])
""")


def _kill_inside_the_save_window(source: Path, directory: Path) -> None:
    """Start a save of ``source`` onto ``directory`` and kill -9 it once the old model is renamed away."""
    process = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, str(source), str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=quiet_env(STC_TEST_SAVE_WINDOW_PAUSE_S="60"))
    retired = directory.with_name(f"{directory.name}.old-{process.pid}")
    _kill_9_when(process, retired.exists, "the save window (the old model renamed away)", 120)
    assert not directory.exists()  # the window: no model at <dir>, the old one at <dir>.old-PID
    assert retired.is_dir() and directory.with_name(f"{directory.name}.tmp-{process.pid}").is_dir()


@pytest.mark.parametrize("next_call", ["load", "save"])
def test_kill_9_between_the_renames_of_a_save_is_repaired_by_the_next_load_or_save(two_models, tmp_path, next_call):
    old, new = two_models
    directory, source = tmp_path / "model", tmp_path / "elsewhere" / "new-model"
    old.save(directory)
    new.save(source)
    _kill_inside_the_save_window(source, directory)
    texts = ["good fun", "awful film", "number 3"]
    if next_call == "load":
        np.testing.assert_array_equal(stc.load(directory).predict_proba(texts), old.predict_proba(texts))
        assert _siblings(directory) == ["elsewhere"]  # the previous model is back, nothing left beside it
    else:
        new.save(directory)
        assert _siblings(directory) == ["elsewhere"]
        np.testing.assert_array_equal(stc.load(directory).predict_proba(texts), new.predict_proba(texts))


def test_a_leftover_after_the_second_rename_is_removed_and_a_live_save_left_alone(two_models, tmp_path):
    old, _ = two_models
    directory = tmp_path / "model"
    old.save(directory)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has ended
    (tmp_path / f"model.old-{dead_pid}").mkdir()  # killed after its second rename, before the clean-up
    (tmp_path / f"model.old-{os.getppid()}").mkdir()  # a save in progress in a live process: not ours to touch
    stc.load(directory, check_backbone=False)
    assert _siblings(directory) == [f"model.old-{os.getppid()}"]
