"""``SamplingRequest``: everything that decides a sampling run's numbers, in the vocabulary users see on the nodes.

One frozen, hashable value travels from the widget to the recipe: a node builds it once from its widgets and
sockets; scripts, XY plot cells and sweeps derive theirs with :meth:`SamplingRequest.replace`; the result cache
keys on it; a recipe is :meth:`to_recipe` (plus what the run itself decided: the seed that ran, the sigmas) and
:meth:`from_recipe` reads one back, old recipes included. :func:`~.core.common_ksampler` reads nothing else.

The names are the widgets' (``seed`` is also the Advanced nodes' ``noise_seed``): ``add_noise`` and
``return_with_leftover_noise`` are the Advanced nodes' ``enable``/``disable`` combos as booleans;
``start_at_step``/``end_at_step`` are None on the plain nodes. Sockets become data: a SIGMAS input is
``sigmas`` (exact float32 values), a Sampler (Stepwise) input is ``sampler_name`` + ``sampler_options``, a Noise
(Stepwise) input is ``noise`` (a :class:`~.noise.NoiseSource`). What only the host can run (inside ComfyUI: core's
SAMPLER objects, core's NOISE objects, a newer ComfyUI's samplers and schedulers) rides along as opaque
``native_*`` fields and ``noise``, keyed by identity.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .noise import SDE_NOISE_SOURCES, SEED_MAX, NoiseSource, validate_seed
from .profile import NEWEST, Profile, profile_for_version
from .registry import get_sampler
from .seamless import SPLIT_MODES

__all__ = ["SamplingRequest", "RECIPE_FIELDS"]

#: the recipe's names for the request's settings (the widget vocabulary), in the order recipes list them
RECIPE_FIELDS = ("seed", "sampler", "sampler_options", "scheduler", "steps", "cfg", "denoise", "start_at_step",
                 "end_at_step", "add_noise", "return_with_leftover_noise", "split_mode")


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer in {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} is outside the allowed range {lo}..{hi}")
    return value


def _finite(value: Any, name: str, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number ({allowed}), got {value!r}")
    return value


@dataclass(frozen=True)
class SamplingRequest:
    """The settings of one sampling run (see the module docstring)."""

    seed: int = 0
    steps: int = 20
    cfg: float = 8.0
    sampler_name: str = "euler"
    scheduler: str = "normal"
    denoise: float | None = 1.0
    add_noise: bool = True
    start_at_step: int | None = None
    end_at_step: int | None = None
    return_with_leftover_noise: bool = False
    split_mode: str = "comfy"
    #: a Noise (Stepwise) source, a host's own NOISE object, or None (the seed widget's noise under the profile)
    noise: Any = None
    sde_noise: str = "brownian"
    #: keyword options of a Sampler (Stepwise) socket, sorted (name, value) pairs
    sampler_options: tuple[tuple[str, Any], ...] = ()
    #: a SIGMAS socket's values (float32, exact), replacing scheduler, steps and denoise
    sigmas: tuple[float, ...] | None = None
    #: a sampler / a schedule only the host can run (inside ComfyUI: ComfyUI's own functions), by identity
    native_sampler: Any = field(default=None, repr=False)
    native_schedule: Any = field(default=None, repr=False)
    profile: Profile = NEWEST

    @classmethod
    def from_widgets(cls, profile: Profile = NEWEST, **widgets: Any) -> "SamplingRequest":
        """A request from a sampler node's widgets, under their names on the node: ``seed`` or ``noise_seed``, and
        the Advanced nodes' ``add_noise``/``return_with_leftover_noise`` combos (``enable``/``disable``)."""
        values = dict(widgets)
        if "noise_seed" in values:
            values["seed"] = values.pop("noise_seed")
        for name in ("add_noise", "return_with_leftover_noise"):
            if isinstance(values.get(name), str):
                if values[name] not in ("enable", "disable"):
                    raise ValueError(f"{name}: {values[name]!r} is not one of the allowed values: enable, disable")
                values[name] = values[name] == "enable"
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{unknown[0]}: not a sampler setting")
        return cls(profile=profile, **values)

    # --- derived values the core reads -------------------------------------------------------------------------
    @property
    def force_full_denoise(self) -> bool:
        """ComfyUI's name for "no leftover noise": the last kept sigma of an early stop becomes 0."""
        return not self.return_with_leftover_noise

    @property
    def sigmas_tensor(self) -> torch.Tensor | None:
        return None if self.sigmas is None else torch.tensor(self.sigmas, dtype=torch.float32)

    def replace(self, **changes: Any) -> "SamplingRequest":
        """A copy with some settings changed (a script's second pass, an XY plot cell, a sweep cell)."""
        if "sigmas" in changes and isinstance(changes["sigmas"], torch.Tensor):
            changes["sigmas"] = sigmas_tuple(changes["sigmas"])
        return dataclasses.replace(self, **changes)

    def noise_source(self) -> NoiseSource:
        """The run's noise: the connected Noise (Stepwise), else the seed widget's under the profile; the SDE noise
        choice applies to either."""
        if isinstance(self.noise, NoiseSource):
            if self.sde_noise != "brownian" and self.noise.sde != self.sde_noise:
                return dataclasses.replace(self.noise, sde=self.sde_noise)
            return self.noise
        seed = self.seed
        if self.noise is not None:  # a host's NOISE object: its seed drives the per-step noise
            own = getattr(self.noise, "seed", None)
            if isinstance(own, int) and not isinstance(own, bool) and 0 <= own <= SEED_MAX:
                seed = own
        return NoiseSource(seed, self.profile.cpu_noise_seed_offset, self.sde_noise,
                           float32_draws=self.profile.noise_drawn_in_float32)

    @property
    def adds_noise(self) -> bool:
        """A connected noise replaces the seed widget and ``add_noise``."""
        return True if isinstance(self.noise, NoiseSource) else self.add_noise

    # --- checks --------------------------------------------------------------------------------------------
    def validate(self, known_scheduler=None) -> "SamplingRequest":
        """Raise ``ValueError`` naming the setting and what is allowed; returns self. ``known_scheduler(name)`` says
        whether a scheduler name can be computed (the registry's, or the host's own)."""
        from ..schedulers import SCHEDULER_NAMES

        validate_seed(self.seed, "seed")
        _int(self.steps, "steps", 1, 10000)
        _finite(self.cfg, "cfg", "0.0..100.0 in the node")
        if self.native_sampler is None:
            get_sampler(self.sampler_name)
        if self.native_schedule is None and self.scheduler not in SCHEDULER_NAMES and \
                not (known_scheduler is not None and known_scheduler(self.scheduler)):
            raise ValueError(f"scheduler: unknown scheduler {self.scheduler!r}; allowed: {', '.join(SCHEDULER_NAMES)}")
        if self.denoise is not None:
            _finite(self.denoise, "denoise", "0.0..1.0")
        for value, name in ((self.start_at_step, "start_at_step"), (self.end_at_step, "end_at_step")):
            if value is not None:
                _int(value, name, 0, 10000)
        if self.split_mode not in SPLIT_MODES:
            raise ValueError(f"split_mode: {self.split_mode!r} is not one of {', '.join(SPLIT_MODES)}")
        if self.sde_noise not in SDE_NOISE_SOURCES:
            raise ValueError(f"sde_noise: unknown source {self.sde_noise!r}; allowed: {', '.join(SDE_NOISE_SOURCES)}")
        if not isinstance(self.profile, Profile):
            raise ValueError(f"profile: expected a behaviour Profile, got {type(self.profile).__name__}")
        if self.noise is not None and not isinstance(self.noise, NoiseSource) and \
                not callable(getattr(self.noise, "generate_noise", None)):
            raise ValueError(f"noise: expected a NOISE (with generate_noise), got {type(self.noise).__name__}")
        if self.sigmas is not None and (not isinstance(self.sigmas, tuple) or not self.sigmas):
            raise ValueError("sigmas: expected a 1-D tensor of sigmas (a SIGMAS output)")
        return self

    # --- recipes -------------------------------------------------------------------------------------------
    def to_recipe(self) -> dict:
        """The settings as a recipe records them (plain data; the run adds the seed that ran and the sigmas)."""
        native = self.native_sampler is not None
        return {
            "profile": self.profile.comfyui_version,
            "seed": self.seed,
            "sampler": f"{self.sampler_name} (ComfyUI's own)" if native else self.sampler_name,
            "sampler_options": dict(self.sampler_options),
            "scheduler": "sigmas socket" if self.sigmas is not None else self.scheduler,
            "steps": self.steps,
            "cfg": float(self.cfg),
            "denoise": self.denoise,
            "start_at_step": self.start_at_step,
            "end_at_step": self.end_at_step,
            "add_noise": self.add_noise,
            "return_with_leftover_noise": self.return_with_leftover_noise if self.end_at_step is not None else None,
            "split_mode": self.split_mode,
            "sde_noise": self.sde_noise,
        }

    @classmethod
    def from_recipe(cls, recipe: dict) -> "SamplingRequest":
        """The request a recipe describes (its ``noise`` entry and ``sigmas`` included; recipes written before this
        object existed read the same way)."""
        noise = recipe.get("noise")
        source = None
        profile = recipe.get("profile")
        chosen = profile_for_version(profile) if isinstance(profile, str) else NEWEST
        if isinstance(noise, dict) and noise.get("batch_mode", "comfy") != "comfy" or \
                isinstance(noise, dict) and float(noise.get("variation_strength") or 0) > 0:
            resize = noise.get("seed_resize_from")
            source = NoiseSource(int(noise["seed"]), int(noise.get("cpu_seed_offset", 0)), noise.get("sde", "brownian"),
                                 noise.get("batch_mode", "comfy"), int(noise.get("variation_seed", 0)),
                                 float(noise.get("variation_strength", 0.0)),
                                 ensd=int(noise.get("eta_noise_seed_delta", 0)),
                                 resize_from=tuple(int(v) for v in resize) if resize else None,
                                 float32_draws=chosen.noise_drawn_in_float32)
        sampler = str(recipe.get("sampler", "euler")).removesuffix(" (ComfyUI's own)")
        sigmas = recipe.get("sigmas") if recipe.get("scheduler") == "sigmas socket" else None
        leftover = recipe.get("return_with_leftover_noise")
        return cls(
            seed=int(recipe.get("seed", 0)), steps=int(recipe.get("steps", 20)), cfg=float(recipe.get("cfg", 8.0)),
            sampler_name=sampler, scheduler=recipe.get("scheduler", "normal") if sigmas is None else "normal",
            denoise=recipe.get("denoise", 1.0), add_noise=bool(recipe.get("add_noise", True)),
            start_at_step=recipe.get("start_at_step"), end_at_step=recipe.get("end_at_step"),
            return_with_leftover_noise=bool(leftover) if leftover is not None else False,
            split_mode=recipe.get("split_mode", "comfy"), noise=source,
            sde_noise=(noise or {}).get("sde", "brownian") if isinstance(noise, dict) else "brownian",
            sampler_options=tuple(sorted((recipe.get("sampler_options") or {}).items())),
            sigmas=None if sigmas is None else tuple(float(v) for v in sigmas),
            profile=chosen)


def sigmas_tuple(sigmas: Any) -> tuple[float, ...]:
    """A SIGMAS input as exact float32 values: a 1-D tensor of at least one value."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 1 or \
            not (sigmas.is_floating_point() or sigmas.dtype in (torch.int32, torch.int64)):
        shape = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise ValueError(f"sigmas: expected a 1-D tensor of sigmas (a SIGMAS output), got {shape}")
    return tuple(float(v) for v in sigmas.detach().to(torch.float32).cpu().tolist())
