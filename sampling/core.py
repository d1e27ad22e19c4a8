"""``common_ksampler``: the one path every Stepwise sampler node takes.

It validates inputs, builds the sigma plan (schedule, denoise rule, start/end slice), prepares the
initial noise and hands everything to the model's backend, which runs the sampler:

- a :class:`~.denoiser.StandaloneModel` samples with our own CFG denoiser;
- inside ComfyUI, ``nodes/comfy_bridge.py`` wraps a ModelPatcher so the model call goes through
  ComfyUI's guider (ControlNet, hooks, area/mask conditioning, patches all keep working).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch

from ..schedulers import plan_sigmas
from .noise import NoiseSource, check_inpaint_seed, is_nested
from .profile import Profile
from .registry import TRAITS, discards_penultimate, get_sampler, profile_options
from .request import SamplingRequest
from .resources import check_fits
from .seamless import STATE_KEY, plan_seamless

__all__ = ["SamplingBackend", "StepCallback", "RunInfo", "common_ksampler", "validate_latent", "SamplingRequest"]

#: ``callback(step, x0, x, total_steps)``: x0 is the denoised prediction in model space.
StepCallback = Callable[[int, torch.Tensor, torch.Tensor, int], None]


class SamplingBackend(Protocol):
    """What ``common_ksampler`` needs from a model (see module docstring)."""

    model_sampling: Any

    def fix_empty_latent_channels(self, latent: torch.Tensor, **downscale_ratios) -> torch.Tensor: ...

    def sample(self, noise: torch.Tensor, latent_image: torch.Tensor, sampler_fn, sigmas: torch.Tensor, positive,
               negative, cfg: float, noise_mask: torch.Tensor | None = None, callback=None, seed: int | None = None,
               disable_pbar: bool = True, random_inpaint_noise: bool = False, inpaint_source=None,
               sampler_options: dict | None = None) -> torch.Tensor: ...


@dataclass
class RunInfo:
    """What a run did, for UIs and tests: the sigmas handed to the sampler (None if it did not run)."""

    sigmas: torch.Tensor | None = None
    full_sigmas: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    sampled: bool = False
    noise_source: Any = None
    notes: list = field(default_factory=list)
    seamless: dict | None = None
    recipe: dict | None = None
    #: the latent's shape (B, C, [T,] H, W) (None for nested latents)
    shape: tuple | None = None


#: a LATENT's scale hints (ComfyUI 0.22.0+): an all-zero latent is resized to the model's scale
DOWNSCALE_KEYS = ("downscale_ratio_spacial", "downscale_ratio_temporal")


def validate_latent(latent: Any) -> dict:
    if not isinstance(latent, dict) or "samples" not in latent:
        raise ValueError("latent_image: expected a LATENT dict with a 'samples' tensor")
    samples = latent["samples"]
    if is_nested(samples):
        parts = list(samples.unbind())
        if not parts or not all(isinstance(t, torch.Tensor) and t.ndim in (3, 4, 5) and t.is_floating_point()
                                and t.shape[0] == parts[0].shape[0] for t in parts):
            raise ValueError("latent_image: a nested latent must hold float tensors with the same batch size")
        return latent
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


def sampler_options(sampler_name: str, source: NoiseSource, profile: Profile, model_sampling=None) -> dict:
    """The keyword options the run hands the sampler: its noise source and the profile's flags for it (with the
    model's ``noise_scale``, when it sets one)."""
    noise_scale = float(getattr(model_sampling, "noise_scale", 1.0))
    flow = getattr(model_sampling, "prediction", None) == "const" or type(model_sampling).__name__.startswith("CONST") \
        or any(c.__name__ == "CONST" for c in type(model_sampling).__mro__)
    options = dict(profile_options(sampler_name, profile, noise_scale, flow))
    traits = TRAITS.get(sampler_name)
    if traits is not None and traits.accepts_noise_sampler:
        options["noise_sampler"] = source
    return options


def common_ksampler(model: SamplingBackend, request: SamplingRequest, positive, negative, latent: dict, *,
                    callback: StepCallback | None = None, info: RunInfo | None = None,
                    disable_pbar: bool = True) -> tuple[dict]:
    """ComfyUI's ``nodes.common_ksampler`` on a :class:`SamplingRequest`, plus a per-step callback.

    The request's profile decides which ComfyUI release's numbers are reproduced; its ``noise`` may replace the
    seed's (per-item seeds, variations, a host's NOISE); ``sde_noise="fast"`` opts the Brownian-motion SDE samplers
    into device-side noise (not ComfyUI's numbers); ``native_sampler``/``native_schedule`` are run by the backend
    itself (inside ComfyUI: a newer ComfyUI's functions); ``split_mode="seamless"`` continues a run an earlier node
    stopped and, when this node stops early, hands its state on in the LATENT (``sampling.seamless``).
    Returns ``(latent_out,)``: a copy of the input LATENT dict with ``samples`` replaced.
    """
    if not isinstance(request, SamplingRequest):
        raise ValueError(f"request: expected a SamplingRequest, got {type(request).__name__}")
    request.validate()
    validate_latent(latent)
    native = request.native_sampler is not None
    sampler_name = request.sampler_name
    sampler_fn = request.native_sampler if native else get_sampler(sampler_name)
    source = request.noise_source()
    foreign = request.noise if request.noise is not None and not isinstance(request.noise, NoiseSource) else None
    disable_noise = not request.adds_noise
    traits = TRAITS.get(sampler_name)
    if source.batch_mode == "per_item" and traits is not None and traits.batch_coupled and \
            isinstance(latent.get("samples"), torch.Tensor) and latent["samples"].shape[0] > 1:
        return _item_by_item(model, request, positive, negative, latent, callback, info, disable_pbar)
    source = source.with_batch_index(latent.get("batch_index"))
    nested = is_nested(latent["samples"])
    if nested and not hasattr(model, "nest"):
        raise ValueError("latent_image: nested latents (e.g. ComfyUI 0.8.0's audio + video) need ComfyUI; the "
                         "standalone runtime samples plain tensors only")
    estimate = getattr(model, "memory_estimate", None)
    if estimate is not None and not nested:
        shape = tuple(latent["samples"].shape)
        check_fits(estimate(shape, sampler_name), f"latent_image: sampling a {'x'.join(map(str, shape))} latent",
                   "use a smaller image or batch")
    ratios = {k: latent[k] for k in DOWNSCALE_KEYS if latent.get(k) is not None} \
        if request.profile.latent_downscale_keys else {}
    latent_image = latent_in = model.fix_empty_latent_channels(latent["samples"], **ratios)
    noise_mask = latent.get("noise_mask")
    start_step, last_step = request.start_at_step, request.end_at_step
    plan = plan_sigmas(model.model_sampling, request.scheduler, discards_penultimate(sampler_name), request.steps,
                       request.denoise,
                       start_step, last_step, request.force_full_denoise, schedule_fn=request.native_schedule,
                       sigmas=request.sigmas_tensor)
    extra = dict(request.sampler_options)
    options = {} if native else {**sampler_options(sampler_name, source, request.profile, model.model_sampling), **extra}
    seamless = None
    if request.split_mode == "seamless" and nested:
        if info is not None:
            info.notes.append("seamless: nested latents run as ComfyUI does (no seamless hand-off)")
    elif request.split_mode == "seamless":
        seamless = plan_seamless(latent, latent_image, plan, sampler_name, native, options, disable_noise, start_step,
                                 last_step, request.force_full_denoise, info,
                                 traits is not None and traits.self_stepping)
    if seamless is not None and seamless.state is not None:  # continuing a run: its noise, not this node's
        st = seamless.state
        source = NoiseSource(**st.noise_source)
        options = {**sampler_options(sampler_name, source, request.profile, model.model_sampling), **extra, **st.options}
        initial, latent_image = st.noise, st.latent
    elif foreign is not None:
        initial = foreign.generate_noise({**latent, "samples": latent_image})
        if not isinstance(initial, torch.Tensor) and not is_nested(initial):
            raise ValueError(f"noise: {type(foreign).__name__}.generate_noise returned {type(initial).__name__}, "
                             f"not a tensor")
    elif disable_noise:
        zeros = [torch.zeros(t.size(), dtype=t.dtype, layout=t.layout, device="cpu")
                 for t in (latent_image.unbind() if nested else [latent_image])]
        initial = model.nest(zeros) if nested else zeros[0]
    else:
        initial = source.initial(latent_image, source.batch_index)
        if nested:
            initial = model.nest(initial)

    if info is not None:
        info.full_sigmas, info.noise = plan.full, initial
        info.shape = None if nested else tuple(latent_image.shape)
        info.sigmas = None if plan.sigmas is None else plan.sigmas.clone()
        info.noise_source = source
    out = latent.copy()
    out.pop(STATE_KEY, None)
    if request.profile.latent_downscale_keys:  # core's sampler nodes drop them from their output (0.22.0+)
        for key in DOWNSCALE_KEYS:
            out.pop(key, None)
    if plan.sigmas is None or plan.sigmas.numel() == 0:
        out["samples"] = latent_in
        return (out,)  # nothing to run: ComfyUI returns the input latent untouched
    inpaint = None
    if traits is not None and traits.random_inpaint_noise:
        check_inpaint_seed(source.seed, sampler_name)
        inpaint = source
    run_sigmas, run_fn, run_callback = plan.sigmas, sampler_fn, callback
    if seamless is not None:
        run_sigmas, run_fn, run_callback = seamless.wrap(sampler_fn, plan, callback, model)
        if info is not None:
            info.sigmas = run_sigmas[seamless.start:seamless.stop + 1].clone()
            info.seamless = seamless.describe()
    samples = model.sample(initial, latent_image, run_fn, run_sigmas, positive, negative, float(request.cfg),
                           noise_mask=noise_mask, callback=run_callback, seed=source.seed, disable_pbar=disable_pbar,
                           random_inpaint_noise=inpaint is not None, inpaint_source=inpaint,
                           sampler_options=None if native else options)
    if info is not None:
        info.sampled = True
    out["samples"] = samples
    if seamless is not None and seamless.stopped:
        out[STATE_KEY] = seamless.state_out(sampler_name, source, initial, latent_image, options, samples).to_dict()
    return (out,)


def _item_by_item(model, request: SamplingRequest, positive, negative, latent, callback, info,
                  disable_pbar) -> tuple[dict]:
    """per_item noise with a sampler whose steps depend on the whole batch (dpm_adaptive's error norm): run each
    item alone, so item i is exactly the batch-1 run with its own seed."""
    samples = latent["samples"]
    batch = samples.shape[0]
    index = latent.get("batch_index") or list(range(batch))
    mask = latent.get("noise_mask")
    outs = []
    for i in range(batch):
        part = {**latent, "samples": samples[i:i + 1], "batch_index": [index[i]]}
        if mask is not None and mask.ndim >= 3 and mask.shape[0] == batch:
            part["noise_mask"] = mask[i:i + 1]
        (out,) = common_ksampler(model, request, positive, negative, part, callback=callback, info=info,
                                 disable_pbar=disable_pbar)
        outs.append(out["samples"])
    out = latent.copy()
    out.pop(STATE_KEY, None)
    out["samples"] = torch.cat(outs)
    return (out,)
