"""Stepwise KSampler and KSampler Advanced: core ComfyUI's inputs, order, defaults and numbers.

Every sampler node goes the same way: its widgets and sockets become one :class:`~..sampling.SamplingRequest`
(:func:`build_request`), the host runs it (:func:`run_sampler`), and the host shows what ran (:func:`sampler_ui`).
"""
from __future__ import annotations

from typing import Any

from ..host import current_host, noise_socket, plot_summary
from ..host.api import remember_model_sampling
from ..host.profile import combo_spec, sampler_names, scheduler_names
from ..preview import PreviewConfig
from ..sampling import RunInfo, SamplingRequest, common_ksampler
from ..sampling.request import sigmas_tuple
from ..workflows.recipe import recipe_document, run_recipe
from ..workflows.widgets import check_widgets

__all__ = ["StepwiseKSampler", "StepwiseKSamplerAdvanced", "build_request", "run_sampler", "sampler_ui",
           "ui_summary", "full_schedule", "sigma_boundaries", "SPLIT_MODE_SPEC", "CFG_SPEC"]

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
    "default": "comfy", "advanced": True,
    "tooltip": "comfy: ComfyUI's split (each node restarts its sampler's history and noise). seamless: chained nodes "
               "continue one run (history and noise carried in the LATENT): a split equals a single run."})
def SIGMA_BOUNDARY_SPEC(which: str) -> tuple:  # noqa: N802 - a spec, like the constants beside it
    rule = "the first step whose noise level is below it" if which == "start" else \
        "before the first step whose noise level is below it"
    return ("FLOAT", {"default": -1.0, "min": -1.0, "max": 10000.0, "step": 0.001, "round": False, "advanced": True,
                      "tooltip": f"A noise level (the model's sigma) to {which} at instead of {which}_at_step: "
                                 f"{which}s {rule}. -1: use {which}_at_step."})


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


def build_request(widgets: dict, *, noise: Any = None, sigmas: Any = None, sampler: Any = None) -> SamplingRequest:
    """A sampler node's widgets (under their names on the node) and sockets as one request, under the host's
    behaviour profile."""
    host = current_host()
    request = SamplingRequest.from_widgets(host.profile(), **widgets)
    changes: dict = {}
    if noise is not None:
        changes["noise"] = noise_socket(noise)
    if sigmas is not None:
        changes["sigmas"] = sigmas_tuple(sigmas)
    if sampler is not None:
        fields = host.sampler_socket(sampler)
        plan_name = fields.pop("plan_name", None)
        if plan_name is not None:  # the host's own SAMPLER: the schedule rule of the sampler it recognises
            fields["sampler_name"] = plan_name(request.sampler_name)
        changes.update(fields)
    return request.replace(**changes) if changes else request


def run_sampler(model: Any, request: SamplingRequest, positive, negative, latent_image, *,
                preview: PreviewConfig | None = None, unique_id: Any = None) -> tuple[tuple[dict], RunInfo]:
    """One run through :func:`common_ksampler` on the current host: (``(LATENT,)``, its :class:`RunInfo` with the
    recipe)."""
    host = current_host()
    backend = host.backend(model)
    remember_model_sampling(unique_id, getattr(backend, "model_sampling", None))
    request = host.resolve(request)
    callback, disable_pbar = host.step_callback(model, request.steps, preview, unique_id)
    info = RunInfo()
    out = common_ksampler(backend, request, positive, negative, latent_image, callback=callback, info=info,
                          disable_pbar=disable_pbar)
    info.recipe = run_recipe(info, unique_id, request, model)
    for text in info.notes:
        host.notice(text, unique_id)
    host.record(info)
    return out, info


def full_schedule(model: Any, request: SamplingRequest):
    """The whole schedule a request's run slices (before start/end), on the model it will run on."""
    from ..sampling.registry import discards_penultimate
    from ..schedulers.plan import plan_sigmas

    host = current_host()
    resolved = host.resolve(request)
    backend = host.backend(model)
    return plan_sigmas(backend.model_sampling, resolved.scheduler, discards_penultimate(resolved.sampler_name),
                       resolved.steps, resolved.denoise, schedule_fn=resolved.native_schedule,
                       sigmas=resolved.sigmas_tensor).full


def sigma_boundaries(model: Any, request: SamplingRequest, start_at_sigma: float, end_at_sigma: float):
    """KSampler Advanced's noise-level boundaries (>= 0) in place of its step numbers: each becomes the first step
    whose sigma is below it (``schedulers.plan.step_at_sigma``)."""
    if start_at_sigma < 0 and end_at_sigma < 0:
        return request
    from ..schedulers.plan import step_at_sigma

    full = full_schedule(model, request)
    changes = {}
    if start_at_sigma >= 0:
        changes["start_at_step"] = step_at_sigma(full, start_at_sigma)
    if end_at_sigma >= 0:
        changes["end_at_step"] = step_at_sigma(full, end_at_sigma)
    return request.replace(**changes)


def ui_summary(info: RunInfo) -> dict:
    """What the editor's plot needs from a run (not the whole sigma list): the plot points, notes, the seamless
    hand-off, the noise and the recipe without its sigmas."""
    summary: dict = {"sampled": bool(info.sampled), **plot_summary(info.sigmas)}
    if info.notes:
        summary["notes"] = list(info.notes)
    if info.seamless:
        summary["seamless"] = dict(info.seamless)
    if info.noise_source is not None:
        summary["noise"] = info.noise_source.describe()
    if info.recipe is not None:
        summary["recipe"] = {k: v for k, v in info.recipe.items() if k != "sigmas"}  # the sigmas are the points
    return summary


def sampler_ui(info: RunInfo, extra: dict | None = None) -> dict:
    """A sampler node's UI output: the plot summary and the whole recipe (with the sigmas that ran)."""
    ui = {"stepwise": [ui_summary(info)]}
    if info.recipe is not None:
        ui["stepwise_recipe"] = [recipe_document([dict(info.recipe)], None, None)]
    return {**ui, **(extra or {})}


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
    SEARCH_ALIASES = ["sampler", "sample", "generate", "denoise", "diffuse", "txt2img", "img2img", "stepwise"]

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0,
               unique_id=None, noise=None, sigmas=None, sampler=None):
        widgets = {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler_name, "scheduler": scheduler,
                   "denoise": denoise}
        check_widgets(type(self), widgets)
        request = build_request(widgets, noise=noise, sigmas=sigmas, sampler=sampler)
        out, info = run_sampler(model, request, positive, negative, latent_image, unique_id=unique_id)
        return current_host().ui(out, sampler_ui(info))


class StepwiseKSamplerAdvanced:
    """Drop-in for core KSamplerAdvanced: add_noise, start/end step and leftover noise."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model used for denoising the input latent."}),
            "add_noise": (["enable", "disable"], {"advanced": True, "tooltip": "Add the seed's noise to the latent "
                                                  "first (disable when continuing a run that returned leftover noise)."}),
            "noise_seed": SEED_SPEC,
            "steps": STEPS_SPEC,
            "cfg": CFG_SPEC,
            **sampler_inputs(),
            "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000, "advanced": True,
                                      "tooltip": "The step of the schedule this node starts at."}),
            "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000, "advanced": True,
                                    "tooltip": "The step this node stops before (10000: the end)."}),
            "return_with_leftover_noise": (["disable", "enable"], {"advanced": True, "tooltip": "enable: stop early "
                                           "with the remaining noise in the latent, for a next node to continue."}),
        }, "optional": {
            "split_mode": SPLIT_MODE_SPEC,
            "start_at_sigma": SIGMA_BOUNDARY_SPEC("start"),
            "end_at_sigma": SIGMA_BOUNDARY_SPEC("end"),
            "noise": NOISE_SPEC,
            "sigmas": SIGMAS_SPEC,
            "sampler": SAMPLER_SPEC,
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "stepwise/sampling"
    DESCRIPTION = "KSampler (Advanced) with Stepwise's sampling core: identical results to the core node."
    SEARCH_ALIASES = ["sampler", "sample", "advanced sampler", "split", "refiner", "denoise", "stepwise"]

    def sample(self, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
               latent_image, start_at_step, end_at_step, return_with_leftover_noise, denoise=1.0, unique_id=None,
               split_mode="comfy", start_at_sigma=-1.0, end_at_sigma=-1.0, noise=None, sigmas=None, sampler=None):
        widgets = {"add_noise": add_noise, "noise_seed": noise_seed, "steps": steps, "cfg": cfg,
                   "sampler_name": sampler_name, "scheduler": scheduler, "start_at_step": start_at_step,
                   "end_at_step": end_at_step, "return_with_leftover_noise": return_with_leftover_noise,
                   "split_mode": split_mode}
        check_widgets(type(self), {**widgets, "start_at_sigma": start_at_sigma, "end_at_sigma": end_at_sigma})
        request = build_request({**widgets, "denoise": denoise}, noise=noise, sigmas=sigmas, sampler=sampler)
        request = sigma_boundaries(model, request, start_at_sigma, end_at_sigma)
        out, info = run_sampler(model, request, positive, negative, latent_image, unique_id=unique_id)
        return current_host().ui(out, sampler_ui(info))
