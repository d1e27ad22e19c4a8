"""``common_ksampler``: the one path every Stepwise sampler node takes.

It validates inputs, builds the sigma plan (schedule, denoise rule, start/end slice), prepares the
initial noise and hands everything to the model's backend, which runs the sampler:

- a :class:`~.denoiser.StandaloneModel` samples with our own CFG denoiser;
- inside ComfyUI, ``nodes/comfy_bridge.py`` wraps a ModelPatcher so the model call goes through
  ComfyUI's guider (ControlNet, hooks, area/mask conditioning, patches all keep working).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch

from ..schedulers import SCHEDULER_NAMES, SigmaPlan, plan_sigmas
from .noise import SDE_NOISE_SOURCES, SEED_MAX, NoiseSource, check_inpaint_seed, is_nested, validate_seed
from .profile import NEWEST, Profile
from .registry import (ACCEPTS_NOISE_SAMPLER, BATCH_COUPLED_SAMPLERS, RANDOM_INPAINT_NOISE_SAMPLERS,
                       SELF_STEPPING_SAMPLERS, get_sampler, profile_options)
from .seamless import (SPLIT_MODES, STATE_KEY, STATE_VERSION, CannotContinue, SeamlessRecorder, SeamlessState,
                       StopAtStep, read_state, samples_digest, step_starts)
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


def _check_common(seed, steps, cfg, sampler_name, scheduler, denoise, start_step, last_step, latent, sde_noise,
                  profile, native: bool = False, native_schedule: bool = False) -> None:
    validate_seed(seed, "seed")
    _check_int(steps, "steps", 1, 10000)
    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not math.isfinite(cfg):
        raise ValueError(f"cfg: expected a finite number (0.0..100.0 in the node), got {cfg!r}")
    if not native:
        get_sampler(sampler_name)
    if scheduler not in SCHEDULER_NAMES and not native_schedule:
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
    if not isinstance(profile, Profile):
        raise ValueError(f"profile: expected a behaviour Profile, got {type(profile).__name__}")


def check_sigmas(sigmas: Any) -> torch.Tensor:
    """A SIGMAS input: a 1-D float tensor of at least one value (one value: nothing to run)."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 1 or \
            not (sigmas.is_floating_point() or sigmas.dtype in (torch.int32, torch.int64)):
        shape = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise ValueError(f"sigmas: expected a 1-D tensor of sigmas (a SIGMAS output), got {shape}")
    return sigmas.detach().to(torch.float32).cpu()


def sampler_options(sampler_name: str, source: NoiseSource, profile: Profile) -> dict:
    """The keyword options the run hands the sampler: its noise source and the profile's flags for it."""
    options = dict(profile_options(sampler_name, profile))
    if sampler_name in ACCEPTS_NOISE_SAMPLER:
        options["noise_sampler"] = source
    return options


def common_ksampler(model: SamplingBackend, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
                    positive, negative, latent: dict, denoise: float = 1.0, disable_noise: bool = False,
                    start_step: int | None = None, last_step: int | None = None, force_full_denoise: bool = False,
                    callback: StepCallback | None = None, disable_pbar: bool = True,
                    info: RunInfo | None = None, sde_noise: str = "brownian", *, profile: Profile | None = None,
                    noise: NoiseSource | None = None, native_sampler: Any = None,
                    native_schedule: Any = None, split_mode: str = "comfy", sigmas: torch.Tensor | None = None,
                    sampler_extra: dict | None = None) -> tuple[dict]:
    """ComfyUI's ``nodes.common_ksampler`` with the same parameters, plus a per-step callback.

    ``profile`` is the ComfyUI release whose numbers to reproduce (default: the newest, ``NEWEST``).
    ``noise`` replaces the seed's noise (a :class:`NoiseSource`: per-item seeds, variation); ``sde_noise="fast"``
    opts the Brownian-motion SDE samplers into device-side noise with the same statistics (not ComfyUI's
    numbers). ``native_sampler`` runs a sampler the backend brings itself (inside ComfyUI: a newer ComfyUI's
    sampler that this pack does not implement). ``split_mode="seamless"`` continues a run an earlier node stopped
    (see ``sampling.seamless``) and, when this node stops early, hands its state on in the LATENT.
    Returns ``(latent_out,)``: a copy of the input LATENT dict with ``samples`` replaced.
    """
    profile = NEWEST if profile is None else profile
    native = native_sampler is not None
    _check_common(seed, steps, cfg, sampler_name, scheduler, denoise, start_step, last_step, latent, sde_noise, profile,
                  native, native_schedule is not None)
    if split_mode not in SPLIT_MODES:
        raise ValueError(f"split_mode: {split_mode!r} is not one of {', '.join(SPLIT_MODES)}")
    if sigmas is not None:
        sigmas = check_sigmas(sigmas)
    sampler_fn = native_sampler if native else get_sampler(sampler_name)
    foreign = None  # another pack's (or core's) NOISE: its own initial noise, its seed for the per-step noise
    if noise is None:
        noise = NoiseSource(seed, profile.cpu_noise_seed_offset, sde_noise)
    elif not isinstance(noise, NoiseSource):
        if not callable(getattr(noise, "generate_noise", None)):
            raise ValueError(f"noise: expected a NOISE (with generate_noise), got {type(noise).__name__}")
        foreign = noise
        fseed = getattr(noise, "seed", None)
        step_seed = fseed if isinstance(fseed, int) and not isinstance(fseed, bool) and 0 <= fseed <= SEED_MAX else seed
        noise = NoiseSource(step_seed, profile.cpu_noise_seed_offset, sde_noise)
    else:
        disable_noise = False  # a connected noise replaces the seed widget and add_noise
        if sde_noise != "brownian" and noise.sde != sde_noise:
            noise = dataclasses.replace(noise, sde=sde_noise)  # the SDE noise script applies to it too
    if noise.batch_mode == "per_item" and sampler_name in BATCH_COUPLED_SAMPLERS and \
            isinstance(latent.get("samples"), torch.Tensor) and latent["samples"].shape[0] > 1:
        return _item_by_item(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise,
                             disable_noise, start_step, last_step, force_full_denoise, callback, disable_pbar, info,
                             sde_noise, profile, noise, native_sampler, native_schedule, split_mode)
    source = noise.with_batch_index(latent.get("batch_index"))
    nested = is_nested(latent["samples"])
    if nested and not hasattr(model, "nest"):
        raise ValueError("latent_image: nested latents (e.g. ComfyUI 0.8.0's audio + video) need ComfyUI; the "
                         "standalone runtime samples plain tensors only")
    estimate = getattr(model, "memory_estimate", None)
    if estimate is not None and not nested:
        shape = tuple(latent["samples"].shape)
        check_fits(estimate(shape, sampler_name), f"latent_image: sampling a {'x'.join(map(str, shape))} latent",
                   "use a smaller image or batch")
    latent_image = latent_in = model.fix_empty_latent_channels(latent["samples"])
    noise_mask = latent.get("noise_mask")
    plan = plan_sigmas(model.model_sampling, scheduler, sampler_name, steps, denoise, start_step, last_step,
                       force_full_denoise, schedule_fn=native_schedule, sigmas=sigmas)
    options = {} if native else {**sampler_options(sampler_name, source, profile), **(sampler_extra or {})}
    seamless = None
    if split_mode == "seamless" and nested:
        if info is not None:
            info.notes.append("seamless: nested latents run as ComfyUI does (no seamless hand-off)")
    elif split_mode == "seamless":
        seamless = _seamless_plan(latent, latent_image, plan, sampler_name, native, options, disable_noise,
                                  start_step, last_step, force_full_denoise, info)
    if seamless is not None and seamless.state is not None:  # continuing a run: its noise, not this node's
        st = seamless.state
        source = NoiseSource(**st.noise_source)
        options = {**sampler_options(sampler_name, source, profile), **(sampler_extra or {}), **st.options}
        initial, latent_image = st.noise, st.latent
    elif foreign is not None:
        initial = foreign.generate_noise({**latent, "samples": latent_image})
        if not isinstance(initial, torch.Tensor) and not is_nested(initial):
            raise ValueError(f"noise: {type(foreign).__name__}.generate_noise returned {type(initial).__name__}, "
                             f"not a tensor")
    elif disable_noise:
        if nested:
            initial = model.nest([torch.zeros(t.size(), dtype=t.dtype, layout=t.layout, device="cpu")
                                  for t in latent_image.unbind()])
        else:
            initial = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout,
                                  device="cpu")
    else:
        initial = source.initial(latent_image, source.batch_index)
        if nested:
            initial = model.nest(initial)

    if info is not None:
        info.full_sigmas, info.noise = plan.full, initial
        info.sigmas = None if plan.sigmas is None else plan.sigmas.clone()
        info.noise_source = source
    out = latent.copy()
    out.pop(STATE_KEY, None)
    if plan.sigmas is None or plan.sigmas.numel() == 0:
        out["samples"] = latent_in
        return (out,)  # nothing to run: ComfyUI returns the input latent untouched
    inpaint = None
    if sampler_name in RANDOM_INPAINT_NOISE_SAMPLERS:
        check_inpaint_seed(source.seed, sampler_name)
        inpaint = source
    run_sigmas, run_fn, run_callback = plan.sigmas, sampler_fn, callback
    if seamless is not None:
        run_sigmas, run_fn, run_callback = seamless.wrap(sampler_fn, plan, callback, model)
        if info is not None:
            info.sigmas = run_sigmas[seamless.start:seamless.stop + 1].clone()
            info.seamless = seamless.describe()
    samples = model.sample(initial, latent_image, run_fn, run_sigmas, positive, negative, float(cfg),
                           noise_mask=noise_mask, callback=run_callback, seed=source.seed, disable_pbar=disable_pbar,
                           random_inpaint_noise=inpaint is not None, inpaint_source=inpaint,
                           sampler_options=None if native else options)
    if info is not None:
        info.sampled = True
    out["samples"] = samples
    if seamless is not None and seamless.stopped:
        out[STATE_KEY] = seamless.state_out(sampler_name, source, initial, latent_image, options, samples).to_dict()
    return (out,)


def _item_by_item(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise, disable_noise,
                  start_step, last_step, force_full_denoise, callback, disable_pbar, info, sde_noise, profile, noise,
                  native_sampler, native_schedule, split_mode) -> tuple[dict]:
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
        (out,) = common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, part, denoise,
                                 disable_noise, start_step, last_step, force_full_denoise, callback, disable_pbar,
                                 info, sde_noise, profile=profile, noise=noise, native_sampler=native_sampler,
                                 native_schedule=native_schedule, split_mode=split_mode)
        outs.append(out["samples"])
    out = latent.copy()
    out.pop(STATE_KEY, None)
    out["samples"] = torch.cat(outs)
    return (out,)


@dataclass
class _Seamless:
    """One node's part of a seamless run: the full schedule, its slice, and the replay log."""

    full: torch.Tensor
    start: int
    stop: int
    stop_early: bool
    state: SeamlessState | None
    shape: tuple = ()
    options: dict = field(default_factory=dict)
    recorder: SeamlessRecorder | None = None
    stopped: bool = False

    def wrap(self, sampler_fn, plan: SigmaPlan, callback, model):
        """(sigmas, sampler function, callback) for the backend: the full schedule, the replaying/recording
        sampler, and a callback that reports only this node's steps, numbered from 0."""
        starts = None
        if self.stop_early:
            starts = step_starts(sampler_fn, self.full, self.shape, model,
                                 {k: v for k, v in self.options.items() if k != "noise_sampler"})
            if starts[self.stop] < 0:
                raise ValueError(f"end_at_step: the sampler reports no step {self.stop}, so it cannot stop there")
        replay_d = self.state.denoised if self.state is not None else None
        replay_u = self.state.uncond if self.state is not None else None
        self.recorder = rec = SeamlessRecorder(replay_d, replay_u, starts[self.stop] if starts else None)
        node = self
        ms = getattr(model, "model_sampling", None)

        def run(inner_model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
            try:
                return sampler_fn(rec.wrap(inner_model), x, sigmas, extra_args=extra_args, callback=callback,
                                  disable=disable, **options)
            except StopAtStep as stop:
                node.stopped = True
                scaling = getattr(getattr(inner_model, "model_sampling", None) or ms, "inverse_noise_scaling", None)
                # the backend applies the schedule's last (zero) sigma; a leftover latent is scaled at its own
                return scaling(node.full[node.stop].to(stop.x.device), stop.x) if scaling is not None else stop.x

        total = self.stop - self.start

        def report(step, x0, x, _total):
            if callback is not None and self.start <= step < self.stop:
                callback(step - self.start, x0, x, total)

        return self.full.clone(), run, report  # a copy: uni_pc writes into the schedule it is handed

    def state_out(self, sampler_name, source, noise, latent_image, options, samples) -> SeamlessState:
        denoised, uncond = self.recorder.log()
        plain = {k: v for k, v in options.items() if k != "noise_sampler"}
        fields = {f: getattr(source, f) for f in ("seed", "cpu_seed_offset", "sde", "batch_mode", "variation_seed",
                                                   "variation_strength", "batch_index")}
        return SeamlessState(STATE_VERSION, sampler_name, self.full.cpu().clone(), self.stop, int(denoised.shape[0]),
                             denoised, uncond, noise.cpu(), latent_image.detach().cpu(), fields, plain,
                             samples_digest(samples))

    def describe(self) -> dict:
        return {"continued": self.state is not None, "start": self.start, "stop": self.stop,
                "stops_early": self.stop_early}


def _seamless_plan(latent, latent_image, plan: SigmaPlan, sampler_name, native, options, disable_noise, start_step,
                   last_step, force_full_denoise, info) -> _Seamless | None:
    """How this node takes part in a seamless run, or None (then it runs as ComfyUI does, and ``info.notes``
    says why when it could not continue an incoming run)."""
    def note(text: str) -> None:
        if info is not None:
            info.notes.append(text)

    full = plan.full
    n = len(full) - 1
    start = 0 if start_step is None else start_step
    stop_early = last_step is not None and last_step < n and not force_full_denoise
    stop = last_step if stop_early else n
    state = None
    try:
        state = read_state(latent)
    except CannotContinue as exc:
        note(f"seamless: {exc}; restarting as ComfyUI does")
    if state is not None:
        why = None
        if native:
            why = f"sampler {sampler_name!r} runs through ComfyUI's own function"
        elif state.sampler_name != sampler_name:
            why = f"the sampler changed ({state.sampler_name} -> {sampler_name})"
        elif state.sigmas.shape != full.shape or not torch.equal(state.sigmas, full.cpu()):
            why = "the schedule changed (scheduler, steps or denoise differ from the previous node)"
        elif start != state.step:
            why = f"start_at_step is {start} but the previous node stopped at step {state.step}"
        elif not disable_noise:
            why = "add_noise is enable: the input still holds the run's noise (set add_noise to disable)"
        elif state.output_digest != samples_digest(latent["samples"]):
            why = "the latent was changed after the node that stopped (it is not that node's output)"
        elif tuple(state.noise.shape) != tuple(latent_image.shape):
            why = "the latent's shape changed"
        elif last_step is not None and last_step < n and force_full_denoise:
            why = "return_with_leftover_noise is disable: this node finishes the image early, as ComfyUI does"
        if why is not None:
            note(f"seamless: cannot continue the previous node's run: {why}; restarting as ComfyUI does")
            state = None
    if state is None and (start > 0 or not stop_early):
        return None  # nothing to continue and nothing to hand on: ComfyUI's behaviour is the seamless one
    if sampler_name in SELF_STEPPING_SAMPLERS:
        raise ValueError(f"sampler_name: {sampler_name} chooses its own steps, so a run cannot be split seamlessly "
                         f"(allowed: any other sampler, or split_mode comfy)")
    if native:
        note(f"seamless: sampler {sampler_name!r} runs through ComfyUI's own function and cannot be split seamlessly")
        return None
    return _Seamless(full, start, stop, stop_early, state, tuple(latent_image.shape), options)
