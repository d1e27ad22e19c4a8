"""The golden toy model: a tiny deterministic "UNet" whose exact math the golden README gives.

``eps = 0.8 * tanh(W·x_in + b·t/1000 + U·mean_tokens(context)) + 0.2 * x_in`` with an SD1.5 discrete
EPS schedule and the SD15 latent format.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..sampling import SD15, StandaloneModel
from ..schedulers import DiscreteModelSampling

__all__ = ["ToyNetwork", "load_toy_model"]


class ToyNetwork:
    """The toy network, in the golden README's operation order (which matters only for bit-exactness)."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor, U: torch.Tensor) -> None:
        # clone(): safetensors may hand out tensors at unaligned offsets, which round differently in BLAS
        self.W, self.b, self.U = W.clone().float(), b.clone().float(), U.clone().float()

    def to(self, device: torch.device | str) -> "ToyNetwork":
        return ToyNetwork(self.W.to(device), self.b.to(device), self.U.to(device))

    def parameters(self):
        return iter((self.W, self.b, self.U))

    def __call__(self, xc: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch = xc.shape[0]
        channels = self.b.shape[0]
        h = torch.einsum("oc,bchw->bohw", self.W, xc)
        h = h + self.b.view(1, channels, 1, 1) * (t.view(batch, 1, 1, 1) / 1000.0)
        h = h + (context.mean(1) @ self.U.T).view(batch, channels, 1, 1)
        return 0.8 * torch.tanh(h) + 0.2 * xc


def load_toy_model(path: str | Path) -> tuple[StandaloneModel, dict[str, torch.Tensor]]:
    """The toy model and the named conditioning tensors stored beside its weights."""
    from safetensors.torch import load_file

    tensors = {k: v.clone() for k, v in load_file(str(path)).items()}
    missing = {"W", "b", "U"} - set(tensors)
    if missing:
        raise ValueError(f"{path}: not a toy model file, missing tensors {sorted(missing)}")
    net = ToyNetwork(tensors.pop("W"), tensors.pop("b"), tensors.pop("U"))
    model = StandaloneModel(net, DiscreteModelSampling.scaled_linear(), SD15, name="golden-toy")
    return model, tensors
