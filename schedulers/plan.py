"""From node widgets to the exact sigma slice a sampler runs: the denoise rule and start/end slicing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .model_sampling import ModelSamplingLike
from .schedules import calculate_sigmas

__all__ = ["ksampler_sigmas", "slice_sigmas", "SigmaPlan", "plan_sigmas", "step_at_sigma", "switch_step",
           "plan_stages", "SWITCH_UNITS"]

#: how a switch point is given: a noise level (the model's sigma), a step number, or a fraction of the steps
SWITCH_UNITS = ("sigma", "step", "fraction")


ScheduleFn = Callable[[ModelSamplingLike, int], torch.Tensor]


def _schedule(ms: ModelSamplingLike, scheduler: str, discard_penultimate: bool, steps: int,
              schedule_fn: ScheduleFn | None = None) -> torch.Tensor:
    """``discard_penultimate`` (a sampler trait, ComfyUI's rule for dpm_2 and uni_pc): the schedule is computed for
    steps+1 and loses its penultimate sigma (the last step would otherwise be a second-order step to a near-zero
    sigma)."""
    if not isinstance(discard_penultimate, bool):
        raise TypeError(f"discard_penultimate: expected True or False (a sampler trait), got {discard_penultimate!r}")
    calc = schedule_fn if schedule_fn is not None else (lambda m, n: calculate_sigmas(m, scheduler, n))
    if discard_penultimate:
        sigmas = calc(ms, steps + 1)
        return torch.cat([sigmas[:-2], sigmas[-1:]])
    return calc(ms, steps)


def ksampler_sigmas(ms: ModelSamplingLike, scheduler: str, discard_penultimate: bool, steps: int,
                    denoise: float | None = 1.0, schedule_fn: ScheduleFn | None = None) -> torch.Tensor:
    """The schedule KSampler starts from, after the denoise rule.

    ``denoise`` > 0.9999 (or None) keeps the full schedule; <= 0 gives an empty one; otherwise the
    schedule is built for ``int(steps / denoise)`` steps (a truncating Python double division) and
    its last ``steps + 1`` sigmas are kept. ``schedule_fn(ms, steps)`` replaces the registry's scheduler.
    """
    if denoise is None or denoise > 0.9999:
        return _schedule(ms, scheduler, discard_penultimate, steps, schedule_fn)
    if denoise <= 0.0:
        return torch.zeros([0], dtype=torch.float32)
    return _schedule(ms, scheduler, discard_penultimate, int(steps / denoise), schedule_fn)[-(steps + 1):]


def slice_sigmas(sigmas: torch.Tensor, start_step: int | None, last_step: int | None,
                 force_full_denoise: bool) -> torch.Tensor | None:
    """KSamplerAdvanced slicing. Returns ``None`` when the node must return its input unchanged.

    End first: keep ``sigmas[:last+1]`` when ``last < len-1`` and, unless leftover noise is wanted,
    set the last kept sigma to 0. Then start: keep ``sigmas[start:]`` when ``start < len-1``.
    """
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[:last_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step < len(sigmas) - 1:
            sigmas = sigmas[start_step:]
        else:
            return None
    return sigmas


def step_at_sigma(sigmas: torch.Tensor, boundary: float) -> int:
    """The step a run switches at for a noise-level boundary: the first step whose sigma is below ``boundary``
    (steps at or above it belong to the earlier stage; Wan 2.2's expert switch). ``len(sigmas) - 1`` (= steps) when
    no step is below it."""
    below = (sigmas[:-1] < float(boundary)).nonzero()
    return int(below[0, 0]) if below.numel() else len(sigmas) - 1


def switch_step(sigmas: torch.Tensor, value: float, unit: str) -> int:
    """A switch point as a step of the schedule ``sigmas`` (steps + 1 values): ``unit`` is one of SWITCH_UNITS."""
    steps = len(sigmas) - 1
    if unit == "sigma":
        return step_at_sigma(sigmas, value)
    if unit == "step":
        return max(0, min(steps, int(round(value))))
    if unit == "fraction":
        return max(0, min(steps, int(round(float(value) * steps))))
    raise ValueError(f"switch unit: {unit!r} is not one of {', '.join(SWITCH_UNITS)}")


def plan_stages(full: torch.Tensor, until: list[float], unit: str) -> list[tuple[int, int]]:
    """[(first step, end step)] per stage for the full schedule ``full`` and the switch points ``until`` (the ones
    that are set, in order). A ValueError names a switch point that comes before the previous one."""
    bounds = [0]
    for k, value in enumerate(until, start=1):
        step = switch_step(full, value, unit)
        if step < bounds[-1]:
            raise ValueError(f"until_{k}: {value:g} ({unit}) switches at step {step}, before stage {k}'s start "
                             f"(step {bounds[-1]}); switch points must not go back")
        bounds.append(step)
    bounds.append(len(full) - 1)
    return list(zip(bounds[:-1], bounds[1:]))


@dataclass(frozen=True)
class SigmaPlan:
    """What a sampler node will run: the full schedule, the slice, and whether it samples at all."""

    full: torch.Tensor
    sigmas: torch.Tensor | None
    start_index: int

    @property
    def runs(self) -> bool:
        return self.sigmas is not None and self.sigmas.numel() > 0

    @property
    def total_steps(self) -> int:
        return 0 if self.sigmas is None else max(int(self.sigmas.numel()) - 1, 0)


def plan_sigmas(ms: ModelSamplingLike, scheduler: str, discard_penultimate: bool, steps: int,
                denoise: float | None = 1.0, start_step: int | None = None, last_step: int | None = None,
                force_full_denoise: bool = False, *, schedule_fn: ScheduleFn | None = None,
                sigmas: torch.Tensor | None = None) -> SigmaPlan:
    """The full schedule and the slice a node runs. ``sigmas`` (a SIGMAS input) replaces scheduler, steps and
    denoise; KSampler Advanced slices it exactly as its own schedule."""
    if sigmas is not None:
        full = sigmas.detach().to(torch.float32).cpu().clone()
    else:
        full = ksampler_sigmas(ms, scheduler, discard_penultimate, steps, denoise, schedule_fn)
    sliced = slice_sigmas(full, start_step, last_step, force_full_denoise)
    start = 0 if start_step is None or sliced is None else start_step
    return SigmaPlan(full=full, sigmas=sliced, start_index=start)
