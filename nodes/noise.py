"""Noise (Stepwise): a NOISE that core's SamplerCustomAdvanced and the Stepwise sampler nodes accept.

``comfy`` batch mode gives core's numbers (initial and per-step noise); ``per_item`` draws item i of a batch
from its own CPU generator seeded with ``noise_seed + i`` (or ``+ batch_index[i]``), for the initial noise and
every sampler's per-step noise (the Brownian tree too), so one image of a batch can be re-made alone and the
same workflow gives the same image on any device. ``variation_seed``/``variation_strength`` blend the initial
noise spherically with another seed's (unit variance throughout).
"""
from __future__ import annotations

from ..host import current_host
from ..sampling.noise import BATCH_MODES, SDE_NOISE_SOURCES, SEED_MAX, NoiseSource
from ..workflows.widgets import check_widgets

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
                "any device. a1111_gpu / a1111_cpu: AUTOMATIC1111's noise (image i from seed + i; its GPU/'NV' "
                "source computed on any device, or its CPU source), the variation as its subseed."}),
            "variation_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX,
                                       "tooltip": "The seed of the noise blended in."}),
            "variation_strength": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                "0: the seed's noise; 1: the variation seed's; in between: their spherical interpolation."}),
        }, "optional": {
            "sde_noise": (list(SDE_NOISE_SOURCES), {"default": "brownian", "tooltip":
                "brownian: ComfyUI's Brownian tree for the SDE samplers; fast: the same statistics drawn on the "
                "sampling device (not ComfyUI's numbers; comfy batch mode only)."}),
            "eta_noise_seed_delta": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "tooltip":
                "AUTOMATIC1111's 'Eta noise seed delta' (a1111 batch modes): the per-step noise of ancestral and SDE "
                "samplers restarts from seed + delta (31337 in many shared settings)."}),
            "seed_resize_from_width": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 8, "tooltip":
                "AUTOMATIC1111's 'Resize seed from' width in pixels (a1111 batch modes; 0: off)."}),
            "seed_resize_from_height": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 8, "tooltip":
                "AUTOMATIC1111's 'Resize seed from' height in pixels (a1111 batch modes; 0: off)."}),
        }}

    RETURN_TYPES = ("NOISE",)
    FUNCTION = "make"
    CATEGORY = "stepwise/noise"
    DESCRIPTION = "A NOISE for the Stepwise samplers and core's SamplerCustomAdvanced: per-item seeds, variations."

    def make(self, noise_seed, batch_mode, variation_seed, variation_strength, sde_noise="brownian",
             eta_noise_seed_delta=0, seed_resize_from_width=0, seed_resize_from_height=0):
        check_widgets(type(self), {"noise_seed": noise_seed, "batch_mode": batch_mode, "variation_seed": variation_seed,
                                   "variation_strength": variation_strength, "sde_noise": sde_noise,
                                   "eta_noise_seed_delta": eta_noise_seed_delta,
                                   "seed_resize_from_width": seed_resize_from_width,
                                   "seed_resize_from_height": seed_resize_from_height})
        resize = (seed_resize_from_height // 8, seed_resize_from_width // 8) \
            if seed_resize_from_width >= 8 and seed_resize_from_height >= 8 else None
        profile = current_host().profile()
        source = NoiseSource(noise_seed, profile.cpu_noise_seed_offset, sde_noise, batch_mode,
                             variation_seed, float(variation_strength), ensd=int(eta_noise_seed_delta),
                             resize_from=resize, float32_draws=profile.noise_drawn_in_float32)
        return (StepwiseNoiseValue(source),)
