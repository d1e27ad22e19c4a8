"""Refusing work that cannot fit: a size check before sampling, instead of an allocator traceback later."""
from __future__ import annotations

import os

__all__ = ["available_memory", "check_fits"]


def available_memory() -> int | None:
    """Bytes of memory the process can still get (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GB"


def check_fits(need: int, what: str, hint: str = "") -> None:
    """Raise ``ValueError`` naming ``what`` (e.g. ``latent_image: a 4096x4x64x64 latent``) when ``need``
    bytes exceed the memory available now. Unknown availability never refuses."""
    have = available_memory()
    if have is not None and need > have:
        raise ValueError(f"{what} needs about {_gb(need)} of memory, but only {_gb(have)} is available"
                         + (f"; {hint}" if hint else ""))
