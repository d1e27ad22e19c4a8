"""KSampler Efficient / KSampler Adv. Efficient (Stepwise): sample, preview, decode, pass everything on.

In the manner of efficiency-nodes' "KSampler (Efficient)" and "KSampler Adv. (Efficient)", on the
same ``common_ksampler`` as the plain nodes (so their latents are identical), with three fixes: the
preview method applies to this node's run only, results are cached on every input that affects
them (never stale; decode-only changes do not re-sample), and the script socket is typed.
"""
from __future__ import annotations

from typing import Any

import torch

from ..preview import PREVIEW_METHODS, PreviewConfig, check_preview_method
from .bridge import current_observer, is_comfy_model
from .cache import RESULT_CACHE
from .noise import StepwiseNoiseValue
from .recipe import recipe_document
from .ksampler import StepwiseKSampler, StepwiseKSamplerAdvanced, run_common_ksampler, ui_summary
from .script import apply_script, check_script
from .widgets import check_widgets

__all__ = ["StepwiseKSamplerEfficient", "StepwiseKSamplerAdvancedEfficient", "VAE_DECODE", "VAE_DECODE_ADVANCED",
           "decode_latent"]

PREVIEW_CHOICES = ["auto", "latent2rgb", "taesd", "none"]
VAE_DECODE = ["true", "true (tiled)", "false"]
VAE_DECODE_ADVANCED = VAE_DECODE + ["output only", "output only (tiled)"]
SHOWN = {"true", "true (tiled)"}
EMPTY_IMAGE = torch.zeros(1, 1, 1, 3)  # what the IMAGE output carries when vae_decode is "false"
TILE, OVERLAP = 64, 16  # latent pixels


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


def _efficient(node: str, model, positive, negative, latent_image, preview_method, vae_decode, optional_vae,
               script, allowed_decode, sampling: dict, prompt=None, extra_pnginfo=None, unique_id=None):
    check_preview_method(preview_method)
    if vae_decode not in allowed_decode:
        raise ValueError(f"vae_decode: {vae_decode!r} is not one of the allowed values: {', '.join(allowed_decode)}")
    script = check_script(script)
    if isinstance(sampling.get("noise"), StepwiseNoiseValue):
        sampling = {**sampling, "noise": sampling["noise"].source}  # keyed by value in the result cache
    vae = optional_vae if optional_vae is not None else getattr(model, "default_vae", None)
    if vae_decode != "false" and vae is None:
        raise ValueError(f"vae_decode: {vae_decode!r} needs a VAE, but optional_vae is not connected and the model "
                         f"brings none; connect optional_vae or set vae_decode to 'false'")
    if script is not None and script.kind == "xy_plot":
        return _efficient_xy(node, model, positive, negative, latent_image, preview_method, vae_decode, vae, script,
                             sampling, prompt, extra_pnginfo, unique_id)
    key = (node, model, positive, negative, latent_image, sampling, script)
    cached = RESULT_CACHE.get(key)
    out, recipes = (None, []) if cached is None else cached
    runs: list = []
    if out is None:
        out, runs = _sample(node, model, positive, negative, latent_image, sampling, script,
                            PreviewConfig(method=preview_method), unique_id)
        recipes = [dict(r.recipe) for r in runs if r.recipe]
        RESULT_CACHE.put(key, (out, recipes))
    out = dict(out)
    recipe = recipe_document([dict(r) for r in recipes], None if unique_id is None else str(unique_id), None,
                             prompt if isinstance(prompt, dict) else None)
    images = EMPTY_IMAGE if vae_decode == "false" else decode_latent(vae, out, vae_decode)
    ui = {"images": _show(images, model, vae_decode, recipe, prompt, extra_pnginfo), "stepwise_recipe": [recipe]}
    if runs:
        ui["stepwise"] = [ui_summary(runs[0])]
    return {"ui": ui, "result": (model, positive, negative, out, vae, images)}


def _sample(node: str, model, positive, negative, latent_image, sampling: dict, script, preview, unique_id):
    """One sampling through the core, with a script (HiRes-Fix, noise) applied: (LATENT, the runs' RunInfo)."""
    runs: list = []

    def sample(latent: dict, **overrides) -> dict:
        kw = {**sampling, **overrides}
        (res,), info = run_common_ksampler(model, kw.pop("seed"), kw.pop("steps"), kw.pop("cfg"),
                                           kw.pop("sampler_name"), kw.pop("scheduler"), positive, negative,
                                           latent, preview=preview, unique_id=unique_id, **kw)
        runs.append(info)
        return res

    return apply_script(script, sample, latent_image), runs


def _show(images, model, vae_decode: str, recipe: dict, prompt, extra_pnginfo) -> list[dict]:
    """Images shown on the node (what PreviewImage would save), the recipe in their PNG chunk inside ComfyUI."""
    if vae_decode not in SHOWN:
        return []
    if is_comfy_model(model):
        from .comfy_bridge import comfy_show_images

        return comfy_show_images(images, prompt, {**(extra_pnginfo or {}), "stepwise": recipe})
    observer = current_observer()
    if observer is not None and observer.show_images is not None:
        return observer.show_images(images)
    return []


def _efficient_xy(node: str, model, positive, negative, latent_image, preview_method, vae_decode, vae, script,
                  sampling, prompt, extra_pnginfo, unique_id) -> dict:
    """The XY Plot script: every cell sampled and decoded; IMAGE = the grid(s), LATENT = all cells as a batch."""
    from .xyplot import run_xy_plot

    if vae_decode == "false":
        raise ValueError("vae_decode: the XY Plot decodes every cell for its grid; choose 'true' (or a tiled or "
                         "'output only' mode)")
    preview = PreviewConfig(method=preview_method)
    node_cls = StepwiseKSamplerAdvancedEfficient if node == "KSamplerAdvanced" else StepwiseKSamplerEfficient

    def sample(cell_model, pos, neg, latent, cell_sampling, inner):
        return _sample(node, cell_model, pos, neg, latent, cell_sampling, inner, preview, unique_id)

    result = run_xy_plot(node, node_cls, script, model, positive, negative, latent_image, sampling, sample,
                         lambda latent: decode_latent(vae, latent, vae_decode), unique_id)
    recipe = recipe_document(result["recipes"], None if unique_id is None else str(unique_id), None,
                             prompt if isinstance(prompt, dict) else None)
    ui = {"images": _show(result["grid"], model, vae_decode, recipe, prompt, extra_pnginfo),
          "stepwise_recipe": [recipe], "stepwise_xy": [{"labels": result["labels"], "cached": result["cached"]}]}
    if result["runs"]:
        ui["stepwise"] = [ui_summary(result["runs"][0])]
    return {"ui": ui, "result": (model, positive, negative, result["latent"], vae, result["grid"])}


def _efficient_inputs(base: type, decode_choices: list[str]) -> dict:
    types = base.INPUT_TYPES()
    required = dict(types["required"])
    required["preview_method"] = (PREVIEW_CHOICES, {"tooltip": "Previews for this node's run only: "
                                                    + "; ".join(f"{k}: {v}" for k, v in PREVIEW_METHODS.items())})
    required["vae_decode"] = (decode_choices, {"tooltip": "Decode the result with the VAE (shown on the node unless "
                                                          "'output only'); 'false' skips decoding."})
    return {"required": required,
            "optional": {"optional_vae": ("VAE",), "script": ("SCRIPT",), **types.get("optional", {})},
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
    #: efficiency-nodes saves from before its Oct 2023 release start widgets_values with this
    LEGACY_LEADING_WIDGET = ("sampler_state", ("Sample", "Hold", "Script"))

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
               preview_method, vae_decode, optional_vae=None, script=None, prompt=None, extra_pnginfo=None,
               unique_id=None, noise=None, sigmas=None, sampler=None):
        sampling = {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler_name, "scheduler": scheduler,
                    "denoise": denoise, "noise": noise, "sigmas": sigmas, "sampler": sampler}
        check_widgets(type(self), {**{k: v for k, v in sampling.items() if k not in ("noise", "sigmas", "sampler")},
                                   "preview_method": preview_method})
        return _efficient("KSampler", model, positive, negative, latent_image, preview_method, vae_decode,
                          optional_vae, script, VAE_DECODE, sampling, prompt, extra_pnginfo, unique_id)


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
    LEGACY_LEADING_WIDGET = StepwiseKSamplerEfficient.LEGACY_LEADING_WIDGET

    def sample(self, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
               latent_image, start_at_step, end_at_step, return_with_leftover_noise, preview_method, vae_decode,
               optional_vae=None, script=None, prompt=None, extra_pnginfo=None, unique_id=None, split_mode="comfy",
               noise=None, sigmas=None, sampler=None):
        check_widgets(type(self), {"add_noise": add_noise, "noise_seed": noise_seed, "steps": steps, "cfg": cfg,
                                   "sampler_name": sampler_name, "scheduler": scheduler,
                                   "start_at_step": start_at_step, "end_at_step": end_at_step,
                                   "return_with_leftover_noise": return_with_leftover_noise,
                                   "preview_method": preview_method, "split_mode": split_mode})
        sampling = {"seed": noise_seed, "steps": steps, "cfg": cfg, "sampler_name": sampler_name,
                    "scheduler": scheduler, "denoise": 1.0, "disable_noise": add_noise == "disable",
                    "start_step": start_at_step, "last_step": end_at_step,
                    "force_full_denoise": return_with_leftover_noise != "enable", "split_mode": split_mode,
                    "noise": noise, "sigmas": sigmas, "sampler": sampler}
        return _efficient("KSamplerAdvanced", model, positive, negative, latent_image, preview_method, vae_decode,
                          optional_vae, script, VAE_DECODE_ADVANCED, sampling, prompt, extra_pnginfo, unique_id)
