"""The sampler-facing model protocol.

A sampler only needs ``model(x, sigma, **extra_args) -> denoised``. Two optional attributes let
richer models say more:

- ``model.model_sampling``: the model's sampling description (see ``schedulers.model_sampling``),
  with ``prediction`` in {"eps", "v", "const"}. Samplers use it for flow-model formulas, half
  log-SNR and sigma percentages. Plain callables get the SD1.x discrete table.
- ``model.request_uncond(extra_args) -> (extra_args, tap)``: for CFG++ samplers, which need each
  step's unconditional prediction. The tap's ``get(denoised)`` returns it after each model call.
  Plain callables have no guidance, so their "uncond" is the prediction itself.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import torch

from ..schedulers.model_sampling import DiscreteModelSampling

__all__ = ["SamplerModel", "UncondTap", "model_sampling_of", "is_flow", "request_uncond", "half_log_snr",
           "sigma_from_half_log_snr", "offset_first_sigma_for_snr"]

SamplerFn = Callable[..., torch.Tensor]


class SamplerModel(Protocol):
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor: ...


class UncondTap:
    """Receives the unconditional prediction of the latest model call."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def get(self, denoised: torch.Tensor) -> torch.Tensor:
        return denoised if self.value is None else self.value


_DEFAULT_MODEL_SAMPLING: DiscreteModelSampling | None = None


def model_sampling_of(model: Any):
    """The model's sampling description, or the SD1.x discrete table for a plain callable."""
    ms = getattr(model, "model_sampling", None)
    if ms is not None:
        return ms
    global _DEFAULT_MODEL_SAMPLING
    if _DEFAULT_MODEL_SAMPLING is None:
        _DEFAULT_MODEL_SAMPLING = DiscreteModelSampling.scaled_linear()
    return _DEFAULT_MODEL_SAMPLING


def is_flow(model: Any) -> bool:
    """True for rectified-flow (``const``) models, whose ancestral steps use other formulas."""
    return getattr(model_sampling_of(model), "prediction", "eps") == "const"


def request_uncond(model: Any, extra_args: dict | None) -> tuple[dict, UncondTap]:
    """A copy of ``extra_args`` that makes the model fill the returned tap with each step's uncond
    prediction (for CFG++), without a second model call; the caller's dict is left untouched."""
    extra_args = {} if extra_args is None else dict(extra_args)
    hook = getattr(model, "request_uncond", None)
    if hook is None:
        return extra_args, UncondTap()
    return hook(extra_args)


# --- half log-SNR, lambda = log(alpha / sigma) -------------------------------------------------
def half_log_snr(sigma: torch.Tensor, flow: bool) -> torch.Tensor:
    """lambda(sigma) = log(alpha_t / sigma_t); for flow models alpha = 1 - sigma."""
    return sigma.logit().neg() if flow else sigma.log().neg()


def sigma_from_half_log_snr(lam: torch.Tensor, flow: bool) -> torch.Tensor:
    return lam.neg().sigmoid() if flow else lam.neg().exp()


def offset_first_sigma_for_snr(sigmas: torch.Tensor, model: Any, percent_offset: float = 1e-4) -> torch.Tensor:
    """A flow model's first sigma of 1 has an infinite log-SNR: nudge it just below 1."""
    if len(sigmas) <= 1 or not is_flow(model):
        return sigmas
    if float(sigmas[0]) >= 1:
        sigmas = sigmas.clone()
        sigmas[0] = model_sampling_of(model).percent_to_sigma(percent_offset)
    return sigmas
