"""The nine ComfyUI schedulers as plain functions ``(model_sampling, steps) -> sigmas``.

Each reproduces ComfyUI's float32 values exactly (checked against ``golden/sigmas.json``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy
import torch

from .model_sampling import ModelSamplingLike

__all__ = ["SchedulerHandler", "SCHEDULERS", "SCHEDULER_NAMES", "calculate_sigmas"]


def _f32(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def _bounds(ms: ModelSamplingLike) -> tuple[float, float]:
    return float(ms.sigma_min), float(ms.sigma_max)


def simple_schedule(ms: ModelSamplingLike, steps: int) -> torch.Tensor:
    """Evenly strided entries of the model's sigma table, from the top."""
    table = ms.sigmas
    stride = len(table) / steps
    return _f32([float(table[-(1 + int(i * stride))]) for i in range(steps)] + [0.0])


def ddim_uniform_schedule(ms: ModelSamplingLike, steps: int) -> torch.Tensor:
    """DDIM's uniform timestep spacing (Song et al. 2021): table[1], table[1+k], ... reversed."""
    table = ms.sigmas
    if math.isclose(float(table[1]), 0, abs_tol=0.00001):
        steps += 1
        sigs: list[float] = []
    else:
        sigs = [0.0]
    stride = max(len(table) // steps, 1)
    for idx in range(1, len(table), stride):
        sigs.append(float(table[idx]))
    return _f32(sigs[::-1])


def _timestep_schedule(ms: ModelSamplingLike, steps: int, sgm: bool) -> torch.Tensor:
    start = ms.timestep(torch.as_tensor(ms.sigma_max))
    end = ms.timestep(torch.as_tensor(ms.sigma_min))
    append_zero = True
    if sgm:
        timesteps = torch.linspace(start, end, steps + 1)[:-1]
    else:
        if math.isclose(float(ms.sigma(end)), 0, abs_tol=0.00001):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(start, end, steps)
    sigs = [float(ms.sigma(ts)) for ts in timesteps]
    if append_zero:
        sigs.append(0.0)
    return _f32(sigs)


def normal_schedule(ms: ModelSamplingLike, steps: int) -> torch.Tensor:
    """Timesteps evenly spaced from T to 0 (inclusive), mapped to sigma."""
    return _timestep_schedule(ms, steps, sgm=False)


def sgm_uniform_schedule(ms: ModelSamplingLike, steps: int) -> torch.Tensor:
    """SGM's uniform timesteps: like ``normal`` without the endpoint at t=0."""
    return _timestep_schedule(ms, steps, sgm=True)


def karras_ramp(ramp, sigma_max: float, sigma_min: float, rho: float = 7.0):
    """Karras et al. (2022), eq. 5, at the points of ``ramp`` (0..1; a tensor or an array, in its own precision)."""
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def karras_schedule(ms: ModelSamplingLike, steps: int, rho: float = 7.0) -> torch.Tensor:
    """The rho=7 schedule of Karras et al. (2022), eq. 5 (ComfyUI's float32 numbers)."""
    sigma_min, sigma_max = _bounds(ms)
    return _append_zero(karras_ramp(torch.linspace(0, 1, steps), sigma_max, sigma_min, rho))


def exponential_schedule(ms: ModelSamplingLike, steps: int) -> torch.Tensor:
    """Sigmas evenly spaced in log sigma."""
    sigma_min, sigma_max = _bounds(ms)
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp())


def beta_schedule(ms: ModelSamplingLike, steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Timesteps at quantiles of a Beta(0.6, 0.6) distribution (Lee et al. 2024, arXiv:2407.12173)."""
    import scipy.stats  # scipy is heavy; only this scheduler (and lms) need it

    total_timesteps = len(ms.sigmas) - 1
    ts = 1 - numpy.linspace(0, 1, steps, endpoint=False)
    ts = numpy.rint(scipy.stats.beta.ppf(ts, alpha, beta) * total_timesteps)
    sigs: list[float] = []
    last_t = -1.0
    for t in ts:
        if t != last_t:
            sigs.append(float(ms.sigmas[int(t)]))
        last_t = t
    sigs.append(0.0)
    return _f32(sigs)


def linear_quadratic_schedule(ms: ModelSamplingLike, steps: int, threshold_noise: float = 0.025,
                              linear_steps: int | None = None) -> torch.Tensor:
    """Mochi's schedule: linear up to a noise threshold, then quadratic (Genmo 2024)."""
    if steps == 1:
        schedule = [1.0, 0.0]
    else:
        n_lin = steps // 2 if linear_steps is None else linear_steps
        linear = [i * threshold_noise / n_lin for i in range(n_lin)]
        step_diff = n_lin - threshold_noise * steps
        n_quad = steps - n_lin
        quad_coef = step_diff / (n_lin * n_quad ** 2)
        lin_coef = threshold_noise / n_lin - 2 * step_diff / (n_quad ** 2)
        const = quad_coef * (n_lin ** 2)
        quadratic = [quad_coef * (i ** 2) + lin_coef * i + const for i in range(n_lin, steps)]
        schedule = [1.0 - v for v in linear + quadratic + [1.0]]
    return _f32(schedule) * torch.as_tensor(ms.sigma_max).cpu()


def kl_optimal_schedule(ms: ModelSamplingLike, steps: int) -> torch.Tensor:
    """The KL-optimal schedule of Sabour et al. (2024): tan of a linear ramp in atan(sigma).

    One step gives 0/0, i.e. a NaN first sigma, as in ComfyUI.
    """
    sigma_min, sigma_max = _bounds(ms)
    ramp = torch.arange(steps, dtype=torch.float).div_(steps - 1)
    sigmas = ramp.new_zeros(steps + 1)
    sigmas[:-1] = (ramp * math.atan(sigma_min) + (1 - ramp) * math.atan(sigma_max)).tan_()
    return sigmas


@dataclass(frozen=True)
class SchedulerHandler:
    """A registered scheduler. ``needs`` says what it reads from the model:
    ``"table"`` (the discrete sigma table), ``"timesteps"`` (sigma<->t maps) or ``"bounds"``."""

    fn: Callable[[ModelSamplingLike, int], torch.Tensor]
    needs: str
    description: str

    def __call__(self, model_sampling: ModelSamplingLike, steps: int) -> torch.Tensor:
        return self.fn(model_sampling, steps)


SCHEDULERS: dict[str, SchedulerHandler] = {
    "simple": SchedulerHandler(simple_schedule, "table", "evenly strided sigma-table entries"),
    "sgm_uniform": SchedulerHandler(sgm_uniform_schedule, "timesteps", "uniform timesteps without t=0"),
    "karras": SchedulerHandler(karras_schedule, "bounds", "Karras et al. rho=7"),
    "exponential": SchedulerHandler(exponential_schedule, "bounds", "uniform in log sigma"),
    "ddim_uniform": SchedulerHandler(ddim_uniform_schedule, "table", "DDIM uniform spacing"),
    "beta": SchedulerHandler(beta_schedule, "table", "Beta(0.6, 0.6) quantiles"),
    "normal": SchedulerHandler(normal_schedule, "timesteps", "uniform timesteps T..0"),
    "linear_quadratic": SchedulerHandler(linear_quadratic_schedule, "bounds", "Mochi linear+quadratic"),
    "kl_optimal": SchedulerHandler(kl_optimal_schedule, "bounds", "KL-optimal (Sabour et al.)"),
}
SCHEDULER_NAMES: list[str] = list(SCHEDULERS)


def calculate_sigmas(model_sampling: ModelSamplingLike, scheduler_name: str, steps: int) -> torch.Tensor:
    """The raw schedule of ``steps`` steps; raises ``ValueError`` for an unknown name."""
    handler = SCHEDULERS.get(scheduler_name)
    if handler is None:
        raise ValueError(f"scheduler: unknown scheduler {scheduler_name!r}; allowed: {', '.join(SCHEDULER_NAMES)}")
    return handler(model_sampling, steps)
