"""The ``script`` input of the Efficient nodes: a typed value that script nodes produce.

A script is a :class:`StepwiseScript` (frozen: ``kind``, ``params``, ``version``). Its ``kind`` must
be registered in :data:`SCRIPT_HANDLERS`; a handler receives the node's sampling call
``sample(latent, **overrides)`` and the input LATENT, and returns the final LATENT. Anything else
in the ``script`` socket (e.g. an efficiency-nodes script tuple) is a clear error, never ignored.

Built in: ``hires_fix`` (sample, upscale the latent, second denoising pass through the same core)
and ``noise`` (the SDE samplers' noise source: ComfyUI's Brownian tree or the fast device one).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

__all__ = ["StepwiseScript", "SCRIPT_HANDLERS", "check_script", "apply_script", "StepwiseHiResFixScript",
           "StepwiseNoiseScript", "UPSCALE_METHODS"]

SCRIPT_VERSION = 1


@dataclass(frozen=True)
class StepwiseScript:
    kind: str
    params: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    version: int = SCRIPT_VERSION

    @classmethod
    def make(cls, kind: str, **params: Any) -> "StepwiseScript":
        return cls(kind, tuple(sorted(params.items())))

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.params)


#: run(sample, latent, script) -> final LATENT, where ``sample(latent, **overrides)`` runs the node's
#: sampling through common_ksampler with some widgets overridden
ScriptHandler = Callable[[Callable[..., dict], dict, StepwiseScript], dict]
SCRIPT_HANDLERS: dict[str, ScriptHandler] = {}


def check_script(script: Any) -> StepwiseScript | None:
    if script is None:
        return None
    if not isinstance(script, StepwiseScript):
        raise ValueError(f"script: expected a Stepwise script (from a Stepwise script node), got "
                         f"{type(script).__name__}; efficiency-nodes scripts are not supported")
    if script.kind not in SCRIPT_HANDLERS:
        raise ValueError(f"script: unknown script kind {script.kind!r}; allowed: {', '.join(SCRIPT_HANDLERS)}")
    if script.version != SCRIPT_VERSION:
        raise ValueError(f"script: version {script.version} is not supported (this pack reads {SCRIPT_VERSION})")
    return script


def apply_script(script: StepwiseScript | None, sample: Callable[..., dict], latent: dict) -> dict:
    if script is None:
        return sample(latent)
    return SCRIPT_HANDLERS[script.kind](sample, latent, script)


UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic"]


def upscale_latent(latent: dict, scale: float, method: str) -> dict:
    samples = latent["samples"]
    h, w = samples.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    mode = {"nearest-exact": "nearest-exact", "bilinear": "bilinear", "area": "area", "bicubic": "bicubic"}[method]
    kwargs = {} if mode in ("nearest-exact", "area") else {"align_corners": False}
    out = dict(latent)
    out["samples"] = torch.nn.functional.interpolate(samples, size=size, mode=mode, **kwargs)
    out.pop("noise_mask", None)
    return out


def _hires_fix(sample: Callable[..., dict], latent: dict, script: StepwiseScript) -> dict:
    """Sample, upscale the latent and denoise it again (a latent "hires fix")."""
    o = script.options
    up = upscale_latent(sample(latent), float(o["upscale_by"]), o["upscale_method"])
    # the second pass is a plain KSampler pass, also after an Advanced node
    overrides = {"steps": o["hires_steps"], "denoise": o["denoise"], "disable_noise": False, "start_step": None,
                 "last_step": None, "force_full_denoise": False, "sigmas": None, "split_mode": "comfy"}
    if o.get("seed", -1) >= 0:
        overrides["seed"] = o["seed"]
    return sample(up, **overrides)


SCRIPT_HANDLERS["hires_fix"] = _hires_fix


def _noise(sample: Callable[..., dict], latent: dict, script: StepwiseScript) -> dict:
    """Sample with the chosen noise source for Brownian-motion SDE samplers."""
    return sample(latent, sde_noise=script.options["sde_noise"])


SCRIPT_HANDLERS["noise"] = _noise


class StepwiseHiResFixScript:
    """SCRIPT for the Efficient nodes: a second pass at higher resolution."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "upscale_by": ("FLOAT", {"default": 1.5, "min": 1.0, "max": 4.0, "step": 0.05}),
            "upscale_method": (UPSCALE_METHODS,),
            "hires_steps": ("INT", {"default": 12, "min": 1, "max": 10000}),
            "denoise": ("FLOAT", {"default": 0.56, "min": 0.0, "max": 1.0, "step": 0.01}),
            "hires_seed": ("INT", {"default": -1, "min": -1, "max": 0xFFFFFFFFFFFFFFFF,
                             "tooltip": "-1 uses the sampler's seed"}),
        }}

    RETURN_TYPES = ("SCRIPT",)
    FUNCTION = "script"
    CATEGORY = "stepwise/scripts"

    def script(self, upscale_by, upscale_method, hires_steps, denoise, hires_seed=-1):
        from .widgets import check_widgets

        check_widgets(type(self), {"upscale_by": upscale_by, "upscale_method": upscale_method,
                                   "hires_steps": hires_steps, "denoise": denoise, "hires_seed": hires_seed})
        return (StepwiseScript.make("hires_fix", upscale_by=float(upscale_by), upscale_method=upscale_method,
                                    hires_steps=int(hires_steps), denoise=float(denoise), seed=int(hires_seed)),)


class StepwiseNoiseScript:
    """SCRIPT for the Efficient nodes: the SDE samplers' noise source. "brownian" gives ComfyUI's
    numbers; "fast" draws the same statistics on the sampling device without a CPU Brownian tree."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sde_noise": (["brownian", "fast"], {"tooltip": "brownian: ComfyUI-identical; "
                                                                            "fast: same statistics, much cheaper"})}}

    RETURN_TYPES = ("SCRIPT",)
    FUNCTION = "script"
    CATEGORY = "stepwise/scripts"

    def script(self, sde_noise):
        from .widgets import check_widget

        check_widget(type(self), "sde_noise", sde_noise)
        return (StepwiseScript.make("noise", sde_noise=sde_noise),)
