"""Sigma schedules: a name -> handler registry, the denoise rule and start/end slicing.

Every handler returns ``steps + 1`` float32 sigmas ending in 0 (``ddim_uniform`` and ``beta`` may
return a different count, exactly as ComfyUI does). Pure torch/numpy/scipy: no ``comfy`` import.
"""
from __future__ import annotations

from .model_sampling import DiscreteModelSampling, ModelSamplingLike, reshape_sigma
from .schedules import (
    SCHEDULERS,
    SCHEDULER_NAMES,
    SchedulerHandler,
    calculate_sigmas,
)
from .plan import (
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS,
    SigmaPlan,
    ksampler_sigmas,
    plan_sigmas,
    slice_sigmas,
)
from .fit import FITTABLE_SAMPLERS, FitResult, fit_schedule, fit_schedule_report

__all__ = [
    "DiscreteModelSampling",
    "ModelSamplingLike",
    "reshape_sigma",
    "SCHEDULERS",
    "SCHEDULER_NAMES",
    "SchedulerHandler",
    "calculate_sigmas",
    "DISCARD_PENULTIMATE_SIGMA_SAMPLERS",
    "SigmaPlan",
    "ksampler_sigmas",
    "plan_sigmas",
    "slice_sigmas",
    "fit_schedule",
    "fit_schedule_report",
    "FitResult",
    "FITTABLE_SAMPLERS",
]
