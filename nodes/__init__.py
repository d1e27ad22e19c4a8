"""ComfyUI node classes. Thin: they validate and translate widgets, then call the sampling core."""
from __future__ import annotations

from .ksampler import StepwiseKSampler, StepwiseKSamplerAdvanced

NODE_CLASS_MAPPINGS = {
    "StepwiseKSampler": StepwiseKSampler,
    "StepwiseKSamplerAdvanced": StepwiseKSamplerAdvanced,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "StepwiseKSampler": "KSampler (Stepwise)",
    "StepwiseKSamplerAdvanced": "KSampler Advanced (Stepwise)",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "StepwiseKSampler", "StepwiseKSamplerAdvanced"]
