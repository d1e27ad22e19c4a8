"""Stand-ins for the ComfyUI core nodes that saved workflows use, backed by the demo model.

Same class ids, inputs (order, widgets, defaults) and outputs as core, so saved workflows map one
to one; loaders print which file the demo replaces. KSampler/KSamplerAdvanced run our nodes.
"""
from __future__ import annotations

import contextvars
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
from ..models.mixture import DemoModel
from ..models.world import DemoCLIP, DemoVAE
from .images import encode_png, save_png, write_bytes_atomic

__all__ = ["RunContext", "CORE_NODES", "ckpt_notice"]

MAX_RES = 16384
WRITE_PARAMETERS = [True]  # the process default of RunContext.a1111_parameters


@dataclass
class RunContext:
    """Where a standalone run reads and writes, and how it reports.

    With ``defer_writes`` (``stepwise run``), images are encoded in memory and written only by
    :meth:`commit`, after the whole workflow succeeded; :meth:`discard` drops them."""

    output_dir: Path = Path("output")
    input_dir: Path = Path("input")
    temp_dir: Path | None = None
    notice: Any = field(default=lambda msg: print(msg, file=sys.stderr))
    written: list[Path] = field(default_factory=list)
    defer_writes: bool = False
    pending: list[tuple[Path, bytes]] = field(default_factory=list)
    #: also write AUTOMATIC1111's ``parameters`` chunk (``--no-parameters`` turns it off for the process)
    a1111_parameters: bool = field(default_factory=lambda: WRITE_PARAMETERS[0])
    _checkpoint: tuple | None = None
    _tiny: tuple | None = None

    def __post_init__(self) -> None:
        """A run says each notice once (a chain of 3000 LoRA loaders is one line, not 3000)."""
        said: set[str] = set()
        inner = self.notice

        def once(message: str) -> None:
            if message not in said:
                said.add(message)
                inner(message)

        self.notice = once

    def checkpoint(self, name: str | None = None) -> tuple:
        """(MODEL, CLIP, VAE) for a checkpoint name: ``stepwise-tiny`` (the trained network) by its name, the exact
        demo mixture for every other name."""
        if name is not None and is_tiny_name(name):
            if self._tiny is None:
                from ..models.tiny import TinyModel

                self._tiny = (TinyModel(), DemoCLIP(notice=self.notice), DemoVAE())
            return self._tiny
        if self._checkpoint is None:
            self._checkpoint = (DemoModel(), DemoCLIP(notice=self.notice), DemoVAE())
        return self._checkpoint

    def commit(self) -> list[Path]:
        """Write every deferred image (each atomically); on a failure remove what this commit wrote."""
        done: list[Path] = []
        try:
            for path, data in self.pending:
                write_bytes_atomic(path, data)
                done.append(path)
        except OSError:
            for path in done:
                path.unlink(missing_ok=True)
            self.written = [p for p in self.written if p not in {q for q, _ in self.pending}]
            self.pending = []
            raise
        self.pending = []
        return done

    def discard(self) -> None:
        dropped = {p for p, _ in self.pending}
        self.written = [p for p in self.written if p not in dropped]
        self.pending = []


_CTX: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("stepwise_run_context", default=None)
_DEFAULT_CTX = RunContext()


def current_context() -> RunContext:
    ctx = _CTX.get()
    return _DEFAULT_CTX if ctx is None else ctx


class use_context:  # noqa: N801 - a context manager used like a function
    """Within the block (this thread/task only), stand-in nodes read and write through ``ctx``."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self._token = None

    def __enter__(self) -> RunContext:
        self._token = _CTX.set(self.ctx)
        return self.ctx

    def __exit__(self, *exc) -> None:
        _CTX.reset(self._token)


def is_tiny_name(name: Any) -> bool:
    """``stepwise-tiny.safetensors`` (any folder, any case): the trained demo network."""
    from ..models.tiny import TINY_NAME

    if not isinstance(name, str):
        return False
    stem = re.split(r"[\\/]", name)[-1].lower()
    return stem in (TINY_NAME, f"{TINY_NAME}.safetensors", f"{TINY_NAME}.ckpt")


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
        if is_tiny_name(ckpt_name):
            return current_context().checkpoint(ckpt_name)
        ckpt_notice("CheckpointLoaderSimple", ckpt_name, "demo model (MODEL, CLIP, VAE)")
        return current_context().checkpoint(ckpt_name)


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

    @classmethod
    def VALIDATE_INPUTS(cls, width, height, batch_size=1):
        """Refuse, before anything runs, a size the demo model cannot sample and decode in this machine's memory."""
        from ..sampling.resources import memory_budget

        have = memory_budget()
        if have is None:
            return True

        def need(b: int) -> int:
            shape = (b, 4, height // 8, width // 8)
            return max(DemoModel.memory_estimate(None, shape, "euler"), DemoVAE.memory_estimate(shape))

        if need(batch_size) <= have:
            return True
        what = "batch_size" if batch_size > 1 and need(1) <= have else "width"
        return (f"{what}: a batch of {batch_size} images of {width}x{height} needs about "
                f"{need(batch_size) / 2 ** 30:.1f} GB to sample and decode with the demo model, over the "
                f"memory budget of {have / 2 ** 30:.1f} GB (--memory-budget); use a smaller size or batch")

    def generate(self, width, height, batch_size=1):
        from ..sampling.resources import check_fits

        check_fits(batch_size * 4 * (height // 8) * (width // 8) * 4,
                   f"batch_size: a batch of {batch_size} latents of {width}x{height}")
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
        estimate = getattr(vae, "encode_memory_estimate", None)
        if estimate is not None and isinstance(pixels, torch.Tensor) and pixels.ndim == 4:
            from ..sampling.resources import check_fits

            b, h, w, _ = pixels.shape
            check_fits(estimate(pixels.shape), f"pixels: encoding {b} image(s) of {w}x{h}", "use a smaller image")
        return ({"samples": vae.encode(pixels)},)


class LoadImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("STRING", {"image_upload": True})}}

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"
    CATEGORY = "image"

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        from .limits import image_header

        try:
            image_header(_input_image_path(image), "image")
        except ValueError as exc:
            return str(exc)
        return True

    def load_image(self, image):
        from ..sampling.resources import check_fits
        from .limits import image_header

        path = _input_image_path(image)
        _, width, height = image_header(path, "image")
        # RGB and alpha as float32, PIL's decoded copy and its conversion: ~24 bytes a pixel
        check_fits(24 * width * height, f"image: loading {image!r} ({width}x{height})", "use a smaller picture")
        try:
            img = ImageOps.exif_transpose(Image.open(path))
            rgb = numpy.asarray(img.convert("RGB"), dtype=numpy.float32) / 255.0
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ValueError(f"image: cannot read {path}: {exc}") from None
        if "A" in img.getbands():
            mask = 1.0 - numpy.asarray(img.getchannel("A"), dtype=numpy.float32) / 255.0
        else:
            mask = numpy.zeros(rgb.shape[:2], dtype=numpy.float32)
        return torch.from_numpy(rgb)[None], torch.from_numpy(mask)[None]


def _input_image_path(image: Any) -> Path:
    """The input folder's file for a LoadImage value. The same rule as ``stepwise serve``'s /view and uploads (see
    SECURITY in the README): checked as written (relative, no ``..``); a symlinked folder the user made inside the
    input folder is followed."""
    if not isinstance(image, str) or not image.strip():
        raise ValueError(f"image: expected a file name in the input folder, got {image!r:.80}")
    base = Path(current_context().input_dir)
    name = re.sub(r"\s*\[(input|output|temp)\]$", "", image)
    if "\x00" in name:
        raise ValueError("image: the file name contains a NUL character")
    rel = Path(os.path.normpath(name.replace("\\", "/")))
    if rel.is_absolute() or ".." in rel.parts or len(name) > 4096:
        raise ValueError(f"image: {image[:200]!r} is outside the input folder {base}")
    path = base / rel
    try:
        found = path.is_file()
    except OSError as exc:
        raise ValueError(f"image: {image[:200]!r} cannot be read ({exc.strerror or exc})") from None
    if not found:
        raise ValueError(f"image: {image[:200]!r} not found in the input folder {base} (use --input-dir)")
    return path


def _next_counter(folder: Path, prefix: str, reserved=()) -> int:
    best = 0
    pat = re.compile(re.escape(prefix) + r"_(\d+)_\.png$")
    names = [f.name for f in folder.iterdir()] if folder.is_dir() else []
    names += [p.name for p in reserved if p.parent == folder]
    for name in names:
        m = pat.fullmatch(name)
        if m:
            best = max(best, int(m.group(1)))
    return best + 1


def _ancestors(prompt: dict, node_id: str) -> set[str]:
    seen, todo = set(), [str(node_id)]
    while todo:
        nid = todo.pop()
        if nid in seen or nid not in prompt:
            continue
        seen.add(nid)
        for value in (prompt[nid].get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2:
                todo.append(str(value[0]))
    return seen - {str(node_id)}


def _recipe_for(prompt: dict | None, node_id) -> dict | None:
    """The recipe document of the sampler runs upstream of a save node (from this run's observer)."""
    from ..host import current_observer
    from ..workflows.recipe import recipe_document

    observer = current_observer()
    if observer is None or not isinstance(prompt, dict) or node_id is None:
        return None
    upstream = _ancestors(prompt, str(node_id))
    recipes = [dict(r.recipe) for r in observer.runs if getattr(r, "recipe", None) and
               r.recipe.get("node_id") in upstream]
    return recipe_document(recipes, str(node_id), None, prompt)


_HASHES: dict[str, str] = {}


def a1111_parameters(recipe: dict, prompt: dict | None, size: tuple[int, int]) -> str | None:
    """The ``parameters`` text (AUTOMATIC1111's format, what Civitai and image browsers read) of a saved image, from
    its recipe; the trained demo network's file hash as its ``Model hash``."""
    from ..models.tiny import TINY_NAME, WEIGHTS
    from ..version import __version__
    from ..workflows.a1111 import format_parameters, settings_from_recipe, short_hash

    settings = settings_from_recipe(recipe, prompt, size)
    if settings is None:
        return None
    if settings.model == TINY_NAME and WEIGHTS.is_file():
        if TINY_NAME not in _HASHES:
            _HASHES[TINY_NAME] = short_hash(WEIGHTS)
        settings.model_hash = _HASHES[TINY_NAME]
    return format_parameters(settings, f"stepwise {__version__}")


def _save_images(images, filename_prefix: str, folder: Path, prompt=None, extra_pnginfo=None,
                 recipe: dict | None = None) -> list[dict]:
    """Save a batch as ``prefix_00001_.png``...; returns ComfyUI's ``{filename, subfolder, type}`` entries
    (without ``type``), ``subfolder`` being the prefix's folder part relative to ``folder``."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images: expected an IMAGE tensor (B, H, W, C), got {getattr(images, 'shape', images)!r}")
    if not isinstance(filename_prefix, str) or not filename_prefix.strip():
        raise ValueError("filename_prefix: expected a non-empty name")
    folder = Path(folder)
    sub = Path(os.path.normpath(filename_prefix))
    if sub.is_absolute() or ".." in sub.parts or sub.name in ("", "."):
        raise ValueError(f"filename_prefix: {filename_prefix!r} would save outside the output folder")
    target = folder / sub.parent
    ctx = current_context()
    counter = _next_counter(target, sub.name, [p for p, _ in ctx.pending])
    entries = []
    subfolder = sub.parent.as_posix() if str(sub.parent) != "." else ""
    for image in images:
        arr = numpy.clip(255.0 * image.detach().cpu().float().numpy(), 0, 255).astype(numpy.uint8)
        if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
            raise ValueError(f"images: expected 1, 3 or 4 channels last, got shape {tuple(image.shape)}")
        info = PngImagePlugin.PngInfo()
        if prompt is not None:
            info.add_text("prompt", json.dumps(prompt))
        for key, value in (extra_pnginfo or {}).items():
            info.add_text(key, json.dumps(value))
        if recipe is not None:
            info.add_text("stepwise", json.dumps({**recipe, "image": len(entries)}))
            if ctx.a1111_parameters:
                text = a1111_parameters(recipe, prompt, (arr.shape[1], arr.shape[0]))
                if text is not None:
                    info.add_text("parameters", text)
        img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        path = target / f"{sub.name}_{counter:05}_.png"
        if ctx.defer_writes:
            ctx.pending.append((path, encode_png(img, info)))
        else:
            save_png(img, path, pnginfo=info)
        ctx.written.append(path)
        entries.append({"filename": path.name, "subfolder": subfolder})
        counter += 1
    return entries


class SaveImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None, unique_id=None):
        saved = _save_images(images, filename_prefix, current_context().output_dir, prompt, extra_pnginfo,
                             _recipe_for(prompt, unique_id))
        return {"ui": {"images": [{**e, "type": "output"} for e in saved]}}


class PreviewImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"

    def save_images(self, images, prompt=None, extra_pnginfo=None, unique_id=None):
        return {"ui": {"images": show_on_node(images, prompt, extra_pnginfo, _recipe_for(prompt, unique_id))}}


def show_on_node(images, prompt=None, extra_pnginfo=None, recipe: dict | None = None) -> list[dict]:
    """What a node shows (PreviewImage, the Efficient nodes' decoded images, XY plot grids): written to the run's
    temp folder with the same metadata as a saved image (``prompt``, ``workflow``, ``stepwise``), as ComfyUI's
    previews carry it."""
    ctx = current_context()
    folder = ctx.temp_dir or Path(ctx.output_dir) / "temp"
    extra = {k: v for k, v in (extra_pnginfo or {}).items() if k != "stepwise"}
    if recipe is None and isinstance((extra_pnginfo or {}).get("stepwise"), dict):
        recipe = extra_pnginfo["stepwise"]
    return [{**e, "type": "temp"} for e in _save_images(images, "ComfyUI_temp", folder, prompt, extra, recipe)]


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
