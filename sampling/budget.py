"""What every fit shares: a hard budget of model calls, an interrupt asked before each call, progress after it."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

__all__ = ["Budget", "Counted", "watched", "float_arg", "sigma_range"]


class Budget(Exception):
    """The fit's budget of model calls is spent."""


class Counted:
    """The denoiser, refusing (``Budget``) any call beyond ``limit``."""

    def __init__(self, denoiser: Callable, limit: int) -> None:
        self.denoiser, self.limit, self.calls = denoiser, limit, 0

    def __call__(self, x, sigma, **extra):
        if self.calls >= self.limit:
            raise Budget()
        self.calls += 1
        return self.denoiser(x, sigma, **extra)


def watched(denoiser: Callable, total: int, interrupt: Callable[[], None] | None = None,
            progress: Callable[[int, int, torch.Tensor], None] | None = None) -> Callable:
    """The denoiser, asking ``interrupt()`` before every call (raise to stop: a fit stops within one call) and
    reporting ``progress(calls so far, total, prediction)`` after each."""
    if interrupt is None and progress is None:
        return denoiser
    count = [0]

    def call(x, sigma, **extra):
        if interrupt is not None:
            interrupt()
        out = denoiser(x, sigma, **extra)
        count[0] += 1
        if progress is not None:
            progress(count[0], total, out)
        return out

    return call


def float_arg(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {str(value)[:40]!r}") from None


def sigma_range(sigma_max: Any, sigma_min: Any) -> tuple[float, float]:
    """(sigma_max, sigma_min) as floats, both finite and > 0 and in that order; else a ValueError naming the input."""
    sigma_max, sigma_min = float_arg("sigma_max", sigma_max), float_arg("sigma_min", sigma_min)
    for name, value in (("sigma_max", sigma_max), ("sigma_min", sigma_min)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    if not sigma_max > sigma_min:
        raise ValueError(f"sigma_min: expected sigma_min < sigma_max ({sigma_max:g}), got {sigma_min:g}")
    return sigma_max, sigma_min
