"""Memory budgets: what a stage of ``fit`` will need, against what the machine has, before the stage runs.

A stage that would not fit is either run with fewer workers side by side (the probes, the search's fits) or
refused with a one-line error that names the setting to change; no fit dies of memory without a word. The
estimates are upper bounds of the arrays the stage allocates (the Python heap and the backbone come on top, so a
reserve is kept back). ``STC_MEMORY_LIMIT`` (e.g. ``4GiB``, ``500MB``) caps what stc counts as available: a
machine shared with other work, a container whose limit the kernel does not report, or a test.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

__all__ = ["MemoryBudgetError", "available_bytes", "format_bytes", "workers_within", "MEMORY_LIMIT_ENV"]

logger = logging.getLogger(__name__)

MEMORY_LIMIT_ENV = "STC_MEMORY_LIMIT"
#: Kept back from what is available for everything the estimates leave out (interpreter, backbone, BLAS buffers).
RESERVE_FRACTION = 0.15
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20, "g": 1e9, "gb": 1e9,
          "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


class MemoryBudgetError(MemoryError):
    """A stage of the fit would need more memory than the machine has; the message names the setting to change."""


def parse_size(text: str) -> int:
    """Bytes of a size such as ``4GiB``, ``500 MB`` or ``1e9``."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"{MEMORY_LIMIT_ENV} must be a size such as 4GiB or 500MB; got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _cgroup_room() -> int | None:
    """What the cgroup (v2 or v1) still lets this process allocate, when it sets a limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            usage = int(Path("/sys/fs/cgroup", usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            return max(int(limit) - usage, 0)
    return None


def _system_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # other Unixes
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available_bytes() -> int | None:
    """Bytes stc may still allocate: the least of the system's available memory, the cgroup's room and
    ``STC_MEMORY_LIMIT``; None when none of them can be read (then nothing is checked)."""
    known = [value for value in (_system_available(), _cgroup_room()) if value is not None]
    if os.environ.get(MEMORY_LIMIT_ENV):
        known.append(parse_size(os.environ[MEMORY_LIMIT_ENV]))
    return min(known) if known else None


def format_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def workers_within(per_worker: float, wanted: int, *, shared: float = 0.0, stage: str, knob: str) -> int:
    """How many of ``wanted`` workers, each needing ``per_worker`` bytes beside ``shared`` ones, fit in memory.

    Fewer than wanted: logged, and that many run. Not even one: ``MemoryBudgetError`` naming ``stage``, the
    estimate, what is available and ``knob`` (what the user can change)."""
    room = available_bytes()
    if room is None or wanted < 1:
        return wanted
    room = room * (1.0 - RESERVE_FRACTION) - shared
    fit = int(room // per_worker) if per_worker > 0 else wanted
    if fit < 1:
        raise MemoryBudgetError(
            f"{stage} needs about {format_bytes(per_worker + shared)} but {format_bytes(available_bytes())} is "
            f"available: {knob} (or raise {MEMORY_LIMIT_ENV} if more memory is free)")
    if fit < wanted:
        logger.warning("%s: %d side by side instead of %d, to stay within %s of memory", stage, fit, wanted,
                       format_bytes(available_bytes()))
    return min(fit, wanted)
