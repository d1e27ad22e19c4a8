"""What a demo picture shows: its shape and colour, read back from a latent (or an IMAGE) of the demo world.

Easy in this procedural world, and independent of any network: the background is the median of the picture's
border, the shape's colour the median of the pixels farthest from it (nearest named colour), and the shape the
named one whose outline, placed at the picture's centroid with the same area, over a few rotations, covers the
picture's coverage map best (template matching). On the world's own jittered pictures it is right every time
(``tests/test_tiny_model.py`` checks it on 512 of them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .world import COLOURS, SHAPES, code_to_rgb, inside

__all__ = ["Reading", "read_latents", "read_images"]

_COLOUR_RGB = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
_ROTATIONS = (-0.26, -0.13, 0.0, 0.13, 0.26)


def _unit_areas() -> torch.Tensor:
    g = torch.linspace(-1.2, 1.2, 241)
    u, v = torch.meshgrid(g, g, indexing="xy")
    cell = (2.4 / 240) ** 2
    return torch.stack([inside(torch.tensor([s]), u[None], v[None]).float().sum() * cell for s in range(len(SHAPES))])


_UNIT_AREA = _unit_areas()


@dataclass(frozen=True)
class Reading:
    shape: torch.Tensor  # (B,) index into SHAPES
    colour: torch.Tensor  # (B,) index into COLOURS
    misfit: torch.Tensor  # (B,) mean |template - coverage| of the best shape (0: a perfect outline)
    contrast: torch.Tensor  # (B,) RGB distance between the shape's colour and the background

    def names(self, i: int) -> tuple[str, str]:
        return SHAPES[int(self.shape[i])], list(COLOURS)[int(self.colour[i])]


def read_images(rgb: torch.Tensor, subsamples: int = 4) -> Reading:
    """(B, H, W, 3) RGB in 0..1 (at any resolution; latent resolution is enough) -> the shape and colour shown."""
    b, h, w, _ = rgb.shape
    rgb = rgb.float()
    border = torch.cat([rgb[:, :2].reshape(b, -1, 3), rgb[:, -2:].reshape(b, -1, 3), rgb[:, :, :2].reshape(b, -1, 3),
                        rgb[:, :, -2:].reshape(b, -1, 3)], 1)
    bg = border.median(1).values
    dist = (rgb - bg[:, None, None]).norm(dim=-1).reshape(b, -1)
    threshold = 0.8 * dist.quantile(0.98, dim=1)
    flat = rgb.reshape(b, -1, 3)
    fg = torch.stack([flat[i][dist[i] >= threshold[i]].median(0).values for i in range(b)])
    diff = fg - bg
    cover = ((rgb - bg[:, None, None]) * diff[:, None, None]).sum(-1) / diff.pow(2).sum(-1).clamp_min(1e-6)[:, None, None]
    cover = cover.clamp(0, 1)
    colour = torch.cdist(fg, _COLOUR_RGB).argmin(1)
    mass = cover.sum((1, 2)).clamp_min(1e-6)
    ys, xs = torch.arange(h) + 0.5, torch.arange(w) + 0.5
    cy = (cover.sum(2) * ys).sum(1) / mass
    cx = (cover.sum(1) * xs).sum(1) / mass
    best = torch.full((b,), math.inf)
    shape = torch.zeros(b, dtype=torch.long)
    sy = (torch.arange(h * subsamples) + 0.5) / subsamples
    sx = (torch.arange(w * subsamples) + 0.5) / subsamples
    for s in range(len(SHAPES)):
        radius = (mass / _UNIT_AREA[s]).sqrt().clamp_min(0.5)
        offsets = (0.1, 0.2, 0.3) if SHAPES[s] == "triangle" else (0.0,)  # a triangle's centroid is below its centre
        for angle in _ROTATIONS:
            c, sn = math.cos(angle), math.sin(angle)
            for oy in offsets:
                gx = ((sx[None, None, :] - cx[:, None, None]) / radius[:, None, None]).expand(b, h * subsamples,
                                                                                            w * subsamples)
                gy = ((sy[None, :, None] - cy[:, None, None]) / radius[:, None, None] + oy).expand(b, h * subsamples,
                                                                                                 w * subsamples)
                template = inside(torch.full((b,), s), c * gx + sn * gy, -sn * gx + c * gy).float()
                template = template.reshape(b, h, subsamples, w, subsamples).mean((2, 4))
                err = (template - cover).abs().mean((1, 2))
                better = err < best
                best = torch.where(better, err, best)
                shape = torch.where(better, torch.full_like(shape, s), shape)
    return Reading(shape, colour, best, diff.norm(dim=-1))


def read_latents(latents: torch.Tensor, subsamples: int = 4) -> Reading:
    """(B, 4, h, w) model-space latents of the demo VAE -> :func:`read_images` of their colours per latent pixel."""
    rgb = (code_to_rgb(latents.permute(0, 2, 3, 1).double()) + 1) / 2
    return read_images(rgb.float().clamp(0, 1), subsamples)
