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
    SigmaPlan,
    ksampler_sigmas,
    plan_sigmas,
    slice_sigmas,
)

__all__ = [
    "DiscreteModelSampling",
    "ModelSamplingLike",
    "reshape_sigma",
    "SCHEDULERS",
    "SCHEDULER_NAMES",
    "SchedulerHandler",
    "calculate_sigmas",
    "SigmaPlan",
    "ksampler_sigmas",
    "plan_sigmas",
    "slice_sigmas",
]

