"""The exact demo model: the posterior mean of a known distribution, no download, no training.

The data distribution is a Gaussian mixture in latent space. Its components are the VAE latents of
procedurally drawn pictures (:mod:`.world`): a shape in a colour, at a position, on a background, with a small
isotropic variance around each. The prompt weights the components.

Everything is linear in the picture, so a component mean is ``m ⊗ e(colour) + (1 - m) ⊗ e(bg)``
with ``m`` the shape's coverage mask pooled to latent resolution and ``e`` the VAE's colour map.
That makes the exact posterior mean E[z | x, sigma] cheap at any resolution: distances to all
components need only per-mask inner products, and the mean is a sum over masks.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy
import torch

from ..sampling import StandaloneModel
from ..schedulers import DiscreteModelSampling
from .world import (BACKGROUND_CODES, COLOUR_CODES, DEMO_LATENT_FORMAT, POSITIONS, SATURATION_DIRS, SHAPES, TOKENS,
                    DemoCLIP, DemoVAE, evidence_dims, shape_mask)

__all__ = ["COMPONENT_STD", "SATURATION_STD", "component_masks", "Style", "DemoNetwork", "DemoModel",
           "load_demo_checkpoint"]

COMPONENT_STD = 0.004  # per-component isotropic standard deviation in model space
SATURATION_STD = 1.5  # extra spread along each component's own colour direction (vividness varies)

@lru_cache(maxsize=8)
def component_masks(lat_h: int, lat_w: int, pixelated: bool = False) -> torch.Tensor:
    """Coverage masks of every (shape, position) pooled to latent resolution: (S*P, h, w), float64.

    ``pixelated`` gives the pixel-art variant: coverage snapped to a 16-block grid."""
    masks = []
    for shape in SHAPES:
        for pos in POSITIONS:
            m = shape_mask(shape, pos, lat_h * 8, lat_w * 8)
            m = m.reshape(lat_h, 8, lat_w, 8).mean(axis=(1, 3))
            if pixelated:
                b = max(1, round(min(lat_h, lat_w) / 16))
                hh, ww = -(-lat_h // b) * b, -(-lat_w // b) * b
                pad = numpy.zeros((hh, ww), dtype=m.dtype)
                pad[:lat_h, :lat_w] = m
                blocks = pad.reshape(hh // b, b, ww // b, b).mean(axis=(1, 3)) > 0.45
                m = numpy.repeat(numpy.repeat(blocks, b, 0), b, 1)[:lat_h, :lat_w].astype(m.dtype)
            masks.append(m)
    return torch.tensor(numpy.stack(masks), dtype=torch.float64)


# --- the model ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Style:
    """The demo LoRA: pixel-art components, and a learned preference for blocky shapes."""

    name: str = "pixel"
    strength: float = 0.0
    shape_bias: tuple[float, ...] = (0.0, 1.6, -0.5, -0.5, 0.4, -0.5, 1.0)  # square, diamond, cross favoured


class DemoNetwork:
    """The exact posterior mean E[z | x_sigma] of the prompt-weighted mixture.

    Component k = (shape-position j, colour a, background g) is Gaussian with mean
    ``mu_k = m_j (x) c_a + (1 - m_j) (x) g_g`` and covariance ``s^2 I + tau^2 v_k v_k^T``, where
    ``v_k = m_j (x) w_a / |m_j|`` is the direction "this shape, more vividly coloured": vividness
    varies in the data, which is what lets high CFG over-saturate as with real models.
    ``__call__(x, sigma, context) -> denoised`` in model space, for ``x = z + sigma * noise``."""

    evidence_gain = 3.0

    def __init__(self, style: Style | None = None) -> None:
        self.style = style or Style()

    def log_weights(self, context: torch.Tensor) -> torch.Tensor:
        """(B, S*P, A, G) log prior weights of the components from the context's token mean."""
        ev = context.double().mean(1) * TOKENS  # sum of token evidence, invariant to token repeats
        dims = evidence_dims()
        shp, col, bg, pos = torch.split(ev, list(dims.values()), dim=1)
        g = self.evidence_gain
        shp = g * shp + self.style.strength * torch.tensor(self.style.shape_bias, dtype=ev.dtype, device=ev.device)
        sp = (shp[:, :, None] + g * pos[:, None, :]).reshape(ev.shape[0], -1)  # (B, S*P) in SHAPES x POSITIONS order
        return sp[:, :, None, None] + g * col[:, None, :, None] + g * bg[:, None, None, :]

    def masks(self, h: int, w: int, device) -> torch.Tensor:
        smooth = component_masks(h, w, False)
        if self.style.strength <= 0:
            return smooth.to(device)
        s = min(self.style.strength, 1.0)
        return ((1 - s) * smooth + s * component_masks(h, w, True)).to(device)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, _, h, w = x.shape
        xd = x.double()
        sig = sigma.double().reshape(-1).to(x.device)
        sig = sig.expand(batch) if sig.numel() == 1 else sig
        m = self.masks(h, w, x.device)  # (J, h, w)
        col, bgc = COLOUR_CODES.to(x.device), BACKGROUND_CODES.to(x.device)  # (A, 4), (G, 4)
        wdir = SATURATION_DIRS.to(x.device)  # (A, 4)
        # Inner products with the means, via per-mask sums (mu = m c + (1 - m) g is linear in m).
        xm = torch.einsum("bchw,jhw->bjc", xd, m)  # (B, J, 4): <x_c, m_j>
        xs = xd.sum(dim=(2, 3))  # (B, 4)
        m1, m2 = m.sum(dim=(1, 2)), (m * m).sum(dim=(1, 2))  # (J,)
        mnorm = m2.clamp_min(1e-12).sqrt()
        n = float(h * w)
        x_mu = torch.einsum("bjc,ac->bja", xm, col)[..., None] + \
            (torch.einsum("bc,gc->bg", xs, bgc)[:, None, :] - torch.einsum("bjc,gc->bjg", xm, bgc))[:, :, None, :]
        cc, gg, cg = (col * col).sum(1), (bgc * bgc).sum(1), col @ bgc.T  # (A,), (G,), (A, G)
        mu2 = (m2[:, None, None] * cc[None, :, None] + 2 * (m1 - m2)[:, None, None] * cg[None]
               + (n - 2 * m1 + m2)[:, None, None] * gg[None, None, :])  # (J, A, G)
        # projections on the saturation axis v_k: beta = <v_k, x - mu_k>
        v_x = torch.einsum("bjc,ac->bja", xm, wdir) / mnorm[None, :, None]  # (B, J, A)
        v_mu = (m2[:, None, None] * (col * wdir).sum(1)[None, :, None]
                + (m1 - m2)[:, None, None] * (wdir @ bgc.T)[None]) / mnorm[:, None, None]  # (J, A, G)
        beta = v_x[..., None] - v_mu[None]  # (B, J, A, G)
        a = COMPONENT_STD ** 2 + sig ** 2  # (B,)
        t2 = SATURATION_STD ** 2
        a4 = a[:, None, None, None]
        dist = mu2[None] - 2 * x_mu  # |x - mu|^2 without the |x|^2 term, which is the same for all k
        logits = self.log_weights(context).to(x.device) - dist / (2 * a4) + t2 / (2 * a4 * (a4 + t2)) * beta ** 2
        r = torch.softmax(logits.reshape(batch, -1), dim=1).reshape(logits.shape)  # (B, J, A, G)
        # E[z|x] = (1 - lam) mean(mu) + lam x + kappa sum_k r_k beta_k v_k
        c_j = torch.einsum("bja,ac->bjc", r.sum(3), col)
        g_j = torch.einsum("bjg,gc->bjc", r.sum(2), bgc)
        sat_j = torch.einsum("bja,ac->bjc", (r * beta).sum(3), wdir) / mnorm[None, :, None]
        kappa = (t2 * sig ** 2 / (a * (a + t2)))[:, None, None]
        mean_mu = torch.einsum("bjc,jhw->bchw", c_j - g_j + kappa * sat_j, m) + g_j.sum(1)[:, :, None, None]
        lam = (COMPONENT_STD ** 2 / a).reshape(batch, 1, 1, 1)
        mu_bar = torch.einsum("bjc,jhw->bchw", c_j - g_j, m) + g_j.sum(1)[:, :, None, None]
        return (mean_mu + lam * (xd - mu_bar)).to(x.dtype)


class DemoModel(StandaloneModel):
    """The demo MODEL: SD1.5 discrete EPS sampling around the exact mixture denoiser."""

    def __init__(self, style: Style | None = None) -> None:
        super().__init__(DemoNetwork(style), DiscreteModelSampling.scaled_linear(), DEMO_LATENT_FORMAT,
                         device="cpu", name="stepwise-demo" + (f"+{style.name}:{style.strength:g}" if style and
                                                                 style.strength else ""))

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.network(x, sigma, context)

    def memory_estimate(self, shape, sampler_name: str = "") -> int:
        """A slight under-estimate of peak memory, from peak RSS measured on 2 cores (64x64..512x512 latents,
        batch 1..256): ~140 bytes per latent element (float64 inside, CFG's batch of two; ~560 with a Brownian
        tree) and ~150 bytes per image pixel for the supersampled shape masks."""
        n = 1
        for d in shape:
            n *= int(d)
        pixels = int(shape[-1]) * int(shape[-2]) * 64
        per_element = 400 if "sde" in sampler_name else 120
        return per_element * n + 140 * pixels

    @property
    def default_vae(self) -> "DemoVAE":
        """The VAE that belongs to this model (used when a node's optional VAE is not connected)."""
        return DemoVAE()

    def with_style(self, strength: float, name: str = "pixel") -> "DemoModel":
        base = self.network.style.strength
        return DemoModel(Style(name=name, strength=base + strength))

    @property
    def style_strength(self) -> float:
        return self.network.style.strength


def load_demo_checkpoint() -> tuple[DemoModel, DemoCLIP, DemoVAE]:
    return DemoModel(), DemoCLIP(), DemoVAE()

