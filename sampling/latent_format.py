"""Latent formats: how a VAE latent maps into the model's space (scale and shift)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LatentFormat", "SD15"]


@dataclass(frozen=True)
class LatentFormat:
    """``process_in(z) = (z - shift) * scale``; ``process_out`` inverts it. ``rgb_factors`` is the
    (channels x 3) linear map used for cheap previews, ``rgb_bias`` its offset."""

    name: str
    scale_factor: float
    shift_factor: float = 0.0
    channels: int = 4
    dimensions: int = 2
    rgb_factors: tuple[tuple[float, float, float], ...] | None = None
    rgb_bias: tuple[float, float, float] | None = None
    taesd_decoder_name: str | None = None

    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        if self.shift_factor:
            return (latent - self.shift_factor) * self.scale_factor
        return latent * self.scale_factor

    def process_out(self, latent: torch.Tensor) -> torch.Tensor:
        if self.shift_factor:
            return (latent / self.scale_factor) + self.shift_factor
        return latent / self.scale_factor


SD15 = LatentFormat(
    name="SD15",
    scale_factor=0.18215,
    rgb_factors=((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
                 (-0.2120, -0.2616, -0.7177)),
    taesd_decoder_name="taesd_decoder",
)
