"""Stand-ins for the ComfyUI core nodes that saved workflows use, backed by the demo model.

Same class ids, inputs (order, widgets, defaults) and outputs as core, so saved workflows map one
to one; loaders print which file the demo replaces. KSampler/KSamplerAdvanced run our nodes.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy
import torch
from PIL import Image, ImageOps, PngImagePlugin

from ..nodes import StepwiseKSampler, StepwiseKSamplerAdvanced
from .demo_model import DemoCLIP, DemoModel, DemoVAE
from .images import save_png

__all__ = ["RunContext", "CORE_NODES", "ckpt_notice"]

MAX_RES = 16384


@dataclass
class RunContext:
    """Where a standalone run reads and writes, and how it reports."""

    output_dir: Path = Path("output")
    input_dir: Path = Path("input")
    temp_dir: Path | None = None
    notice: Any = field(default=lambda msg: print(msg, file=sys.stderr))
    written: list[Path] = field(default_factory=list)
    _checkpoint: tuple | None = None

    def checkpoint(self) -> tuple[DemoModel, DemoCLIP, DemoVAE]:
        if self._checkpoint is None:
            self._checkpoint = (DemoModel(), DemoCLIP(notice=self.notice), DemoVAE())
        return self._checkpoint


_CTX: list[RunContext] = [RunContext()]


def current_context() -> RunContext:
    return _CTX[-1]


class use_context:  # noqa: N801 - a context manager used like a function
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def __enter__(self) -> RunContext:
        _CTX.append(self.ctx)
        return self.ctx

    def __exit__(self, *exc) -> None:
        _CTX.pop()


def ckpt_notice(node: str, name: str, replacement: str) -> None:
    current_context().notice(f"{node}: {name!r} is replaced by the embedded {replacement}")


class CheckpointLoaderSimple:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": ("STRING", {"default": "stepwise-demo.safetensors"})}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"
    CATEGORY = "loaders"

    def load_checkpoint(self, ckpt_name):
        ckpt_notice("CheckpointLoaderSimple", ckpt_name, "demo model (MODEL, CLIP, VAE)")
        return current_context().checkpoint()


class VAELoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae_name": ("STRING", {"default": "stepwise-demo-vae.safetensors"})}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"
    CATEGORY = "loaders"

    def load_vae(self, vae_name):
        ckpt_notice("VAELoader", vae_name, "demo VAE")
        return (current_context().checkpoint()[2],)


class LoraLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",), "clip": ("CLIP",),
            "lora_name": ("STRING", {"default": "stepwise-pixel-art.safetensors"}),
            "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}),
            "strength_clip": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}),
        }}

    RETURN_TYPES = ("MODEL", "CLIP")
    FUNCTION = "load_lora"
    CATEGORY = "loaders"

    def load_lora(self, model, clip, lora_name, strength_model, strength_clip):
        ckpt_notice("LoraLoader", lora_name, f"demo 'pixel art' style (strength {strength_model:g})")
        if not hasattr(model, "with_style"):
            raise ValueError("model: LoraLoader's demo style applies only to the demo MODEL")
        return (model.with_style(float(strength_model)) if strength_model else model, clip)


class CLIPTextEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True, "dynamicPrompts": True}), "clip": ("CLIP",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "conditioning"

    def encode(self, clip, text):
        if not hasattr(clip, "encode"):
            raise ValueError("clip: expected a CLIP (from a checkpoint loader)")
        return (clip.encode(text),)


class EmptyLatentImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 512, "min": 16, "max": MAX_RES, "step": 8}),
            "height": ("INT", {"default": 512, "min": 16, "max": MAX_RES, "step": 8}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"
    CATEGORY = "latent"

    def generate(self, width, height, batch_size=1):
        return ({"samples": torch.zeros([batch_size, 4, height // 8, width // 8])},)


class VAEDecode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    CATEGORY = "latent"

    def decode(self, vae, samples):
        return (vae.decode(samples["samples"]),)


class VAEEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "latent"

    def encode(self, vae, pixels):
        return ({"samples": vae.encode(pixels)},)


class LoadImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("STRING", {"image_upload": True})}}

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"
    CATEGORY = "image"

    def load_image(self, image):
        ctx = current_context()
        base = Path(ctx.input_dir).resolve()
        name = re.sub(r"\s*\[(input|output|temp)\]$", "", image)
        path = (base / name).resolve()
        if base not in path.parents and path != base:
            raise ValueError(f"image: {image!r} is outside the input folder {base}")
        if not path.is_file():
            raise ValueError(f"image: {image!r} not found in the input folder {base} (use --input-dir)")
        try:
            img = ImageOps.exif_transpose(Image.open(path))
        except OSError as exc:
            raise ValueError(f"image: cannot read {path}: {exc}") from None
        rgb = numpy.asarray(img.convert("RGB"), dtype=numpy.float32) / 255.0
        if "A" in img.getbands():
            mask = 1.0 - numpy.asarray(img.getchannel("A"), dtype=numpy.float32) / 255.0
        else:
            mask = numpy.zeros(rgb.shape[:2], dtype=numpy.float32)
        return torch.from_numpy(rgb)[None], torch.from_numpy(mask)[None]


def _next_counter(folder: Path, prefix: str) -> int:
    best = 0
    pat = re.compile(re.escape(prefix) + r"_(\d+)_\.png$")
    if folder.is_dir():
        for f in folder.iterdir():
            m = pat.fullmatch(f.name)
            if m:
                best = max(best, int(m.group(1)))
    return best + 1


def _save_images(images, filename_prefix: str, folder: Path, prompt=None, extra_pnginfo=None) -> list[Path]:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images: expected an IMAGE tensor (B, H, W, C), got {getattr(images, 'shape', images)!r}")
    folder = Path(folder)
    sub = Path(os.path.normpath(filename_prefix))
    if sub.is_absolute() or ".." in sub.parts:
        raise ValueError(f"filename_prefix: {filename_prefix!r} would save outside the output folder")
    target = folder / sub.parent
    counter = _next_counter(target, sub.name)
    written = []
    for image in images:
        arr = numpy.clip(255.0 * image.detach().cpu().numpy(), 0, 255).astype(numpy.uint8)
        info = PngImagePlugin.PngInfo()
        if prompt is not None:
            info.add_text("prompt", json.dumps(prompt))
        for key, value in (extra_pnginfo or {}).items():
            info.add_text(key, json.dumps(value))
        path = save_png(Image.fromarray(arr), target / f"{sub.name}_{counter:05}_.png", pnginfo=info)
        written.append(path)
        counter += 1
    current_context().written.extend(written)
    return written


class SaveImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        paths = _save_images(images, filename_prefix, current_context().output_dir, prompt, extra_pnginfo)
        return {"ui": {"images": [{"filename": p.name, "subfolder": "", "type": "output"} for p in paths]}}


class PreviewImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"

    def save_images(self, images, prompt=None, extra_pnginfo=None):
        return {"ui": {"images": show_on_node(images)}}


def show_on_node(images) -> list[dict]:
    """What a node shows (Efficient nodes' decoded images): written to the run's temp folder."""
    ctx = current_context()
    folder = ctx.temp_dir or Path(ctx.output_dir) / "temp"
    paths = _save_images(images, "ComfyUI_temp", folder)
    return [{"filename": p.name, "subfolder": "", "type": "temp"} for p in paths]


def _primitive(kind: str, type_name: str, opts: dict):
    class Primitive:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": (kind, dict(opts))}}

        RETURN_TYPES = (type_name,)
        FUNCTION = "execute"
        CATEGORY = "utils/primitive"

        def execute(self, value):
            return (value,)

    Primitive.__name__ = f"Primitive{type_name.title()}"
    return Primitive


PrimitiveInt = _primitive("INT", "INT", {"min": -sys.maxsize, "max": sys.maxsize, "control_after_generate": True})
PrimitiveFloat = _primitive("FLOAT", "FLOAT", {"min": -sys.maxsize, "max": sys.maxsize})
PrimitiveString = _primitive("STRING", "STRING", {})

CORE_NODES: dict[str, type] = {
    "CheckpointLoaderSimple": CheckpointLoaderSimple,
    "VAELoader": VAELoader,
    "LoraLoader": LoraLoader,
    "CLIPTextEncode": CLIPTextEncode,
    "EmptyLatentImage": EmptyLatentImage,
    "VAEDecode": VAEDecode,
    "VAEEncode": VAEEncode,
    "LoadImage": LoadImage,
    "SaveImage": SaveImage,
    "PreviewImage": PreviewImage,
    "PrimitiveInt": PrimitiveInt,
    "PrimitiveFloat": PrimitiveFloat,
    "PrimitiveString": PrimitiveString,
    "KSampler": StepwiseKSampler,
    "KSamplerAdvanced": StepwiseKSamplerAdvanced,
}
