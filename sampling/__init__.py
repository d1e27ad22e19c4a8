"""Sampling core: samplers with the k-diffusion signature, noise, the CFG denoiser and
``common_ksampler``. Pure torch (plus scipy/torchsde for a few samplers): no ``comfy`` import."""
from __future__ import annotations

from .core import RunInfo, SamplingBackend, StepCallback, common_ksampler, validate_latent
from .request import SamplingRequest
from .fit import FITTABLE_SAMPLERS, FitResult, fit_schedule, fit_schedule_report
from .denoiser import CFGDenoiser, StandaloneModel, parse_conditioning, reshape_mask
from .latent_format import SD15, LatentFormat
from .noise import (SDE_NOISE_SOURCES, SEED_MAX, BrownianTreeNoiseSampler, FastBrownianNoiseSampler,
                    default_noise_sampler, prepare_noise, validate_seed)
from .registry import (CFG_PP_SAMPLERS, RANDOM_INPAINT_NOISE_SAMPLERS, SAMPLER_NAMES, SAMPLERS, TRAITS, SamplerSpec,
                       SamplerTraits, get_sampler)

__all__ = [
    "SAMPLERS", "SAMPLER_NAMES", "CFG_PP_SAMPLERS", "RANDOM_INPAINT_NOISE_SAMPLERS", "get_sampler",
    "fit_schedule", "fit_schedule_report", "FitResult", "FITTABLE_SAMPLERS",
    "common_ksampler", "SamplingRequest", "RunInfo", "SamplingBackend", "StepCallback", "validate_latent",
    "StandaloneModel", "CFGDenoiser", "parse_conditioning", "reshape_mask",
    "LatentFormat", "SD15",
    "SEED_MAX", "validate_seed", "prepare_noise", "default_noise_sampler", "BrownianTreeNoiseSampler",
    "FastBrownianNoiseSampler", "SDE_NOISE_SOURCES", "TRAITS", "SamplerTraits", "SamplerSpec",
]
