"""Latent -> preview image decoders: the linear latent2rgb map and a TAESD-shaped conv decoder."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["Latent2RGB", "TAESDDecoder", "to_uint8_image"]


def to_uint8_image(rgb: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) in -1..1 -> uint8 on the CPU, as ComfyUI's previews do: ((v + 1) / 2) clamped, x255, truncated."""
    return ((rgb + 1.0) / 2.0).clamp(0, 1).mul(0xFF).to(device="cpu", dtype=torch.uint8)


class Latent2RGB:
    """A per-pixel linear map from latent channels to RGB (a "latent2rgb" preview)."""

    def __init__(self, factors, bias=None) -> None:
        self.factors = torch.tensor(factors, dtype=torch.float32).T.contiguous()  # (3, C)
        self.bias = None if bias is None else torch.tensor(bias, dtype=torch.float32)
        self._cache: dict = {}

    def _weights(self, x: torch.Tensor):
        key = (x.device, x.dtype)
        if key not in self._cache:
            self._cache[key] = (self.factors.to(x), None if self.bias is None else self.bias.to(x))
        return self._cache[key]

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        """(C, H, W) or (C, T, H, W) model-space latent -> (H, W, 3) in about -1..1 (same device)."""
        if x0.ndim == 4:
            x0 = x0[:, 0]
        w, b = self._weights(x0)
        return torch.nn.functional.linear(x0.movedim(0, -1), w, b)


def _conv(n_in: int, n_out: int, **kw) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kw)


class _Block(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(), _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x):
        return self.fuse(self.conv(x) + self.skip(x))


class _Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class TAESDDecoder(nn.Module):
    """A tiny autoencoder decoder in the shape of TAESD (Bohan 2023): three x2 upsampling stages of
    64-channel residual blocks, 8x total. Loads TAESD decoder weights when given a file."""

    def __init__(self, latent_channels: int = 4, weights: str | Path | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [_Clamp(), _conv(latent_channels, 64), nn.ReLU()]
        for _ in range(3):
            layers += [_Block(64, 64), _Block(64, 64), _Block(64, 64), nn.Upsample(scale_factor=2),
                       _conv(64, 64, bias=False)]
        layers += [_Block(64, 64), _conv(64, 3)]
        self.decoder = nn.Sequential(*layers)
        if weights is not None:
            self.load(weights)

    def load(self, path: str | Path) -> None:
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = {k.removeprefix("decoder."): v for k, v in state.items()}
        self.decoder.load_state_dict(state)

    @torch.no_grad()
    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """(C, H, W) model-space latent -> (8H, 8W, 3) in about -1..1."""
        if x0.ndim == 4:
            x0 = x0[:, 0]
        out = self.decoder(x0[None].to(next(self.parameters()).dtype)).clamp(0, 1)
        return (out[0] * 2 - 1).movedim(0, -1)
