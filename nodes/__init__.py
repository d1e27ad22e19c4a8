"""ComfyUI node classes and their registry. Thin: a node checks its widgets, builds one SamplingRequest and lets the
host run it (``ksampler.build_request``/``run_sampler``)."""
from __future__ import annotations

from .fit import StepwiseFitSchedule, StepwiseFitSolver
from .efficient import StepwiseKSamplerAdvancedEfficient, StepwiseKSamplerEfficient
from .ksampler import StepwiseKSampler, StepwiseKSamplerAdvanced
from .noise import StepwiseNoise
from .sampler import StepwiseSampler
from .schedule import StepwiseSchedule
from .scripts import StepwiseHiResFixScript, StepwiseNoiseScript, StepwiseXYPlot
from .stages import StepwiseStages

NODE_CLASS_MAPPINGS = {
    "StepwiseKSampler": StepwiseKSampler,
    "StepwiseKSamplerAdvanced": StepwiseKSamplerAdvanced,
    "StepwiseStages": StepwiseStages,
    "StepwiseKSamplerEfficient": StepwiseKSamplerEfficient,
    "StepwiseKSamplerAdvancedEfficient": StepwiseKSamplerAdvancedEfficient,
    "StepwiseHiResFixScript": StepwiseHiResFixScript,
    "StepwiseNoiseScript": StepwiseNoiseScript,
    "StepwiseNoise": StepwiseNoise,
    "StepwiseSchedule": StepwiseSchedule,
    "StepwiseSampler": StepwiseSampler,
    "StepwiseXYPlot": StepwiseXYPlot,
    "StepwiseFitSchedule": StepwiseFitSchedule,
    "StepwiseFitSolver": StepwiseFitSolver,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "StepwiseKSampler": "KSampler (Stepwise)",
    "StepwiseKSamplerAdvanced": "KSampler Advanced (Stepwise)",
    "StepwiseStages": "Stages (Stepwise)",
    "StepwiseKSamplerEfficient": "KSampler Efficient (Stepwise)",
    "StepwiseKSamplerAdvancedEfficient": "KSampler Adv. Efficient (Stepwise)",
    "StepwiseHiResFixScript": "HiRes-Fix Script (Stepwise)",
    "StepwiseNoiseScript": "SDE Noise Script (Stepwise)",
    "StepwiseNoise": "Noise (Stepwise)",
    "StepwiseSchedule": "Schedule (Stepwise)",
    "StepwiseSampler": "Sampler (Stepwise)",
    "StepwiseXYPlot": "XY Plot (Stepwise)",
    "StepwiseFitSchedule": "Fit Schedule (Stepwise)",
    "StepwiseFitSolver": "Fit Solver (Stepwise)",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "StepwiseKSampler", "StepwiseKSamplerAdvanced",
           "StepwiseStages", "StepwiseKSamplerEfficient", "StepwiseKSamplerAdvancedEfficient", "StepwiseHiResFixScript",
           "StepwiseNoiseScript", "StepwiseNoise", "StepwiseSchedule", "StepwiseSampler", "StepwiseXYPlot", "StepwiseFitSchedule",
           "StepwiseFitSolver"]
