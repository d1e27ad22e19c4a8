"""ComfyUI node classes. Thin: they validate and translate widgets, then call the sampling core."""
from __future__ import annotations

from .fit import StepwiseFitSchedule
from .efficient import StepwiseKSamplerAdvancedEfficient, StepwiseKSamplerEfficient
from .ksampler import StepwiseKSampler, StepwiseKSamplerAdvanced
from .noise import StepwiseNoise
from .sampler import StepwiseSampler
from .schedule import StepwiseSchedule
from .script import StepwiseHiResFixScript, StepwiseNoiseScript
from .xyplot import StepwiseXYPlot

NODE_CLASS_MAPPINGS = {
    "StepwiseKSampler": StepwiseKSampler,
    "StepwiseKSamplerAdvanced": StepwiseKSamplerAdvanced,
    "StepwiseKSamplerEfficient": StepwiseKSamplerEfficient,
    "StepwiseKSamplerAdvancedEfficient": StepwiseKSamplerAdvancedEfficient,
    "StepwiseHiResFixScript": StepwiseHiResFixScript,
    "StepwiseNoiseScript": StepwiseNoiseScript,
    "StepwiseNoise": StepwiseNoise,
    "StepwiseSchedule": StepwiseSchedule,
    "StepwiseSampler": StepwiseSampler,
    "StepwiseXYPlot": StepwiseXYPlot,
    "StepwiseFitSchedule": StepwiseFitSchedule,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "StepwiseKSampler": "KSampler (Stepwise)",
    "StepwiseKSamplerAdvanced": "KSampler Advanced (Stepwise)",
    "StepwiseKSamplerEfficient": "KSampler Efficient (Stepwise)",
    "StepwiseKSamplerAdvancedEfficient": "KSampler Adv. Efficient (Stepwise)",
    "StepwiseHiResFixScript": "HiRes-Fix Script (Stepwise)",
    "StepwiseNoiseScript": "SDE Noise Script (Stepwise)",
    "StepwiseNoise": "Noise (Stepwise)",
    "StepwiseSchedule": "Schedule (Stepwise)",
    "StepwiseSampler": "Sampler (Stepwise)",
    "StepwiseXYPlot": "XY Plot (Stepwise)",
    "StepwiseFitSchedule": "Fit Schedule (Stepwise)",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "StepwiseKSampler", "StepwiseKSamplerAdvanced",
           "StepwiseKSamplerEfficient", "StepwiseKSamplerAdvancedEfficient", "StepwiseHiResFixScript",
           "StepwiseNoiseScript", "StepwiseNoise", "StepwiseSchedule", "StepwiseSampler", "StepwiseXYPlot", "StepwiseFitSchedule"]
