"""Where a node runs: inside ComfyUI, or in the standalone runtime (``stepwise run``/``serve``/``demo``, tests, the
golden runner). One interface, implemented once for each; nodes call :func:`current_host` and never ask which it is.

- :class:`Host` itself is the bare host: no progress, no previews, no UI output (the golden runner, plain tests);
- :class:`~.standalone.ObservedHost`: the standalone runtime, reporting to an :class:`~.standalone.Observer`
  (progress bars or lines, previews, images shown on nodes, interrupt, notices);
- :class:`~.comfy.ComfyHost`: inside ComfyUI (its progress bar, previews, interrupt, ``PreviewImage``, its own
  samplers and schedulers for names this pack does not implement). Imported only there.

The *model* decides the backend (a ComfyUI ModelPatcher goes through ComfyUI's guider wherever it runs); the host
decides everything around the run.
"""
from __future__ import annotations

import sys
from typing import Any

import torch

from ..sampling import SAMPLERS, RunInfo, SamplingRequest
from ..sampling.registry import SamplerSpec
from ..sampling.noise import NoiseSource
from ..sampling.profile import Profile
from .profile import current_profile

__all__ = ["Host", "register_replacements", "current_host", "as_backend", "is_comfy_model", "plot_summary", "PLOT_POINTS", "Observer",
           "observe", "current_observer", "inside_comfyui", "noise_socket", "SCHEDULE_POINTS"]

PLOT_POINTS = 64  # at most this many [step, sigma] points of a run go to the editor's plot
SCHEDULE_POINTS = 257  # a schedule's own plot (Schedule, Fit Schedule): every step of up to 256


def is_comfy_model(model: Any) -> bool:
    return hasattr(model, "get_model_object") and hasattr(model, "model_options") and hasattr(model, "load_device")


def as_backend(model: Any):
    """A node's MODEL as a sampling backend: a standalone model is one; a ComfyUI ModelPatcher is wrapped so the model
    call goes through ComfyUI's guider."""
    if hasattr(model, "sample") and hasattr(model, "model_sampling") and hasattr(model, "fix_empty_latent_channels"):
        return model
    if is_comfy_model(model):
        from .comfy import ComfyBackend

        return ComfyBackend(model)
    raise ValueError(f"model: expected a MODEL (a ComfyUI model or a Stepwise standalone model), "
                     f"got {type(model).__name__}")


def plot_summary(sigmas: torch.Tensor | None, limit: int | None = PLOT_POINTS) -> dict:
    """What the editor's plot needs from a schedule: ``{"steps", "points": [[step, sigma], ...]}`` with at most
    ``limit`` points (5 significant digits; the first and last always kept)."""
    if sigmas is None or sigmas.numel() == 0:
        return {"steps": 0, "points": []}
    values = sigmas.tolist()
    n = len(values)
    if limit is not None and n > limit:
        index = sorted({round(k * (n - 1) / (limit - 1)) for k in range(limit)})
    else:
        index = range(n)
    return {"steps": n - 1, "points": [[i, float(f"{values[i]:.5g}")] for i in index]}


class Host:
    """The bare host (see the module docstring); the others override what they can do."""

    name = "bare"

    # --- the run ---------------------------------------------------------------------------------------------
    def profile(self) -> Profile:
        """Which ComfyUI release's numbers to reproduce."""
        return current_profile()

    def backend(self, model: Any):
        return as_backend(model)

    def step_callback(self, model: Any, steps: int, preview=None, node_id: Any = None):
        """(callback(step, x0, x, total) or None, disable_pbar) for a sampler node's run."""
        return None, True

    def check_interrupt(self) -> None:
        """Raise if the user asked to stop (checked between XY cells, fit candidates and every step)."""

    def record(self, info: RunInfo) -> None:
        """A sampler node's finished run (the standalone runtime keeps them for the recipes of saved images)."""

    # --- what the user sees ------------------------------------------------------------------------------------
    def wants_ui(self) -> bool:
        """Send UI output (plots, recipes, shown images) with a node's result."""
        return False

    def show_images(self, images: torch.Tensor, prompt=None, extra_pnginfo=None) -> list[dict]:
        """Images shown on a node (what PreviewImage would save), with their metadata; the UI entries."""
        return []

    def progress_text(self, text: str, node_id: Any = None) -> None:
        """A line of progress under a node (the XY Plot's "cell i/N")."""

    def notice(self, text: str, node_id: Any = None) -> None:
        """A note to the user about a node's run (why a seamless hand-off restarted, a fallback)."""
        import logging

        logging.getLogger("stepwise").warning("stepwise node %s: %s", node_id if node_id is not None else "?", text)

    def ui(self, result: tuple, ui: dict):
        """A node's return value: with its UI output where the host shows one."""
        return {"ui": ui, "result": result} if self.wants_ui() else result

    # --- what only the host can run -----------------------------------------------------------------------------
    def encode_text(self, clip: Any, text: str):
        """CONDITIONING for a prompt (the XY Plot's prompt S/R axes)."""
        if hasattr(clip, "encode"):
            return clip.encode(text)
        raise ValueError(f"clip: expected a CLIP, got {type(clip).__name__}")

    def native_sampler(self, name: str):
        """A sampler of the host's own for a name this pack does not implement (None: there is none)."""
        return None

    def native_schedule(self, name: str):
        return None

    def sampler_output(self, spec: SamplerSpec):
        """What a Stepwise SAMPLER node returns on this host (inside ComfyUI: also a SAMPLER core's nodes can run)."""
        return spec

    def sampler_socket(self, sampler: Any) -> dict:
        """The request fields a SAMPLER socket sets: Sampler (Stepwise)'s name and options; a host may also accept
        its own SAMPLER objects."""
        spec = getattr(sampler, "stepwise_spec", sampler)  # a host's wrapper around our SAMPLER
        if isinstance(spec, SamplerSpec):
            return {"sampler_name": spec.name, "sampler_options": spec.options}
        raise ValueError(f"sampler: expected a SAMPLER (Sampler (Stepwise), or core's KSamplerSelect inside "
                         f"ComfyUI), got {type(sampler).__name__}")

    def resolve(self, request: SamplingRequest) -> SamplingRequest:
        """The request with what only the host can run filled in: samplers and schedulers this pack does not
        implement (inside ComfyUI, a newer ComfyUI's), which then run through the host's own functions."""
        changes: dict = {}
        if request.native_sampler is None and request.sampler_name not in SAMPLERS:
            native = self.native_sampler(request.sampler_name)
            if native is not None:
                changes["native_sampler"] = native
        from ..schedulers import SCHEDULERS

        if request.native_schedule is None and request.sigmas is None and request.scheduler not in SCHEDULERS:
            native = self.native_schedule(request.scheduler)
            if native is not None:
                changes["native_schedule"] = native
        return request.replace(**changes) if changes else request


def noise_socket(noise: Any):
    """A NOISE socket's value as the request carries it: a Noise (Stepwise) is its NoiseSource; any other NOISE
    (core's RandomNoise, ...) rides along as itself."""
    source = getattr(noise, "source", None)
    return source if isinstance(source, NoiseSource) else noise


def inside_comfyui() -> bool:
    """This process is ComfyUI (its sampling modules are loaded)."""
    return "comfy.samplers" in sys.modules


_BARE = Host()
_COMFY: list = []


def current_host() -> Host:
    """The standalone runtime's host while an observer is active (``observe``), else ComfyUI's inside ComfyUI, else
    the bare host."""
    from .standalone import current_observer

    observer = current_observer()
    if observer is not None:
        return observer.host
    if inside_comfyui():
        if not _COMFY:
            from .comfy import ComfyHost

            _COMFY.append(ComfyHost())
        return _COMFY[0]
    return _BARE


from .standalone import Observer, current_observer, observe  # noqa: E402  (the standalone host needs Host)


def register_replacements(prompt_server: Any) -> int:
    """Offer Stepwise nodes for the efficiency-nodes classes a workflow names when that pack is missing (ComfyUI 0.33's
    node replacements, through its own registration; older ComfyUI has none: nothing happens). Returns how many."""
    manager = getattr(prompt_server, "node_replace_manager", None)
    try:
        from comfy_api.latest import io as comfy_io
    except ImportError:
        return 0
    make = getattr(comfy_io, "NodeReplace", None)
    if manager is None or make is None:
        return 0
    from ..workflows.replacements import node_replacements

    for entry in node_replacements():
        manager.register(make(**entry))
    return len(node_replacements())
