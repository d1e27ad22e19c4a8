"""KSampler Efficient / KSampler Adv. Efficient (Stepwise): sample, preview, decode, pass everything on.

In the manner of efficiency-nodes' "KSampler (Efficient)" and "KSampler Adv. (Efficient)", on the same request
and ``run_sampler`` as the plain nodes (so their latents are identical), with three fixes: the preview method
applies to this node's run only, results are cached on every input that affects them (never stale; decode-only
changes do not re-sample), and the script socket is typed.
"""
from __future__ import annotations

from typing import Any

import torch

from ..host import current_host
from ..preview import PREVIEW_METHODS, PreviewConfig, check_preview_method
from ..sampling import SamplingRequest
from ..sampling.cache import ResultCache
from ..workflows.recipe import recipe_document
from ..workflows.widgets import check_widgets
from .ksampler import StepwiseKSampler, StepwiseKSamplerAdvanced, build_request, run_sampler, sigma_boundaries, \
    ui_summary
from .scripts import apply_script, check_script, run_xy_plot

__all__ = ["StepwiseKSamplerEfficient", "StepwiseKSamplerAdvancedEfficient", "VAE_DECODE", "VAE_DECODE_ADVANCED",
           "decode_latent", "RESULT_CACHE"]

VAE_DECODE = ["true", "true (tiled)", "false"]
VAE_DECODE_ADVANCED = VAE_DECODE + ["output only", "output only (tiled)"]
SHOWN = {"true", "true (tiled)"}
EMPTY_IMAGE = torch.zeros(1, 1, 1, 3)  # what the IMAGE output carries when vae_decode is "false"
TILE, OVERLAP = 64, 16  # latent pixels
#: the Efficient nodes' results: keyed on everything that affects the latent (see sampling.cache)
RESULT_CACHE = ResultCache()


def decode_latent(vae: Any, latent: dict, mode: str) -> torch.Tensor:
    samples = latent["samples"]
    if "tiled" in mode:
        h, w = samples.shape[-2:]
        if h < 8 or w < 8:
            raise ValueError(f"vae_decode: {mode!r} cannot tile a {w * 8}x{h * 8} image (at least 64x64 pixels); "
                             f"use 'true'")
        if not hasattr(vae, "decode_tiled"):
            raise ValueError(f"vae_decode: {mode!r} needs a VAE with tiled decoding; use 'true'")
        images = vae.decode_tiled(samples, tile_x=TILE, tile_y=TILE, overlap=OVERLAP)
    else:
        images = vae.decode(samples)
    if images.ndim == 5:
        images = images.reshape(-1, *images.shape[-3:])
    return images


def _sample(model, positive, negative, latent_image, request: SamplingRequest, script, preview, unique_id):
    """One sampling through the core, with a script (HiRes-Fix, noise) applied: (LATENT, the runs' RunInfo)."""
    runs: list = []

    def sample(latent: dict, pass_request: SamplingRequest) -> dict:
        (res,), info = run_sampler(model, pass_request, positive, negative, latent, preview=preview,
                                   unique_id=unique_id)
        runs.append(info)
        return res

    return apply_script(script, sample, latent_image, request), runs


def _efficient(advanced: bool, model, positive, negative, latent_image, preview_method, vae_decode, optional_vae,
               script, request: SamplingRequest, prompt=None, extra_pnginfo=None, unique_id=None):
    host = current_host()
    allowed = VAE_DECODE_ADVANCED if advanced else VAE_DECODE
    check_preview_method(preview_method)
    if vae_decode not in allowed:
        raise ValueError(f"vae_decode: {vae_decode!r} is not one of the allowed values: {', '.join(allowed)}")
    script = check_script(script)
    vae = optional_vae if optional_vae is not None else getattr(model, "default_vae", None)
    if vae_decode != "false" and vae is None:
        raise ValueError(f"vae_decode: {vae_decode!r} needs a VAE, but optional_vae is not connected and the model "
                         f"brings none; connect optional_vae or set vae_decode to 'false'")
    preview = PreviewConfig(method=preview_method)
    saved_by = None if unique_id is None else str(unique_id)
    graph = prompt if isinstance(prompt, dict) else None
    if script is not None and script.kind == "xy_plot":
        if vae_decode == "false":
            raise ValueError("vae_decode: the XY Plot decodes every cell for its grid; choose 'true' (or a tiled or "
                             "'output only' mode)")
        node_cls = StepwiseKSamplerAdvancedEfficient if advanced else StepwiseKSamplerEfficient

        def sample(cell_model, pos, neg, latent, cell_request, inner):
            return _sample(cell_model, pos, neg, latent, cell_request, inner, preview, unique_id)

        result = run_xy_plot(advanced, node_cls, script, model, positive, negative, latent_image, request, sample,
                             lambda latent: decode_latent(vae, latent, vae_decode), advanced, unique_id)
        out, images, runs = result["latent"], result["grid"], result["runs"]
        recipe = recipe_document(result["recipes"], saved_by, None, graph)
        extra = {"stepwise_xy": [{"labels": result["labels"], "cached": result["cached"]}]}
    else:
        key = (advanced, model, positive, negative, latent_image, request, script)
        cached = RESULT_CACHE.get(key)
        out, recipes = (None, []) if cached is None else cached
        runs: list = []
        if out is None:
            out, runs = _sample(model, positive, negative, latent_image, request, script, preview, unique_id)
            recipes = [dict(r.recipe) for r in runs if r.recipe]
            RESULT_CACHE.put(key, (out, recipes))
        out = dict(out)
        recipe = recipe_document([dict(r) for r in recipes], saved_by, None, graph)
        images = EMPTY_IMAGE if vae_decode == "false" else decode_latent(vae, out, vae_decode)
        extra = {}
    shown = host.show_images(images, prompt, {**(extra_pnginfo or {}), "stepwise": recipe}) \
        if vae_decode in SHOWN else []
    ui = {"images": shown, "stepwise_recipe": [recipe], **extra}
    if runs:
        ui["stepwise"] = [ui_summary(runs[0])]
    return {"ui": ui, "result": (model, positive, negative, out, vae, images)}


def _efficient_inputs(base: type, decode_choices: list[str]) -> dict:
    types = base.INPUT_TYPES()
    required = dict(types["required"])
    required["preview_method"] = (list(PREVIEW_METHODS), {"tooltip": "Previews for this node's run only: "
                                                          + "; ".join(f"{k}: {v}" for k, v in PREVIEW_METHODS.items())})
    required["vae_decode"] = (decode_choices, {"tooltip": "Decode the result with the VAE (shown on the node unless "
                                                          "'output only'); 'false' skips decoding."})
    return {"required": required,
            "optional": {"optional_vae": ("VAE", {"tooltip": "The VAE to decode with (default: the model's own)."}),
                         "script": ("SCRIPT", {"tooltip": "HiRes-Fix, SDE noise or XY Plot (Stepwise)."}),
                         **types.get("optional", {})},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"}}


class StepwiseKSamplerEfficient:
    """KSampler (Efficient) on Stepwise's core: KSampler's inputs, then preview_method and vae_decode."""

    @classmethod
    def INPUT_TYPES(cls):
        return _efficient_inputs(StepwiseKSampler, VAE_DECODE)

    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "LATENT", "VAE", "IMAGE")
    RETURN_NAMES = ("MODEL", "CONDITIONING+", "CONDITIONING-", "LATENT", "VAE", "IMAGE")
    OUTPUT_NODE = True
    FUNCTION = "sample"
    CATEGORY = "stepwise/sampling"
    DESCRIPTION = ("KSampler with previews for this node only, an optional VAE decode shown on the node, a script "
                   "socket (HiRes-Fix, XY Plot, SDE noise) and a result cache; passes its inputs on.")
    #: efficiency-nodes saves from before its Oct 2023 release start widgets_values with this
    LEGACY_LEADING_WIDGET = ("sampler_state", ("Sample", "Hold", "Script"))

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
               preview_method, vae_decode, optional_vae=None, script=None, prompt=None, extra_pnginfo=None,
               unique_id=None, noise=None, sigmas=None, sampler=None):
        widgets = {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler_name, "scheduler": scheduler,
                   "denoise": denoise}
        check_widgets(type(self), {**widgets, "preview_method": preview_method})
        request = build_request(widgets, noise=noise, sigmas=sigmas, sampler=sampler)
        return _efficient(False, model, positive, negative, latent_image, preview_method, vae_decode, optional_vae,
                          script, request, prompt, extra_pnginfo, unique_id)


class StepwiseKSamplerAdvancedEfficient:
    """KSampler Adv. (Efficient) on Stepwise's core: KSamplerAdvanced's inputs, then preview_method and vae_decode."""

    @classmethod
    def INPUT_TYPES(cls):
        return _efficient_inputs(StepwiseKSamplerAdvanced, VAE_DECODE_ADVANCED)

    RETURN_TYPES = StepwiseKSamplerEfficient.RETURN_TYPES
    RETURN_NAMES = StepwiseKSamplerEfficient.RETURN_NAMES
    OUTPUT_NODE = True
    FUNCTION = "sample"
    CATEGORY = "stepwise/sampling"
    DESCRIPTION = ("KSampler (Advanced) with previews for this node only, an optional VAE decode shown on the node, "
                   "a script socket and a result cache; passes its inputs on.")
    LEGACY_LEADING_WIDGET = StepwiseKSamplerEfficient.LEGACY_LEADING_WIDGET

    def sample(self, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
               latent_image, start_at_step, end_at_step, return_with_leftover_noise, preview_method, vae_decode,
               optional_vae=None, script=None, prompt=None, extra_pnginfo=None, unique_id=None, split_mode="comfy",
               start_at_sigma=-1.0, end_at_sigma=-1.0, noise=None, sigmas=None, sampler=None):
        widgets = {"add_noise": add_noise, "noise_seed": noise_seed, "steps": steps, "cfg": cfg,
                   "sampler_name": sampler_name, "scheduler": scheduler, "start_at_step": start_at_step,
                   "end_at_step": end_at_step, "return_with_leftover_noise": return_with_leftover_noise,
                   "split_mode": split_mode}
        check_widgets(type(self), {**widgets, "preview_method": preview_method, "start_at_sigma": start_at_sigma,
                                   "end_at_sigma": end_at_sigma})
        request = build_request(widgets, noise=noise, sigmas=sigmas, sampler=sampler)
        request = sigma_boundaries(model, request, start_at_sigma, end_at_sigma)
        return _efficient(True, model, positive, negative, latent_image, preview_method, vae_decode, optional_vae,
                          script, request, prompt, extra_pnginfo, unique_id)
