"""Low-level file helpers every stage shares: the cache root, a file's sha256, atomic writes.

This module imports nothing from stc, so data, backbone, store, persistence and the faces can all use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cache_root", "file_sha256", "gguf_cache_dir", "atomic_path", "atomic_write_text"]


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where stc keeps corpora, downloads, de-quantised backbones and activation stores: ``cache_dir`` if given,
    else ``$STC_CACHE``, else ``~/.cache/stc``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("STC_CACHE") or Path.home() / ".cache" / "stc").expanduser()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_cache_dir(gguf_path: str | Path) -> Path:
    """Where the de-quantised copy of a GGUF file is kept (keyed by the file's hash, so a changed file is redone)."""
    return cache_root() / "backbones" / f"gguf-{file_sha256(gguf_path)[:16]}"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write a file or a directory to; renamed onto ``path`` when the block
    ends, removed if it raises (Ctrl-C too). A reader never sees a half-written ``path``.

    The rename is ``os.replace``: it replaces a file, or an empty directory; onto a non-empty directory it raises
    OSError (the caller decides whether another process's identical result is fine).
    """
    path = Path(path)
    partial = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    _remove(partial)  # a leftover of an earlier process with the same id
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        _remove(partial)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace_directory(partial: str | Path, directory: str | Path, *, marker: str, what: str,
                      between=None) -> None:
    """Rename the finished directory ``partial`` onto ``directory``. An existing ``directory`` is replaced only if
    it holds ``marker`` (it is ``what``, e.g. "an stc model"); if the second rename fails it is put back.
    ``between`` runs between the two renames (tests use it to kill a process inside that window)."""
    partial, directory = Path(partial), Path(directory)
    if not directory.exists():
        os.rename(partial, directory)
        return
    if not (directory / marker).exists():
        raise ValueError(f"{directory} exists and is not {what}; refusing to replace it")
    retired = directory.with_name(directory.name + f".old-{os.getpid()}")
    os.rename(directory, retired)
    if between is not None:
        between()
    try:
        os.rename(partial, directory)
    except BaseException:
        os.rename(retired, directory)
        raise
    shutil.rmtree(retired)
