"""A model's sampling description: its discrete sigma table and the sigma <-> timestep maps.

Schedulers read only the duck-typed surface defined by :class:`ModelSamplingLike` (``sigmas``,
``sigma_min``, ``sigma_max``, ``timestep(sigma)``, ``sigma(t)``), so ComfyUI's own
``model_sampling`` objects work here unchanged, and so does :class:`DiscreteModelSampling`.
"""
from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch

__all__ = ["ModelSamplingLike", "DiscreteModelSampling", "PREDICTIONS"]

PREDICTIONS = ("eps", "v", "const")


@runtime_checkable
class ModelSamplingLike(Protocol):
    """What a scheduler needs to know about a model."""

    sigmas: torch.Tensor

    @property
    def sigma_min(self) -> torch.Tensor | float: ...

    @property
    def sigma_max(self) -> torch.Tensor | float: ...

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor: ...

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor: ...


class DiscreteModelSampling:
    """A DDPM-style discrete noise table (Ho et al. 2020) viewed in sigma space (Karras et al. 2022).

    ``prediction`` is what the network predicts: ``"eps"`` (SD1.x/SDXL), ``"v"`` or ``"const"``
    (rectified flow). It decides noise scaling and which ancestral formulas samplers use.
    """

    def __init__(self, sigmas_f64: torch.Tensor, prediction: str = "eps") -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction {prediction!r} is not one of {PREDICTIONS}")
        sigmas_f64 = torch.as_tensor(sigmas_f64, dtype=torch.float64)
        if sigmas_f64.ndim != 1 or sigmas_f64.numel() < 2:
            raise ValueError("sigmas: need a 1-D table with at least two entries")
        self.prediction = prediction
        self.sigmas = sigmas_f64.float()
        self.log_sigmas = sigmas_f64.log().float()
        self.sigma_data = 1.0

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def scaled_linear(cls, timesteps: int = 1000, linear_start: float = 0.00085,
                      linear_end: float = 0.012, prediction: str = "eps") -> "DiscreteModelSampling":
        """The SD1.x / SDXL table: betas = linspace(sqrt(start), sqrt(end), T)^2 in float64."""
        betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        return cls(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5, prediction)

    # --- the scheduler-facing surface ---------------------------------------------------------
    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Nearest table index in log-sigma (first index on a tie); no interpolation."""
        log_sigma = sigma.log()
        dists = log_sigma.to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """Log-linear interpolation of the table at a (fractional) timestep."""
        t = torch.clamp(timestep.float().to(self.log_sigmas.device), min=0, max=(len(self.sigmas) - 1))
        low_idx = t.floor().long()
        high_idx = t.ceil().long()
        w = t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]
        return log_sigma.exp().to(timestep.device)

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * 999.0)))

    # --- latent <-> noisy sample ---------------------------------------------------------------
    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent_image: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        """The initial sample x = noise * s + latent (or the flow interpolation for ``const``)."""
        sigma = reshape_sigma(sigma, noise.ndim)
        if self.prediction == "const":
            return sigma * noise + (1.0 - sigma) * latent_image
        if max_denoise:
            noise = noise * torch.sqrt(1.0 + sigma ** 2.0)
        else:
            noise = noise * sigma
        return noise + latent_image

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        if self.prediction == "const":
            return latent / (1.0 - reshape_sigma(sigma, latent.ndim))
        return latent

    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.prediction == "const":
            return x
        sigma = reshape_sigma(sigma, x.ndim)
        return x / (sigma ** 2 + self.sigma_data ** 2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor,
                           model_input: torch.Tensor) -> torch.Tensor:
        sigma = reshape_sigma(sigma, model_output.ndim)
        if self.prediction == "v":
            sd2 = self.sigma_data ** 2
            return (model_input * sd2 / (sigma ** 2 + sd2)
                    - model_output * sigma * self.sigma_data / (sigma ** 2 + sd2) ** 0.5)
        return model_input - model_output * sigma

    def is_max_denoise(self, first_sigma: float) -> bool:
        """True when sampling starts from (about) pure noise: scale the noise by sqrt(1 + sigma^2)."""
        max_sigma = float(self.sigma_max)
        return math.isclose(max_sigma, first_sigma, rel_tol=1e-05) or first_sigma > max_sigma


def reshape_sigma(sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    """A one-element sigma becomes 0-dim; a per-sample sigma becomes (B, 1, ..., 1)."""
    if sigma.nelement() == 1:
        return sigma.view(())
    return sigma.view(sigma.shape[:1] + (1,) * (ndim - 1))
