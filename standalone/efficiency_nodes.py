"""Stand-ins for the efficiency-nodes pack and core nodes its example workflows use.

"KSampler (Efficient)" / "KSampler Adv. (Efficient)" run our Efficient nodes; "Efficient Loader"
and "LoRA Stacker" map to the demo model (their files are replaced, with a notice); "LatentUpscale"
is core's. Scripts ("HighRes-Fix Script", "Tiled Upscaler Script", XY plots) are not supported.
"""
from __future__ import annotations

import torch

from ..nodes.efficient import StepwiseKSamplerAdvancedEfficient, StepwiseKSamplerEfficient
from .core_nodes import MAX_RES, ckpt_notice, current_context

__all__ = ["EFFICIENCY_NODES"]


def _legacy_sampler_layout(cls):
    """Older saves start with a ``sampler_state`` widget ("Sample", "Hold", "Script")."""
    name, values = cls.LEGACY_LEADING_WIDGET

    def widget_layout(widgets: list, layout: list[tuple[str, int]]) -> list[tuple[str, int]]:
        if widgets and widgets[0] in values:
            return [(name, 1)] + layout
        return layout

    return type(cls.__name__, (cls,), {"widget_layout": staticmethod(widget_layout)})


class EfficientLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ckpt_name": ("STRING", {"default": "stepwise-demo.safetensors"}),
            "vae_name": ("STRING", {"default": "Baked VAE"}),
            "clip_skip": ("INT", {"default": -1, "min": -24, "max": -1, "step": 1}),
            "lora_name": ("STRING", {"default": "None"}),
            "lora_model_strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
            "lora_clip_strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
            "positive": ("STRING", {"default": "CLIP_POSITIVE", "multiline": True}),
            "negative": ("STRING", {"default": "CLIP_NEGATIVE", "multiline": True}),
            "token_normalization": (["none", "mean", "length", "length+mean"],),
            "weight_interpretation": (["comfy", "A1111", "compel", "comfy++", "down_weight"],),
            "empty_latent_width": ("INT", {"default": 512, "min": 64, "max": MAX_RES, "step": 64}),
            "empty_latent_height": ("INT", {"default": 512, "min": 64, "max": MAX_RES, "step": 64}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 262144})},
            "optional": {"lora_stack": ("LORA_STACK",), "cnet_stack": ("CONTROL_NET_STACK",)}}

    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "LATENT", "VAE", "CLIP", "DEPENDENCIES")
    RETURN_NAMES = ("MODEL", "CONDITIONING+", "CONDITIONING-", "LATENT", "VAE", "CLIP", "DEPENDENCIES")
    FUNCTION = "load"
    CATEGORY = "Efficiency Nodes/Loaders"

    @staticmethod
    def widget_layout(widgets: list, layout: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Saves from before token_normalization/weight_interpretation existed have 11 widgets."""
        if len(widgets) == 11:
            return [w for w in layout if w[0] not in ("token_normalization", "weight_interpretation")]
        return layout

    def load(self, ckpt_name, vae_name, clip_skip, lora_name, lora_model_strength, lora_clip_strength, positive,
             negative, token_normalization="none", weight_interpretation="comfy", empty_latent_width=512,
             empty_latent_height=512, batch_size=1, lora_stack=None, cnet_stack=None):
        if cnet_stack:
            raise ValueError("cnet_stack: ControlNet stacks are not supported by the standalone runtime")
        from .core_nodes import is_tiny_name

        if not is_tiny_name(ckpt_name):
            ckpt_notice("Efficient Loader", ckpt_name, "demo model (MODEL, CLIP, VAE)")
        if vae_name != "Baked VAE":
            ckpt_notice("Efficient Loader", vae_name, "demo VAE")
        model, clip, vae = current_context().checkpoint(ckpt_name)
        loras = ([(lora_name, lora_model_strength, lora_clip_strength)] if lora_name != "None" else []) + list(lora_stack or [])
        strength = 0.0
        for name, s_model, _ in loras:
            ckpt_notice("Efficient Loader", name, f"demo 'pixel art' style (strength {s_model:g})")
            strength += float(s_model)
        if strength:
            model = model.with_style(strength)
        latent = {"samples": torch.zeros([batch_size, 4, empty_latent_height // 8, empty_latent_width // 8])}
        deps = (vae_name, ckpt_name, clip, clip_skip, positive, negative, loras)
        return model, clip.encode(positive), clip.encode(negative), latent, vae, clip, deps


class LoRAStacker:
    @classmethod
    def INPUT_TYPES(cls):
        slots = {}
        for i in (1, 2, 3):
            slots[f"lora_name_{i}"] = ("STRING", {"default": "None"})
            slots[f"lora_wt_{i}"] = ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})
        return {"required": slots, "optional": {"lora_stack": ("LORA_STACK",)}}

    RETURN_TYPES = ("LORA_STACK",)
    FUNCTION = "stack"
    CATEGORY = "Efficiency Nodes/Stackers"

    def stack(self, lora_name_1, lora_wt_1, lora_name_2, lora_wt_2, lora_name_3, lora_wt_3, lora_stack=None):
        out = list(lora_stack or [])
        for name, wt in ((lora_name_1, lora_wt_1), (lora_name_2, lora_wt_2), (lora_name_3, lora_wt_3)):
            if name != "None":
                out.append((name, wt, wt))
        return (out,)


class LatentUpscale:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "samples": ("LATENT",),
            "upscale_method": (["nearest-exact", "bilinear", "area", "bicubic", "bislerp"],),
            "width": ("INT", {"default": 512, "min": 0, "max": MAX_RES, "step": 8}),
            "height": ("INT", {"default": 512, "min": 0, "max": MAX_RES, "step": 8}),
            "crop": (["disabled", "center"],)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"
    CATEGORY = "latent"

    def upscale(self, samples, upscale_method, width, height, crop):
        s = samples["samples"]
        if width == 0 and height == 0:
            return (dict(samples),)
        h, w = s.shape[-2:]
        width = width or max(64, round(w * 8 * height / (h * 8)))
        height = height or max(64, round(h * 8 * width / (w * 8)))
        if crop == "center":
            target = width / height
            if w / h > target:
                nw = round(h * target)
                s = s[..., (w - nw) // 2:(w - nw) // 2 + nw]
            elif w / h < target:
                nh = round(w / target)
                s = s[..., (h - nh) // 2:(h - nh) // 2 + nh, :]
        mode = {"bislerp": "bilinear"}.get(upscale_method, upscale_method)
        kwargs = {} if mode in ("nearest-exact", "area") else {"align_corners": False}
        out = dict(samples)
        out["samples"] = torch.nn.functional.interpolate(s, size=(height // 8, width // 8), mode=mode, **kwargs)
        return (out,)


EFFICIENCY_NODES: dict[str, type] = {
    "KSampler (Efficient)": _legacy_sampler_layout(StepwiseKSamplerEfficient),
    "KSampler Adv. (Efficient)": _legacy_sampler_layout(StepwiseKSamplerAdvancedEfficient),
    "Efficient Loader": EfficientLoader,
    "LoRA Stacker": LoRAStacker,
    "LatentUpscale": LatentUpscale,
}
