"""``common_ksampler``: the one path every Stepwise sampler node takes.

It validates inputs, builds the sigma plan (schedule, denoise rule, start/end slice), prepares the
initial noise and hands everything to the model's backend, which runs the sampler:

- a :class:`~.denoiser.StandaloneModel` samples with our own CFG denoiser;
- inside ComfyUI, ``nodes/comfy_bridge.py`` wraps a ModelPatcher so the model call goes through
  ComfyUI's guider (ControlNet, hooks, area/mask conditioning, patches all keep working).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch

from ..schedulers import SCHEDULER_NAMES, plan_sigmas
from .noise import SDE_NOISE_SOURCES, check_inpaint_seed, prepare_noise, validate_seed
from .registry import RANDOM_INPAINT_NOISE_SAMPLERS, SDE_NOISE_SAMPLERS, get_sampler
from .resources import check_fits

__all__ = ["SamplingBackend", "StepCallback", "RunInfo", "common_ksampler", "validate_latent"]

#: ``callback(step, x0, x, total_steps)``: x0 is the denoised prediction in model space.
StepCallback = Callable[[int, torch.Tensor, torch.Tensor, int], None]


class SamplingBackend(Protocol):
    """What ``common_ksampler`` needs from a model (see module docstring)."""

    model_sampling: Any

    def fix_empty_latent_channels(self, latent: torch.Tensor) -> torch.Tensor: ...

    def sample(self, noise: torch.Tensor, latent_image: torch.Tensor, sampler_fn, sigmas: torch.Tensor, positive,
               negative, cfg: float, noise_mask: torch.Tensor | None = None, callback=None, seed: int | None = None,
               disable_pbar: bool = True, random_inpaint_noise: bool = False,
               sampler_options: dict | None = None) -> torch.Tensor: ...


@dataclass
class RunInfo:
    """What a run did, for UIs and tests: the sigmas handed to the sampler (None if it did not run)."""

    sigmas: torch.Tensor | None = None
    full_sigmas: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    sampled: bool = False


def _check_int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer in {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} is outside the allowed range {lo}..{hi}")
    return value


def validate_latent(latent: Any) -> dict:
    if not isinstance(latent, dict) or "samples" not in latent:
        raise ValueError("latent_image: expected a LATENT dict with a 'samples' tensor")
    samples = latent["samples"]
    if not isinstance(samples, torch.Tensor) or samples.ndim not in (4, 5) or not samples.is_floating_point():
        shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise ValueError(f"latent_image: 'samples' must be a 4-D (B,C,H,W) or 5-D (B,C,T,H,W) float tensor, "
                         f"got {shape}")
    if samples.shape[0] < 1:
        raise ValueError("latent_image: the batch is empty")
    batch_index = latent.get("batch_index")
    if batch_index is not None:
        if not isinstance(batch_index, Sequence) or len(batch_index) != samples.shape[0] or \
                not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in batch_index):
            raise ValueError(f"latent_image: 'batch_index' must list one non-negative integer per batch item "
                             f"({samples.shape[0]}), got {batch_index!r}")
    mask = latent.get("noise_mask")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.ndim < 2 or mask.numel() == 0 or mask.is_complex():
            raise ValueError("latent_image: 'noise_mask' must be a real tensor of shape (h, w), (b, h, w) or "
                             f"(b, 1, h, w), got {getattr(mask, 'shape', type(mask).__name__)}")
        lead = int(mask.numel() // (mask.shape[-1] * mask.shape[-2]))
        if samples.ndim == 4 and lead not in (1, samples.shape[0]) and lead < samples.shape[0]:
            raise ValueError(f"latent_image: 'noise_mask' holds {lead} masks, which cannot broadcast to a batch "
                             f"of {samples.shape[0]}; allowed: 1 or {samples.shape[0]} (or more)")
    return latent


def common_ksampler(model: SamplingBackend, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
                    positive, negative, latent: dict, denoise: float = 1.0, disable_noise: bool = False,
                    start_step: int | None = None, last_step: int | None = None, force_full_denoise: bool = False,
                    callback: StepCallback | None = None, disable_pbar: bool = True,
                    info: RunInfo | None = None, sde_noise: str = "brownian") -> tuple[dict]:
    """ComfyUI's ``nodes.common_ksampler`` with the same parameters, plus a per-step callback.

    ``sde_noise="fast"`` opts the Brownian-motion SDE samplers into device-side noise with the same
    statistics (not ComfyUI's numbers); the default keeps ComfyUI's Brownian tree.
    Returns ``(latent_out,)``: a copy of the input LATENT dict with ``samples`` replaced.
    """
    validate_seed(seed, "seed")
    _check_int(steps, "steps", 1, 10000)
    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not math.isfinite(cfg):
        raise ValueError(f"cfg: expected a finite number (0.0..100.0 in the node), got {cfg!r}")
    sampler_fn = get_sampler(sampler_name)
    if scheduler not in SCHEDULER_NAMES:
        raise ValueError(f"scheduler: unknown scheduler {scheduler!r}; allowed: {', '.join(SCHEDULER_NAMES)}")
    if denoise is not None and (isinstance(denoise, bool) or not isinstance(denoise, (int, float))
                                or not math.isfinite(denoise)):
        raise ValueError(f"denoise: expected a finite number in 0.0..1.0, got {denoise!r}")
    for value, name in ((start_step, "start_at_step"), (last_step, "end_at_step")):
        if value is not None:
            _check_int(value, name, 0, 10000)
    validate_latent(latent)
    if sde_noise not in SDE_NOISE_SOURCES:
        raise ValueError(f"sde_noise: unknown source {sde_noise!r}; allowed: {', '.join(SDE_NOISE_SOURCES)}")
    options = {"noise_source": sde_noise} if sde_noise != "brownian" and sampler_name in SDE_NOISE_SAMPLERS else None
    estimate = getattr(model, "memory_estimate", None)
    if estimate is not None:
        shape = tuple(latent["samples"].shape)
        check_fits(estimate(shape, sampler_name), f"latent_image: sampling a {'x'.join(map(str, shape))} latent",
                   "use a smaller image or batch")
    latent_image = model.fix_empty_latent_channels(latent["samples"])

    if disable_noise:
        noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout, device="cpu")
    else:
        noise = prepare_noise(latent_image, seed, latent.get("batch_index"))
    noise_mask = latent.get("noise_mask")

    plan = plan_sigmas(model.model_sampling, scheduler, sampler_name, steps, denoise, start_step, last_step,
                       force_full_denoise)
    if info is not None:
        info.full_sigmas, info.noise = plan.full, noise
        info.sigmas = None if plan.sigmas is None else plan.sigmas.clone()
    if plan.sigmas is None or plan.sigmas.numel() == 0:
        samples = latent_image  # nothing to run: ComfyUI returns the input latent untouched
    else:
        random_inpaint = sampler_name in RANDOM_INPAINT_NOISE_SAMPLERS
        if random_inpaint:
            check_inpaint_seed(seed, sampler_name)
        samples = model.sample(noise, latent_image, sampler_fn, plan.sigmas, positive, negative, float(cfg),
                               noise_mask=noise_mask, callback=callback, seed=seed, disable_pbar=disable_pbar,
                               random_inpaint_noise=random_inpaint, **({"sampler_options": options} if options else {}))
        if info is not None:
            info.sampled = True
    out = latent.copy()
    out["samples"] = samples
    return (out,)
