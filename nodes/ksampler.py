"""Stepwise KSampler and KSampler Advanced: core ComfyUI's inputs, order, defaults and numbers."""
from __future__ import annotations

import logging
from typing import Any

from ..preview import PreviewConfig, PreviewHook, make_decoder
from ..sampling import SAMPLERS, RunInfo, common_ksampler
from ..schedulers import SCHEDULERS
from .bridge import as_backend, current_observer, is_comfy_model
from .noise import StepwiseNoiseValue
from .recipe import recipe_document, run_recipe
from .sampler import SamplerSpec
from .profile import combo_spec, current_profile, sampler_names, scheduler_names
from .schedule_api import remember_model_sampling
from .widgets import check_widgets

__all__ = ["StepwiseKSampler", "StepwiseKSamplerAdvanced", "run_common_ksampler", "make_step_callback", "ui_summary",
           "SPLIT_MODE_SPEC"]

log = logging.getLogger("stepwise")

SEED_SPEC = ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                     "tooltip": "The random seed used for creating the noise."})
STEPS_SPEC = ("INT", {"default": 20, "min": 1, "max": 10000, "tooltip": "The number of steps in the schedule."})
SIGMAS_SPEC = ("SIGMAS", {"tooltip": "When connected, replaces scheduler, steps and denoise (KSampler Advanced slices "
                                     "it with start/end as its own schedule): Schedule (Stepwise) or core's schedulers."})
SAMPLER_SPEC = ("SAMPLER", {"tooltip": "When connected, replaces sampler_name: Sampler (Stepwise) (any sampler with "
                                       "options) or, inside ComfyUI, core's SAMPLER nodes."})
NOISE_SPEC = ("NOISE", {"tooltip": "When connected, replaces the seed widget and add_noise: a Noise (Stepwise) node "
                                   "(per-item seeds, variations) or core's RandomNoise/DisableNoise."})
SPLIT_MODE_SPEC = (["comfy", "seamless"], {
    "default": "comfy",
    "tooltip": "comfy: ComfyUI's split (each node restarts its sampler's history and noise). seamless: chained nodes "
               "continue one run (history and noise carried in the LATENT): a split equals a single run."})
CFG_SPEC = ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                      "tooltip": "Classifier-free guidance scale."})


def sampler_inputs() -> dict[str, tuple]:
    return {
        "sampler_name": combo_spec(sampler_names(), {"tooltip": "The sampling algorithm."}),
        "scheduler": combo_spec(scheduler_names(), {"tooltip": "How the noise levels are spaced over the steps."}),
        "positive": ("CONDITIONING", {"tooltip": "What to include in the image."}),
        "negative": ("CONDITIONING", {"tooltip": "What to exclude from the image."}),
        "latent_image": ("LATENT", {"tooltip": "The latent image to denoise."}),
    }


def _latent_format(model: Any):
    fmt = getattr(model, "latent_format", None)
    if fmt is None and is_comfy_model(model):
        fmt = model.model.latent_format
    return fmt


def make_step_callback(model: Any, steps: int, preview: PreviewConfig | None = None):
    """(callback, disable_pbar) for a sampler node.

    Standalone (an active observer): interrupt check, the node's own previews, the observer's hooks.
    Inside ComfyUI: with a per-node ``preview`` config, our previewer reporting through ComfyUI's
    progress bar (never its global preview setting); without one, ComfyUI's own callback exactly
    as the core KSampler uses it."""
    observer = current_observer()
    if observer is not None:
        hook = None
        preview = preview if preview is not None else observer.default_preview
        if preview is not None and preview.method != "none":
            def sink(step: int, total: int, image) -> None:
                if image is not None and observer.on_preview is not None:
                    observer.on_preview(step, total, image)
            hook = PreviewHook(make_decoder(preview.method, _latent_format(model), notice=observer.on_notice), sink,
                               preview)

        def callback(step, x0, x, total):
            observer.check_interrupt()
            if hook is not None:
                hook(step, x0, x, total)
            if observer.on_step is not None:
                observer.on_step(step, x0, x, total)
        return callback, not observer.show_progress
    if is_comfy_model(model):
        import comfy.utils

        if preview is not None:
            from .comfy_bridge import comfy_preview_callback

            return comfy_preview_callback(model, steps, preview), not comfy.utils.PROGRESS_BAR_ENABLED
        import latent_preview

        return latent_preview.prepare_callback(model, steps), not comfy.utils.PROGRESS_BAR_ENABLED
    return None, True


def run_common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                        preview: PreviewConfig | None = None, unique_id=None, **kw):
    """From node arguments to :func:`common_ksampler` (used by every node); returns (out, RunInfo)."""
    callback, disable_pbar = make_step_callback(model, steps, preview)
    info = RunInfo()
    noise = kw.pop("noise", None)
    if noise is not None:
        kw["noise"] = noise.source if isinstance(noise, StepwiseNoiseValue) else noise
    sampler = kw.pop("sampler", None)
    if sampler is not None:
        if isinstance(sampler, SamplerSpec):
            sampler_name, kw["sampler_extra"] = sampler.name, sampler.kwargs()
        elif is_comfy_model(model) and hasattr(sampler, "sample") and hasattr(sampler, "sampler_function"):
            from .comfy_bridge import NativeSampler

            kw["native_sampler"] = NativeSampler.of(sampler)
            sampler_name = kw["native_sampler"].plan_name(sampler_name)
        else:
            raise ValueError(f"sampler: expected a SAMPLER (Sampler (Stepwise), or core's KSamplerSelect inside "
                             f"ComfyUI), got {type(sampler).__name__}")
    if kw.get("sigmas") is None:
        kw.pop("sigmas", None)
    backend = as_backend(model)
    remember_model_sampling(unique_id, getattr(backend, "model_sampling", None))
    if sampler_name not in SAMPLERS and is_comfy_model(model) and "native_sampler" not in kw:
        from .comfy_bridge import native_sampler

        kw["native_sampler"] = native_sampler(sampler_name)  # a newer ComfyUI's sampler we do not implement
    if scheduler not in SCHEDULERS and is_comfy_model(model):
        from .comfy_bridge import native_schedule

        kw["native_schedule"] = native_schedule(scheduler)
    profile = kw.pop("profile", None) or current_profile()
    out = common_ksampler(backend, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                          latent_image, callback=callback, disable_pbar=disable_pbar, info=info, profile=profile, **kw)
    info.recipe = run_recipe(info, unique_id, sampler_name, scheduler, steps, cfg, kw, profile, model)
    report_notes(info, unique_id)
    observer = current_observer()
    if observer is not None:
        observer.runs.append(info)
    return out, info


PLOT_POINTS = 64


def ui_summary(info: RunInfo) -> dict:
    """What the editor's plot needs from a run (not the whole sigma list): at most PLOT_POINTS
    ``[step, sigma]`` points (5 significant digits), the step count, notes and the seamless hand-off."""
    summary: dict = {"sampled": bool(info.sampled), "steps": 0, "points": []}
    if info.sigmas is not None and info.sigmas.numel():
        values = info.sigmas.tolist()
        n = len(values)
        idx = sorted({round(k * (n - 1) / (PLOT_POINTS - 1)) for k in range(PLOT_POINTS)}) if n > PLOT_POINTS \
            else range(n)
        summary["steps"] = n - 1
        summary["points"] = [[i, float(f"{values[i]:.5g}")] for i in idx]
    if info.notes:
        summary["notes"] = list(info.notes)
    if info.seamless:
        summary["seamless"] = dict(info.seamless)
    if info.noise_source is not None:
        summary["noise"] = info.noise_source.describe()
    recipe = getattr(info, "recipe", None)
    if recipe is not None:
        summary["recipe"] = {k: v for k, v in recipe.items() if k != "sigmas"}  # the sigmas are the points above
    return summary


def report_notes(info: RunInfo, unique_id=None) -> None:
    """A run's notes (e.g. why a seamless hand-off restarted) go to the log and the standalone runner."""
    observer = current_observer()
    for text in info.notes:
        log.warning("stepwise node %s: %s", unique_id if unique_id is not None else "?", text)
        if observer is not None and observer.on_notice is not None:
            observer.on_notice(f"node {unique_id}: {text}" if unique_id is not None else text)


def with_ui(model, out: tuple, info: RunInfo):
    """Inside an editor (ComfyUI, or ``stepwise serve``), also send the node's plot what ran."""
    observer = current_observer()
    if not (is_comfy_model(model) or (observer is not None and observer.want_ui)):
        return out
    ui = {"stepwise": [ui_summary(info)]}
    recipe = getattr(info, "recipe", None)
    if recipe is not None:  # the whole recipe, with the sigmas that ran (what a save node or the history records)
        ui["stepwise_recipe"] = [recipe_document([dict(recipe)], None, None)]
    return {"ui": ui, "result": out}


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
        }, "optional": {
            "noise": NOISE_SPEC,
            "sigmas": SIGMAS_SPEC,
            "sampler": SAMPLER_SPEC,
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "stepwise/sampling"
    DESCRIPTION = "KSampler with Stepwise's sampling core: identical results to the core node."

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0,
               unique_id=None, noise=None, sigmas=None, sampler=None):
        check_widgets(type(self), {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler_name,
                                   "scheduler": scheduler, "denoise": denoise})
        out, info = run_common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                        latent_image, denoise=denoise, unique_id=unique_id, noise=noise,
                                        sigmas=sigmas, sampler=sampler)
        return with_ui(model, out, info)


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
        }, "optional": {
            "split_mode": SPLIT_MODE_SPEC,
            "noise": NOISE_SPEC,
            "sigmas": SIGMAS_SPEC,
            "sampler": SAMPLER_SPEC,
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "stepwise/sampling"
    DESCRIPTION = "KSampler (Advanced) with Stepwise's sampling core: identical results to the core node."

    def sample(self, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
               latent_image, start_at_step, end_at_step, return_with_leftover_noise, denoise=1.0, unique_id=None,
               split_mode="comfy", noise=None, sigmas=None, sampler=None):
        check_widgets(type(self), {"add_noise": add_noise, "noise_seed": noise_seed, "steps": steps, "cfg": cfg,
                                   "sampler_name": sampler_name, "scheduler": scheduler,
                                   "start_at_step": start_at_step, "end_at_step": end_at_step,
                                   "return_with_leftover_noise": return_with_leftover_noise,
                                   "split_mode": split_mode})
        out, info = run_common_ksampler(model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                        latent_image, denoise=denoise, disable_noise=add_noise == "disable",
                                        start_step=start_at_step, last_step=end_at_step,
                                        force_full_denoise=return_with_leftover_noise != "enable", unique_id=unique_id,
                                        split_mode=split_mode, noise=noise, sigmas=sigmas, sampler=sampler)
        return with_ui(model, out, info)
