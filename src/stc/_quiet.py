"""Quiet the expected warnings of chunked coordinate descent (``stc._solver``, ``stc._solver_multilabel``).

Chunks of coordinate descent that end before their own tolerance is met make scikit-learn warn; those are expected.
``warnings.catch_warnings`` is process-wide and not thread-safe, so callers that fit from several threads hold one
block for all their workers (``quiet_solver_warnings``) and the workers then leave the filters alone.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager

from sklearn.exceptions import ConvergenceWarning

__all__ = ["quiet_solver_warnings", "quiet_cd_chunks"]

_CD_NOT_CONVERGED = "Objective did not converge"
_held = {"depth": 0}
_held_lock = threading.Lock()


@contextmanager
def quiet_solver_warnings():
    """Silence the expected "did not converge" warnings of coordinate-descent chunks, for every thread.

    Enter it in the thread that starts the workers, before they start."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning, message=_CD_NOT_CONVERGED)
        with _held_lock:
            _held["depth"] += 1
        try:
            yield
        finally:
            with _held_lock:
                _held["depth"] -= 1


@contextmanager
def quiet_cd_chunks():
    """Silence those warnings around one chunk of coordinate descent, unless a caller already holds the block."""
    if _held["depth"]:  # a caller holds the block for all threads
        yield
        return
    with quiet_solver_warnings():
        yield
