"""Noise (Stepwise): a NOISE that core's SamplerCustomAdvanced and the Stepwise sampler nodes accept.

``comfy`` batch mode gives core's numbers (initial and per-step noise); ``per_item`` draws item i of a batch
from its own CPU generator seeded with ``noise_seed + i`` (or ``+ batch_index[i]``), for the initial noise and
every sampler's per-step noise (the Brownian tree too), so one image of a batch can be re-made alone and the
same workflow gives the same image on any device. ``variation_seed``/``variation_strength`` blend the initial
noise spherically with another seed's (unit variance throughout).
"""
from __future__ import annotations

from ..sampling.noise import BATCH_MODES, SDE_NOISE_SOURCES, SEED_MAX, NoiseSource
from .profile import current_profile
from .widgets import check_widgets

__all__ = ["StepwiseNoise", "StepwiseNoiseValue"]


class StepwiseNoiseValue:
    """The NOISE value: ComfyUI's protocol (``.seed``, ``generate_noise(latent)``) around a NoiseSource."""

    def __init__(self, source: NoiseSource) -> None:
        self.source = source
        self.seed = source.seed

    def generate_noise(self, input_latent: dict):
        """The initial noise for a LATENT (CPU), as core's RandomNoise returns it."""
        return self.source.initial(input_latent["samples"], input_latent.get("batch_index"))

    def __repr__(self) -> str:
        return f"StepwiseNoise({self.source.describe()})"


class StepwiseNoise:
    """Noise you can reproduce: per-item seeds and variations, for every sampler."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True,
                                   "tooltip": "The seed of the noise (item i of a batch uses noise_seed + i in "
                                              "per_item mode)."}),
            "batch_mode": (list(BATCH_MODES), {"default": "comfy", "tooltip":
                "comfy: ComfyUI's noise (one draw for the whole batch). per_item: each item from its own CPU "
                "generator, initial and per-step noise alike: item i equals a batch-1 run with noise_seed + i, on "
                "any device."}),
            "variation_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX,
                                       "tooltip": "The seed of the noise blended in."}),
            "variation_strength": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                "0: the seed's noise; 1: the variation seed's; in between: their spherical interpolation."}),
        }, "optional": {
            "sde_noise": (list(SDE_NOISE_SOURCES), {"default": "brownian", "tooltip":
                "brownian: ComfyUI's Brownian tree for the SDE samplers; fast: the same statistics drawn on the "
                "sampling device (not ComfyUI's numbers; comfy batch mode only)."}),
        }}

    RETURN_TYPES = ("NOISE",)
    FUNCTION = "make"
    CATEGORY = "stepwise/noise"
    DESCRIPTION = "A NOISE for the Stepwise samplers and core's SamplerCustomAdvanced: per-item seeds, variations."

    def make(self, noise_seed, batch_mode, variation_seed, variation_strength, sde_noise="brownian"):
        check_widgets(type(self), {"noise_seed": noise_seed, "batch_mode": batch_mode, "variation_seed": variation_seed,
                                   "variation_strength": variation_strength, "sde_noise": sde_noise})
        source = NoiseSource(noise_seed, current_profile().cpu_noise_seed_offset, sde_noise, batch_mode,
                             variation_seed, float(variation_strength))
        return (StepwiseNoiseValue(source),)
