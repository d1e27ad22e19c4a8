"""Schedules beyond core's nine, for the Schedule (Stepwise) node and the ``sigmas`` socket (never in the
``scheduler`` combo, which stays exactly core's list).

Every schedule here takes ``(model_sampling, steps, **params)`` and returns ``steps + 1`` decreasing float32
sigmas ending in 0, for any ``steps >= 1``. Parameters and defaults are those of core's scheduler nodes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy
import torch

from .model_sampling import ModelSamplingLike
from .schedules import SCHEDULERS, beta_schedule, linear_quadratic_schedule

__all__ = ["ScheduleParam", "Schedule", "SCHEDULES", "SCHEDULE_NAMES", "schedule_sigmas", "loglinear_interp",
           "AYS_LEVELS"]

#: Align Your Steps' published 10-step noise levels (Sabour et al. 2024, arXiv:2404.14507)
AYS_LEVELS = {
    "ays_sd1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
                0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "ays_sdxl": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
                 0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
    "ays_svd": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}


def loglinear_interp(levels: list[float], num: int) -> numpy.ndarray:
    """Resample a decreasing list to ``num`` points, linearly in log sigma over an even grid (AYS' recipe)."""
    xs = numpy.linspace(0, 1, len(levels))
    ys = numpy.log(numpy.asarray(levels, dtype=numpy.float64)[::-1])
    return numpy.exp(numpy.interp(numpy.linspace(0, 1, num), xs, ys))[::-1].copy()


def _tail_denoise(full: numpy.ndarray, steps: int, denoise: float) -> torch.Tensor:
    """AYS/GITS nodes' denoise rule: keep the last round(steps * denoise) steps, then end in 0."""
    total = steps if denoise >= 1.0 else round(steps * denoise)
    sig = list(full[-(total + 1):])
    sig[-1] = 0.0
    return torch.tensor(sig, dtype=torch.float32)


@lru_cache(maxsize=1)
def _gits_levels() -> dict[str, list]:
    path = Path(__file__).resolve().parent / "data" / "gits_levels.json"
    return json.loads(path.read_text())["levels"]


def ays(name: str) -> Callable:
    def schedule(ms: ModelSamplingLike, steps: int, denoise: float = 1.0) -> torch.Tensor:
        levels = AYS_LEVELS[name]
        full = numpy.asarray(levels, dtype=numpy.float64) if steps + 1 == len(levels) else \
            loglinear_interp(levels, steps + 1)
        return _tail_denoise(full, steps, denoise)
    schedule.__doc__ = f"Align Your Steps ({name}): the published levels, log-linearly resampled to other counts."
    return schedule


def gits_schedule(ms: ModelSamplingLike, steps: int, denoise: float = 1.0, coeff: float = 1.20) -> torch.Tensor:
    """GITS (Chen et al. 2024): the published schedule for the coefficient; beyond 20 steps (and for 1 step)
    the nearest table row resampled log-linearly."""
    key = f"{round(coeff, 2):.2f}"
    rows = _gits_levels().get(key)
    if rows is None:
        raise ValueError(f"coeff: {coeff} is not one of {', '.join(sorted(_gits_levels()))}")
    if 2 <= steps <= 20:
        full = numpy.asarray(rows[steps - 2], dtype=numpy.float64)
    else:
        full = loglinear_interp(rows[-1] if steps > 20 else rows[0], steps + 1)
    return _tail_denoise(full, steps, denoise)


def polyexponential_schedule(ms: ModelSamplingLike, steps: int, sigma_max: float = 14.614642,
                             sigma_min: float = 0.0291675, rho: float = 1.0) -> torch.Tensor:
    """A polynomial in log sigma (k-diffusion's polyexponential); rho = 1 is the exponential schedule."""
    ramp = torch.linspace(1, 0, steps) ** rho
    sig = torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min))
    return torch.cat([sig, sig.new_zeros([1])])


def laplace_schedule(ms: ModelSamplingLike, steps: int, sigma_max: float = 14.614642, sigma_min: float = 0.0291675,
                     mu: float = 0.0, beta: float = 0.5) -> torch.Tensor:
    """Laplace-distributed log-SNR (Tiankai et al. 2024): core's values, followed by 0 (core's node ends at
    sigma_min without the last step to 0)."""
    x = torch.linspace(0, 1, steps)
    lam = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + 1e-5)
    sig = torch.clamp(torch.exp(lam), min=sigma_min, max=sigma_max)
    return torch.cat([sig, sig.new_zeros([1])])


def vp_schedule(ms: ModelSamplingLike, steps: int, beta_d: float = 19.9, beta_min: float = 0.1,
                eps_s: float = 0.001) -> torch.Tensor:
    """The continuous VP schedule (Song et al. 2021) evaluated at evenly spaced t from 1 to eps_s."""
    t = torch.linspace(1, eps_s, steps)
    sig = torch.sqrt(torch.special.expm1(beta_d * t ** 2 / 2 + beta_min * t))
    return torch.cat([sig, sig.new_zeros([1])])


def beta57_schedule(ms: ModelSamplingLike, steps: int) -> torch.Tensor:
    """The beta schedule with alpha = 0.5, beta = 0.7 (a popular sharper variant of core's 0.6/0.6)."""
    return beta_schedule(ms, steps, alpha=0.5, beta=0.7)


def lq_schedule(ms: ModelSamplingLike, steps: int, threshold_noise: float = 0.025,
                linear_steps: int | None = None) -> torch.Tensor:
    """Core's linear_quadratic with its parameters exposed (threshold noise, number of linear steps)."""
    if linear_steps is not None and not 1 <= linear_steps < max(steps, 2):
        raise ValueError(f"linear_steps: {linear_steps} must be in 1..{max(steps - 1, 1)} for {steps} steps")
    return linear_quadratic_schedule(ms, steps, threshold_noise, linear_steps)


def _arctangent_ramp(n: int, slope: float, pivot: float, start: float, end: float) -> list[float]:
    """``n`` points from ``start`` to ``end`` along a falling arctangent centred on index ``pivot``."""
    if n == 1:
        return [start]
    curve = [(2 / math.pi * math.atan(-slope * (k - pivot)) + 1) / 2 for k in range(n)]
    top, bottom = curve[0], curve[-1]
    if top - bottom <= 1e-12:  # a flat curve: a straight line
        return [start + (end - start) * k / (n - 1) for k in range(n)]
    return [(c - bottom) / (top - bottom) * (start - end) + end for c in curve]


def bong_tangent_schedule(ms: ModelSamplingLike, steps: int, start: float = 1.0, middle: float = 0.5,
                          end: float = 0.0, pivot_1: float = 0.6, pivot_2: float = 0.6, slope_1: float = 0.2,
                          slope_2: float = 0.2) -> torch.Tensor:
    """bong_tangent (RES4LYF, ClownsharkBatwing): two arctangent ramps, from ``start`` to ``middle`` and on to
    ``end`` (fractions of the model's sigma_max), pivoting at ``pivot_1``/``pivot_2`` of the run with slopes scaled
    to the step count; few steps early, many in the middle range, quickly to the end."""
    n = steps + 2
    midpoint = int((n * pivot_1 + n * pivot_2) / 2)
    second_len = n - midpoint
    first_len = n - second_len
    scale = 40 / n
    smax = float(ms.sigma_max)
    first = _arctangent_ramp(first_len, slope_1 * scale, int(n * pivot_1), start, middle)
    second = _arctangent_ramp(second_len, slope_2 * scale, int(n * pivot_2) - first_len, middle, end)
    values = (first[:-1] + second) if first_len > 1 else (first + second[1:])  # steps + 1 values either way
    sig = torch.tensor(values, dtype=torch.float64) * smax
    sig[-1] = 0.0
    for k in range(len(sig) - 2, -1, -1):  # strictly decreasing in float32, whatever the parameters
        if sig[k] <= sig[k + 1]:
            sig[k] = torch.nextafter(sig[k + 1].float(), torch.tensor(math.inf)).double()
    return sig.to(torch.float32)


@dataclass(frozen=True)
class ScheduleParam:
    name: str
    kind: str  # "FLOAT" | "INT"
    default: Any
    lo: float
    hi: float
    step: float = 0.01
    tooltip: str = ""


@dataclass(frozen=True)
class Schedule:
    """A registered schedule: its function, its parameters, whether it takes core's denoise rule or its own."""

    fn: Callable[..., torch.Tensor]
    description: str
    params: tuple[ScheduleParam, ...] = ()
    own_denoise: bool = False  # AYS/GITS: round(steps * denoise) from the table's tail, as their nodes
    core: bool = False  # one of core's nine (identical numbers)
    extra: dict = field(default_factory=dict)


_SMAX = ScheduleParam("sigma_max", "FLOAT", 14.614642, 0.0, 5000.0, tooltip="polyexponential, laplace")
_SMIN = ScheduleParam("sigma_min", "FLOAT", 0.0291675, 0.0, 5000.0, tooltip="polyexponential, laplace")

SCHEDULES: dict[str, Schedule] = {
    **{name: Schedule(handler.fn, handler.description, core=True) for name, handler in SCHEDULERS.items()},
    "ays_sd1": Schedule(ays("ays_sd1"), "Align Your Steps, SD1.x", own_denoise=True),
    "ays_sdxl": Schedule(ays("ays_sdxl"), "Align Your Steps, SDXL", own_denoise=True),
    "ays_svd": Schedule(ays("ays_svd"), "Align Your Steps, SVD", own_denoise=True),
    "gits": Schedule(gits_schedule, "GITS, fitted to SD1.5 trajectories", (
        ScheduleParam("coeff", "FLOAT", 1.20, 0.80, 1.50, 0.05, "gits: the schedule's coefficient"),), own_denoise=True),
    "polyexponential": Schedule(polyexponential_schedule, "polynomial in log sigma", (
        _SMAX, _SMIN, ScheduleParam("rho", "FLOAT", 1.0, 0.0, 100.0, tooltip="polyexponential"))),
    "laplace": Schedule(laplace_schedule, "Laplace log-SNR", (
        _SMAX, _SMIN, ScheduleParam("mu", "FLOAT", 0.0, -10.0, 10.0, 0.1, "laplace"),
        ScheduleParam("beta", "FLOAT", 0.5, 0.0, 10.0, 0.1, "laplace"))),
    "vp": Schedule(vp_schedule, "continuous VP", (
        ScheduleParam("beta_d", "FLOAT", 19.9, 0.0, 5000.0, tooltip="vp"),
        ScheduleParam("beta_min", "FLOAT", 0.1, 0.0, 5000.0, tooltip="vp"),
        ScheduleParam("eps_s", "FLOAT", 0.001, 0.0, 1.0, 0.0001, "vp"))),
    "beta57": Schedule(beta57_schedule, "beta quantiles, alpha 0.5, beta 0.7"),
    "linear_quadratic_custom": Schedule(lq_schedule, "linear_quadratic with its parameters", (
        ScheduleParam("threshold_noise", "FLOAT", 0.025, 0.0, 1.0, 0.001, "linear_quadratic_custom"),
        ScheduleParam("linear_steps", "INT", 0, 0, 10000, 1, "linear_quadratic_custom (0: steps // 2)"))),
    "bong_tangent": Schedule(bong_tangent_schedule, "two arctangent ramps (RES4LYF)", (
        ScheduleParam("start", "FLOAT", 1.0, 0.0, 1.0, 0.01, "bong_tangent: first sigma, a fraction of sigma_max"),
        ScheduleParam("middle", "FLOAT", 0.5, 0.0, 1.0, 0.01, "bong_tangent: where the two ramps meet"),
        ScheduleParam("end", "FLOAT", 0.0, 0.0, 1.0, 0.01, "bong_tangent: last sigma before 0"),
        ScheduleParam("pivot_1", "FLOAT", 0.6, 0.0, 1.0, 0.01, "bong_tangent: first ramp's pivot"),
        ScheduleParam("pivot_2", "FLOAT", 0.6, 0.0, 1.0, 0.01, "bong_tangent: second ramp's pivot"),
        ScheduleParam("slope_1", "FLOAT", 0.2, 0.0, 10.0, 0.01, "bong_tangent: first ramp's slope"),
        ScheduleParam("slope_2", "FLOAT", 0.2, 0.0, 10.0, 0.01, "bong_tangent: second ramp's slope"))),
}
SCHEDULE_NAMES: list[str] = list(SCHEDULES)


def _params(schedule: Schedule, name: str, given: dict) -> dict:
    allowed = {p.name: p for p in schedule.params}
    unknown = [k for k in given if k not in allowed]
    if unknown:
        takes = ", ".join(allowed) or "no parameters"
        raise ValueError(f"{unknown[0]}: schedule {name!r} has no parameter {unknown[0]!r}; it takes {takes}")
    out = {}
    for key, value in given.items():
        p = allowed[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
                (p.kind == "INT" and value != int(value)):
            raise ValueError(f"{key}: expected a {'whole ' if p.kind == 'INT' else ''}number, got {value!r}")
        if not p.lo <= value <= p.hi:
            raise ValueError(f"{key}: {value} is outside the allowed range {p.lo}..{p.hi}")
        out[key] = int(value) if p.kind == "INT" else float(value)
    if name == "linear_quadratic_custom" and out.get("linear_steps") == 0:
        out["linear_steps"] = None
    return out


def schedule_sigmas(ms: ModelSamplingLike, name: str, steps: int, denoise: float = 1.0,
                    **params: Any) -> torch.Tensor:
    """The sigmas of a schedule (``steps + 1`` values ending in 0 at denoise 1). Denoise below 1: core's rule
    (schedule ``int(steps / denoise)`` steps, keep the last ``steps + 1``), or for AYS/GITS their nodes' rule."""
    schedule = SCHEDULES.get(name)
    if schedule is None:
        raise ValueError(f"schedule: unknown schedule {name!r}; allowed: {', '.join(SCHEDULE_NAMES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 10000:
        raise ValueError(f"steps: expected an integer in 1..10000, got {steps!r}")
    if isinstance(denoise, bool) or not isinstance(denoise, (int, float)) or not 0.0 <= denoise <= 1.0:
        raise ValueError(f"denoise: expected a number in 0.0..1.0, got {denoise!r}")
    kw = _params(schedule, name, params)
    if denoise <= 0.0:
        return torch.zeros([0], dtype=torch.float32)
    if schedule.own_denoise:
        return schedule.fn(ms, steps, denoise=float(denoise), **kw).to(torch.float32)
    if denoise > 0.9999:
        return schedule.fn(ms, steps, **kw).to(torch.float32)
    return schedule.fn(ms, int(steps / denoise), **kw).to(torch.float32)[-(steps + 1):]
