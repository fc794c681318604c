"""stc._files: the cache root, file hashes and the one atomic-write helper every writer uses."""

from __future__ import annotations

import hashlib
import os

import pytest

from stc._files import atomic_path, atomic_write_text, cache_root, file_sha256


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text("old", encoding="utf-8")
    atomic_write_text(path, "new")
    assert path.read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_partial_one(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as partial:
            partial.write_text("half", encoding="utf-8")
            raise KeyboardInterrupt
    assert path.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl"]


def test_a_directory_is_renamed_into_place_and_a_failed_one_removed(tmp_path):
    target = tmp_path / "arrays"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as partial:
            partial.mkdir()
            (partial / "a.npy").write_bytes(b"x")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as partial:
        partial.mkdir()
        (partial / "a.npy").write_bytes(b"x")
    assert (target / "a.npy").read_bytes() == b"x"
    with pytest.raises(OSError):  # onto a non-empty directory: the caller decides (another process won)
        with atomic_path(target) as partial:
            partial.mkdir()
            (partial / "b.npy").write_bytes(b"y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays"]


def test_a_leftover_partial_of_a_dead_process_with_the_same_id_is_cleared(tmp_path):
    path = tmp_path / "plan.json"
    (tmp_path / f"plan.json.tmp-{os.getpid()}").mkdir()  # e.g. a directory left by a killed run
    atomic_write_text(path, "{}")
    assert path.read_text(encoding="utf-8") == "{}"


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    data = os.urandom(3 * 2**20 + 17)  # spans several read blocks
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_cache_root_order_argument_then_environment_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("STC_CACHE", str(tmp_path / "env"))
    assert cache_root(tmp_path / "given") == tmp_path / "given"
    assert cache_root() == tmp_path / "env"
    monkeypatch.setenv("STC_CACHE", "")  # empty means unset, not the working directory
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "stc"
