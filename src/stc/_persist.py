"""Atomic directory I/O for saved models: a save is written to a temporary directory and renamed into place.

An interrupted save leaves the previous model intact. Replacing a model takes two renames (the old one to
``<dir>.old-<pid>``, the new one to ``<dir>``); a process killed between them leaves no model at ``<dir>``, so
every save and load of ``<dir>`` first puts such a leftover back (or removes it once ``<dir>`` is there). What goes
into the directory is the caller's (``STCClassifier.save`` writes its readout and model card); this module imports
nothing from stc but the file helpers.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ._files import replace_directory

__all__ = ["save_directory", "recover_interrupted_save", "SAVE_WINDOW_PAUSE_ENV"]

#: Seconds to sleep between the two renames of a save: only tests set it, to kill a process inside that window.
SAVE_WINDOW_PAUSE_ENV = "STC_TEST_SAVE_WINDOW_PAUSE_S"


def save_directory(directory: str | Path, write: Callable[[Path], None], *, marker: str,
                   what: str = "an stc model directory") -> Path:
    """Call ``write(partial)`` on a fresh directory beside ``directory``, then rename it into place. ``marker`` is
    the file that makes a directory one of ours: an existing ``directory`` without it is never replaced."""
    directory = Path(directory)
    recover_interrupted_save(directory, marker=marker)
    partial = directory.with_name(directory.name + f".tmp-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        write(partial)
        pause = os.environ.get(SAVE_WINDOW_PAUSE_ENV)
        replace_directory(partial, directory, marker=marker, what=what,
                          between=(lambda: time.sleep(float(pause))) if pause else None)
    except BaseException:  # Ctrl-C too: no half-written directory stays behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return directory


def recover_interrupted_save(directory: str | Path, *, marker: str) -> None:
    """Put back what a save killed between its two renames left: the previous model, ``<dir>.old-<pid>``, goes
    back to ``<dir>`` when ``<dir>`` is missing, and is removed when ``<dir>`` is there (the kill came after the
    second rename). The unfinished new model (``<dir>.tmp-<pid>``) of a dead process is removed. Leftovers of a
    process still running (a save in progress) are left alone."""
    directory = Path(directory)
    if not directory.parent.is_dir():
        return
    pattern = re.compile(re.escape(directory.name) + r"\.(old|tmp)-(\d+)")
    leftovers = []
    for path in directory.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match and path.is_dir() and not _process_alive(int(match.group(2))):
            leftovers.append((match.group(1), path))
    retired = sorted((path for kind, path in leftovers if kind == "old" and (path / marker).is_file()),
                     key=lambda path: path.stat().st_mtime)
    if retired and not directory.exists():
        os.rename(retired.pop(), directory)  # the newest previous model: the save that retired it never finished
    for _, path in leftovers:
        if path.exists() and path != directory:
            shutil.rmtree(path)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours is never mid-save while we recover
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True
