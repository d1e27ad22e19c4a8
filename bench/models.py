"""Benchmark models: a null denoiser, a small random-weight UNet, and CFG wrappers for peers."""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["NullDenoiser", "SmallUNet", "PeerCFG", "unet_denoiser"]


class NullDenoiser:
    """D(x, sigma) = x * c(sigma): almost no model time, so a run measures the sampler's overhead."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x, sigma, **kw):
        self.calls += 1
        return x * (1.0 / (1.0 + sigma.view(-1, *([1] * (x.ndim - 1))) ** 2))


class _Res(nn.Module):
    def __init__(self, c: int, emb: int) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, c), nn.Conv2d(c, c, 3, padding=1)
        self.n2, self.c2 = nn.GroupNorm(8, c), nn.Conv2d(c, c, 3, padding=1)
        self.t = nn.Linear(emb, c)

    def forward(self, x, e):
        h = self.c1(torch.nn.functional.silu(self.n1(x))) + self.t(e)[:, :, None, None]
        return x + self.c2(torch.nn.functional.silu(self.n2(h)))


class _CrossAttn(nn.Module):
    def __init__(self, c: int, ctx: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, c)
        self.self_attn = nn.MultiheadAttention(c, heads, batch_first=True)
        self.cross = nn.MultiheadAttention(c, heads, kdim=ctx, vdim=ctx, batch_first=True)

    def forward(self, x, context):
        b, c, h, w = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)
        t = t + self.self_attn(t, t, t, need_weights=False)[0]
        t = t + self.cross(t, context, context, need_weights=False)[0]
        return x + t.transpose(1, 2).reshape(b, c, h, w)


class SmallUNet(nn.Module):
    """~1M parameters: two resolutions of conv blocks and self/cross-attention at the lower one,
    with SD1.5's interface (x_in, timestep, context)."""

    def __init__(self, channels: int = 64, context_dim: int = 64) -> None:
        super().__init__()
        c, emb = channels, channels * 2
        self.emb = nn.Sequential(nn.Linear(c, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(4, c, 3, padding=1)
        self.r1 = _Res(c, emb)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.r2 = _Res(2 * c, emb)
        self.attn = _CrossAttn(2 * c, context_dim)
        self.r3 = _Res(2 * c, emb)
        self.up = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)
        self.r4 = _Res(c, emb)
        self.out = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, 4, 3, padding=1))
        self.c = c

    def timestep_embedding(self, t):
        half = self.c // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return torch.cat([args.cos(), args.sin()], dim=1)

    def forward(self, x, t, context):
        e = self.emb(self.timestep_embedding(t))
        h1 = self.r1(self.inp(x), e)
        h = self.r3(self.attn(self.r2(self.down(h1), e), context), e)
        return self.out(self.r4(self.up(h) + h1, e))


def unet_denoiser(unet: SmallUNet, model_sampling):
    """A StandaloneModel around the UNet (SD1.5 discrete EPS sampling)."""
    from stepwise_sampler.sampling import StandaloneModel

    return StandaloneModel(lambda xc, t, ctx: unet(xc, t, ctx), model_sampling, name="bench-unet", device="cpu")


class PeerCFG:
    """The CFG wrapper peers use (A1111/k-diffusion style): one batched call, then the guidance mix."""

    def __init__(self, model, cond, uncond, cfg: float) -> None:
        self.model, self.cond, self.uncond, self.cfg = model, cond, uncond, cfg

    def __call__(self, x, sigma, **kw):
        if self.cfg == 1.0:
            return self.model(x, sigma, self.cond)
        out = self.model(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([self.uncond, self.cond]))
        uncond, cond = out.chunk(2)
        return uncond + (cond - uncond) * self.cfg
