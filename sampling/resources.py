"""Refusing work that cannot fit: a size check against a memory budget before sampling, instead of an allocator
traceback (or a machine brought to its knees) later.

The budget is a process setting: by default half of the machine's physical memory, or what ``--memory-budget``
(``stepwise run``/``serve``) or :func:`set_memory_budget` says. It does not follow whatever happens to be free at
the moment, so the same request is refused or accepted the same way every time.
"""
from __future__ import annotations

import os

__all__ = ["total_memory", "memory_budget", "set_memory_budget", "check_fits", "DEFAULT_BUDGET_FRACTION"]

DEFAULT_BUDGET_FRACTION = 0.5
_BUDGET: list[int | None] = [None]  # None: the default fraction of total memory


def total_memory() -> int | None:
    """Bytes of physical memory (MemTotal), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget() -> int | None:
    """The bytes one run may plan to use, or None when neither set nor knowable (then nothing is refused)."""
    if _BUDGET[0] is not None:
        return _BUDGET[0]
    total = total_memory()
    return None if total is None else int(total * DEFAULT_BUDGET_FRACTION)


def set_memory_budget(nbytes: int | None) -> int | None:
    """Set the budget (None: back to the default fraction of total memory)."""
    if nbytes is not None and (isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1):
        raise ValueError(f"--memory-budget: expected a positive number of bytes, got {nbytes!r}")
    _BUDGET[0] = nbytes
    return nbytes


def _gb(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GB"


def check_fits(need: int, what: str, hint: str = "") -> None:
    """Raise ``ValueError`` naming ``what`` (e.g. ``latent_image: a 4096x4x64x64 latent``) when ``need`` bytes
    exceed the memory budget. An unknown budget never refuses."""
    have = memory_budget()
    if have is not None and need > have:
        raise ValueError(f"{what} needs about {_gb(need)} of memory, over the budget of {_gb(have)} "
                         f"(--memory-budget)" + (f"; {hint}" if hint else ""))
