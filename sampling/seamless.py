"""Seamless staged sampling: KSampler Advanced nodes that split one run and together equal it.

A node that stops early in ``seamless`` mode returns, in its LATENT, a :class:`SeamlessState`: the full
schedule it was slicing, the step reached, the run's noise (initial noise, the latent it started from and the
noise source: seed, batch mode, the profile's seed offset) and the **replay log**: every prediction the model
returned so far (and the unconditional one for CFG++ samplers). The next node continues the same run by
running the sampler over the full schedule again: model calls already made are answered from the log, the
rest by its own model. Since every sampler is deterministic given its predictions and its noise (a Brownian
tree over the full schedule's range, a per-step stream from the run's seed), the sampler's whole internal
history (multistep buffers, step sizes, corrector state, the noise streams' positions) is rebuilt exactly,
with no model call, and the chain equals one run of the whole schedule bit for bit. Only the sampler's own
arithmetic is repeated (a fraction of a model call per step).

A step begins with the model call just before the sampler reports that step: found once per run by a dry
run of the sampler on a 1-element latent with a null model (:func:`step_starts`). ``dpm_fast`` and
``dpm_adaptive`` choose their own steps and cannot be split.

The state is plain data (tensors, numbers, strings), versioned, serialised under one key of the LATENT dict
(:data:`STATE_KEY`); a LATENT carrying it still works everywhere a LATENT goes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .model import UncondTap, model_sampling_of

__all__ = ["STATE_KEY", "STATE_VERSION", "SPLIT_MODES", "SeamlessState", "SeamlessRecorder", "StopAtStep",
           "step_starts", "samples_digest", "read_state", "CannotContinue", "SeamlessRun", "plan_seamless"]

STATE_KEY = "stepwise_seamless"
STATE_VERSION = 1
SPLIT_MODES = ("comfy", "seamless")


class CannotContinue(Exception):
    """The incoming state cannot be continued by this node; the message says why (the node restarts)."""


def samples_digest(samples: torch.Tensor) -> str:
    """A content hash of a latent, to notice a latent changed between two nodes of a chain."""
    data = samples.detach().to("cpu", torch.float32).contiguous()
    return hashlib.blake2b(data.numpy().tobytes(), digest_size=16).hexdigest() + f":{tuple(data.shape)}"


@dataclass(frozen=True)
class SeamlessState:
    """What a stopped run needs to continue (plain data, versioned)."""

    version: int
    sampler_name: str
    sigmas: torch.Tensor          # the full schedule being sliced (float32, CPU)
    step: int                     # the step the run stopped before
    calls: int                    # model calls made so far (= len(denoised))
    denoised: torch.Tensor        # (calls, *latent shape): each call's prediction, model space
    uncond: list | None           # per call: the unconditional prediction (CFG++ samplers) or None; None if unused
    noise: torch.Tensor           # the run's initial noise (CPU)
    latent: torch.Tensor          # the latent the run started from (latent space)
    noise_source: dict            # NoiseSource fields (seed, batch mode, profile offset, ...)
    options: dict                 # the sampler's plain options from the profile (e.g. sa_solver's flag)
    output_digest: str            # samples_digest of the LATENT this state was returned with

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def read_state(latent: dict) -> SeamlessState | None:
    """The state a LATENT carries, or None; a state from another version is refused with a clear message."""
    raw = latent.get(STATE_KEY)
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
        got = raw.get("version") if isinstance(raw, dict) else type(raw).__name__
        raise CannotContinue(f"the latent carries a seamless state of another Stepwise version ({got!r}; this pack "
                             f"reads version {STATE_VERSION})")
    names = {f.name for f in dataclasses.fields(SeamlessState)}
    if set(raw) != names:
        raise CannotContinue("the latent's seamless state is incomplete")
    return SeamlessState(**raw)


class StopAtStep(Exception):
    """Raised by the recorder at the first model call of the step where this node stops."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__("stop")
        self.x = x


class _NullModel:
    """The dry run's model: zeros, with the real model's sampling description (formulas depend on it)."""

    def __init__(self, model_sampling: Any, log: list) -> None:
        self.model_sampling = model_sampling
        self.log = log

    def __call__(self, x, sigma, **extra):
        self.log.append("call")
        return torch.zeros_like(x)

    def request_uncond(self, extra_args: dict):
        tap = UncondTap()
        tap.value = None
        return dict(extra_args), tap


def _zero_noise(x):
    zeros = torch.zeros_like(x)
    sampler = lambda sigma, sigma_next: zeros  # noqa: E731
    sampler.split = lambda a, m, b: (zeros, zeros)  # type: ignore[attr-defined]
    return sampler


def step_starts(sampler_fn: Callable, sigmas: torch.Tensor, shape: tuple, model: Any, options: dict) -> list[int]:
    """Index of the first model call of each step (the call just before the sampler reports that step)."""
    log: list = []
    null = _NullModel(model_sampling_of(model), log)
    x = torch.zeros((1, shape[1]) + (1,) * (len(shape) - 2), dtype=torch.float32)
    opts = {k: v for k, v in options.items() if k != "noise_sampler"}
    if "noise_sampler" in inspect.signature(sampler_fn).parameters:
        opts["noise_sampler"] = _zero_noise(x)

    def callback(d):
        log.append(("step", int(d["i"])))

    sampler_fn(null, x, sigmas.detach().cpu().clone(), extra_args={"seed": 0}, callback=callback, disable=True, **opts)
    starts: dict[int, int] = {}
    calls = 0
    for event in log:
        if event == "call":
            calls += 1
        elif event[1] not in starts:
            starts[event[1]] = calls - 1
    n = len(sigmas) - 1
    return [starts.get(i, -1) for i in range(n)]


class SeamlessRecorder:
    """Wraps a sampler run: replays a log for the first calls, records the live ones, stops at a call.

    ``replay_denoised`` (calls, ...) and ``replay_uncond`` (a list, one entry per call) come from the incoming
    state; ``stop_call`` is the first model call of the step where this node stops (None: run to the end)."""

    def __init__(self, replay_denoised: torch.Tensor | None, replay_uncond: list | None,
                 stop_call: int | None) -> None:
        self.replay_denoised = replay_denoised
        self.replay_uncond = replay_uncond
        self.replayed = 0 if replay_denoised is None else int(replay_denoised.shape[0])
        self.stop_call = stop_call
        self.denoised: list[torch.Tensor] = []
        self.uncond: list = []
        self.calls = 0
        self.uses_uncond = replay_uncond is not None

    def wrap(self, model: Any) -> "_ReplayModel":
        return _ReplayModel(self, model)

    def log(self) -> tuple[torch.Tensor, list | None]:
        """Every call's prediction so far (replayed and live), on the CPU; and the uncond list (or None)."""
        parts = []
        if self.replay_denoised is not None and self.replayed:
            parts.append(self.replay_denoised.cpu())
        if self.denoised:
            parts.append(torch.stack(self.denoised).cpu())  # one transfer, after sampling
        denoised = torch.cat(parts) if len(parts) > 1 else parts[0]
        uncond = None
        if self.uses_uncond:
            old = list(self.replay_uncond or [None] * self.replayed)
            uncond = [None if u is None else u.cpu() for u in old + self.uncond]
        return denoised, uncond


class _ReplayModel:
    """The model as the sampler sees it during a seamless run."""

    def __init__(self, rec: SeamlessRecorder, model: Any) -> None:
        self._rec = rec
        self._model = model
        self._tap: UncondTap | None = None
        self._on_device: torch.Tensor | None = None
        ms = getattr(model, "model_sampling", None)
        if ms is not None:
            self.model_sampling = ms

    def request_uncond(self, extra_args: dict):
        self._rec.uses_uncond = True
        hook = getattr(self._model, "request_uncond", None)
        if hook is None:
            extra, tap = dict(extra_args), UncondTap()
        else:
            extra, tap = hook(extra_args)
        self._tap = tap
        return extra, tap

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        rec = self._rec
        k = rec.calls
        if rec.stop_call is not None and k == rec.stop_call:
            raise StopAtStep(x)
        rec.calls += 1
        if k < rec.replayed:
            if self._on_device is None:  # the whole log moves to the sampling device once
                self._on_device = rec.replay_denoised.to(x.device)
            if self._tap is not None:
                value = None if rec.replay_uncond is None else rec.replay_uncond[k]
                self._tap.value = None if value is None else value.to(x.device)
            return self._on_device[k]
        out = self._model(x, sigma, **extra_args)
        rec.denoised.append(out.detach().clone())
        if self._tap is not None:
            value = self._tap.value
            rec.uncond.append(None if value is None else value.detach().clone())
        elif rec.uses_uncond:
            rec.uncond.append(None)
        return out


# --- one node's part of a seamless run ---------------------------------------------------------------------------
@dataclass
class SeamlessRun:
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

    def wrap(self, sampler_fn, plan, callback, model):
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

    def state_out(self, sampler_name, source, noise, latent_image, options, samples) -> "SeamlessState":
        denoised, uncond = self.recorder.log()
        plain = {k: v for k, v in options.items() if k != "noise_sampler"}
        fields = {f: getattr(source, f) for f in ("seed", "cpu_seed_offset", "sde", "batch_mode", "variation_seed",
                                                   "variation_strength", "batch_index", "float32_draws", "ensd",
                                                   "resize_from")}
        return SeamlessState(STATE_VERSION, sampler_name, self.full.cpu().clone(), self.stop, int(denoised.shape[0]),
                             denoised, uncond, noise.cpu(), latent_image.detach().cpu(), fields, plain,
                             samples_digest(samples))

    def describe(self) -> dict:
        return {"continued": self.state is not None, "start": self.start, "stop": self.stop,
                "stops_early": self.stop_early}


def plan_seamless(latent, latent_image, plan, sampler_name, native, options, disable_noise, start_step,
                  last_step, force_full_denoise, info, self_stepping: bool) -> SeamlessRun | None:
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
    if self_stepping:
        raise ValueError(f"sampler_name: {sampler_name} chooses its own steps, so a run cannot be split seamlessly "
                         f"(allowed: any other sampler, or split_mode comfy)")
    if native:
        note(f"seamless: sampler {sampler_name!r} runs through ComfyUI's own function and cannot be split seamlessly")
        return None
    return SeamlessRun(full, start, stop, stop_early, state, tuple(latent_image.shape), options)
