"""From node widgets to the exact sigma slice a sampler runs: the denoise rule and start/end slicing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .model_sampling import ModelSamplingLike
from .schedules import calculate_sigmas

__all__ = ["DISCARD_PENULTIMATE_SIGMA_SAMPLERS", "ksampler_sigmas", "slice_sigmas", "SigmaPlan", "plan_sigmas"]

#: Samplers whose schedule is computed for steps+1 and then loses its penultimate sigma
#: (their last step would otherwise be a second-order step to a near-zero sigma).
DISCARD_PENULTIMATE_SIGMA_SAMPLERS = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})


ScheduleFn = Callable[[ModelSamplingLike, int], torch.Tensor]


def _schedule(ms: ModelSamplingLike, scheduler: str, sampler_name: str, steps: int,
              schedule_fn: ScheduleFn | None = None) -> torch.Tensor:
    calc = schedule_fn if schedule_fn is not None else (lambda m, n: calculate_sigmas(m, scheduler, n))
    if sampler_name in DISCARD_PENULTIMATE_SIGMA_SAMPLERS:
        sigmas = calc(ms, steps + 1)
        return torch.cat([sigmas[:-2], sigmas[-1:]])
    return calc(ms, steps)


def ksampler_sigmas(ms: ModelSamplingLike, scheduler: str, sampler_name: str, steps: int,
                    denoise: float | None = 1.0, schedule_fn: ScheduleFn | None = None) -> torch.Tensor:
    """The schedule KSampler starts from, after the denoise rule.

    ``denoise`` > 0.9999 (or None) keeps the full schedule; <= 0 gives an empty one; otherwise the
    schedule is built for ``int(steps / denoise)`` steps (a truncating Python double division) and
    its last ``steps + 1`` sigmas are kept. ``schedule_fn(ms, steps)`` replaces the registry's scheduler.
    """
    if denoise is None or denoise > 0.9999:
        return _schedule(ms, scheduler, sampler_name, steps, schedule_fn)
    if denoise <= 0.0:
        return torch.zeros([0], dtype=torch.float32)
    return _schedule(ms, scheduler, sampler_name, int(steps / denoise), schedule_fn)[-(steps + 1):]


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


def plan_sigmas(ms: ModelSamplingLike, scheduler: str, sampler_name: str, steps: int,
                denoise: float | None = 1.0, start_step: int | None = None, last_step: int | None = None,
                force_full_denoise: bool = False, *, schedule_fn: ScheduleFn | None = None,
                sigmas: torch.Tensor | None = None) -> SigmaPlan:
    """The full schedule and the slice a node runs. ``sigmas`` (a SIGMAS input) replaces scheduler, steps and
    denoise; KSampler Advanced slices it exactly as its own schedule."""
    if sigmas is not None:
        full = sigmas.detach().to(torch.float32).cpu().clone()
    else:
        full = ksampler_sigmas(ms, scheduler, sampler_name, steps, denoise, schedule_fn)
    sliced = slice_sigmas(full, start_step, last_step, force_full_denoise)
    start = 0 if start_step is None or sliced is None else start_step
    return SigmaPlan(full=full, sigmas=sliced, start_index=start)
