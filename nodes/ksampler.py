"""Stepwise KSampler and KSampler Advanced: core ComfyUI's inputs, order, defaults and numbers."""
from __future__ import annotations

from typing import Any

from ..sampling import SAMPLER_NAMES, RunInfo, common_ksampler
from ..schedulers import SCHEDULER_NAMES
from .bridge import as_backend, current_observer, is_comfy_model
from .widgets import check_widgets

__all__ = ["StepwiseKSampler", "StepwiseKSamplerAdvanced", "run_common_ksampler"]

SEED_SPEC = ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                     "tooltip": "The random seed used for creating the noise."})
STEPS_SPEC = ("INT", {"default": 20, "min": 1, "max": 10000, "tooltip": "The number of steps in the schedule."})
CFG_SPEC = ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                      "tooltip": "Classifier-free guidance scale."})


def sampler_inputs() -> dict[str, tuple]:
    return {
        "sampler_name": (SAMPLER_NAMES, {"tooltip": "The sampling algorithm."}),
        "scheduler": (SCHEDULER_NAMES, {"tooltip": "How the noise levels are spaced over the steps."}),
        "positive": ("CONDITIONING", {"tooltip": "What to include in the image."}),
        "negative": ("CONDITIONING", {"tooltip": "What to exclude from the image."}),
        "latent_image": ("LATENT", {"tooltip": "The latent image to denoise."}),
    }


def _step_callback(model: Any, steps: int):
    """Inside ComfyUI: ComfyUI's own progress bar and preview callback, exactly as the core
    KSampler uses it. Standalone: the active observer's step hook, if any."""
    observer = current_observer()
    if observer is not None:
        return observer.on_step, not observer.show_progress
    if is_comfy_model(model):
        import comfy.utils
        import latent_preview

        return latent_preview.prepare_callback(model, steps), not comfy.utils.PROGRESS_BAR_ENABLED
    return None, True


def run_common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, **kw):
    """Validate-free bridge from node arguments to :func:`common_ksampler` (used by every node)."""
    callback, disable_pbar = _step_callback(model, steps)
    info = RunInfo()
    out = common_ksampler(as_backend(model), seed, steps, cfg, sampler_name, scheduler, positive, negative,
                          latent_image, callback=callback, disable_pbar=disable_pbar, info=info, **kw)
    observer = current_observer()
    if observer is not None:
        observer.runs.append(info)
    return out, info


class StepwiseKSampler:
    """Drop-in for core KSampler: same widgets, same numbers."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model used for denoising the input latent."}),
            "seed": SEED_SPEC,
            "steps": STEPS_SPEC,
            "cfg": CFG_SPEC,
            **sampler_inputs(),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "How much of the schedule to run; below 1 keeps the input's structure."}),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "stepwise/sampling"
    DESCRIPTION = "KSampler with Stepwise's sampling core: identical results to the core node."

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0):
        check_widgets(type(self), {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler_name,
                                   "scheduler": scheduler, "denoise": denoise})
        out, _ = run_common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                     latent_image, denoise=denoise)
        return out


class StepwiseKSamplerAdvanced:
    """Drop-in for core KSamplerAdvanced: add_noise, start/end step and leftover noise."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "add_noise": (["enable", "disable"],),
            "noise_seed": SEED_SPEC,
            "steps": STEPS_SPEC,
            "cfg": CFG_SPEC,
            **sampler_inputs(),
            "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
            "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
            "return_with_leftover_noise": (["disable", "enable"],),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "stepwise/sampling"
    DESCRIPTION = "KSampler (Advanced) with Stepwise's sampling core: identical results to the core node."

    def sample(self, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
               latent_image, start_at_step, end_at_step, return_with_leftover_noise, denoise=1.0):
        check_widgets(type(self), {"add_noise": add_noise, "noise_seed": noise_seed, "steps": steps, "cfg": cfg,
                                   "sampler_name": sampler_name, "scheduler": scheduler,
                                   "start_at_step": start_at_step, "end_at_step": end_at_step,
                                   "return_with_leftover_noise": return_with_leftover_noise})
        out, _ = run_common_ksampler(model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                     latent_image, denoise=denoise, disable_noise=add_noise == "disable",
                                     start_step=start_at_step, last_step=end_at_step,
                                     force_full_denoise=return_with_leftover_noise != "enable")
        return out
