"""Single-step exponential Runge-Kutta samplers in data prediction: RES (Zhang et al. 2023, "Improved order analysis
and design of exponential integrator for diffusion models"), as popularised in ComfyUI by RES4LYF.

With lambda = -log(sigma), the probability-flow ODE of ``x = x0 + sigma * eps`` (and of a flow model's
``x = (1 - sigma) x0 + sigma eps`` alike) is ``dx/dlambda = D(x) - x``: a linear part solved exactly, and the
denoiser integrated against ``e^{-(h - s)}`` with the phi functions ``phi_k(-h)`` (h = lambda_next - lambda).
``res_2s`` is the two-stage method that meets both second-order conditions exactly (c2 = 1/2; DPM-Solver-2 only
approximately); ``res_3s`` the three-stage third-order one (c = 0, 1/2, 1: Cox & Matthews' ETDRK3 tableau).
Model calls per step: 2 and 3; the last step (to sigma 0) is the prediction itself.
"""
from __future__ import annotations

import torch
from tqdm.auto import trange

from .steps import Stepper

__all__ = ["sample_res_2s", "sample_res_3s", "phi_functions"]


def phi_functions(h: torch.Tensor, order: int) -> list[torch.Tensor]:
    """[phi_1(-h), ..., phi_order(-h)]: phi_1(z) = (e^z - 1)/z, phi_{k+1}(z) = (phi_k(z) - 1/k!)/z."""
    z = -h
    out = [torch.expm1(z) / z]
    factorial = 1.0
    for k in range(1, order):
        factorial *= k
        out.append((out[-1] - 1.0 / factorial) / z)
    return out


def _res(model, x, sigmas, extra_args, callback, disable, stages: int):
    st = Stepper(model, x, sigmas, extra_args, callback)
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        d1 = st(x, sigma)
        st.report(i, x, sigma, d1)
        if st.sig[i + 1] == 0:
            x = d1
            continue
        h = (sigma / sigma_next).log()
        decay = sigma_next / sigma  # e^{-h}
        half = (sigma * sigma_next).sqrt()  # sigma at lambda + h/2
        x_half = (half / sigma) * x - torch.expm1(-h / 2) * d1
        d2 = st(x_half, half)
        if stages == 2:
            phi1, phi2 = phi_functions(h, 2)
            b2 = phi2 / 0.5
            x = decay * x + h * ((phi1 - b2) * d1 + b2 * d2)
            continue
        phi1, phi2, phi3 = phi_functions(h, 3)
        x_end = decay * x + h * phi1 * (2 * d2 - d1)
        d3 = st(x_end, sigma_next)
        x = decay * x + h * ((phi1 - 3 * phi2 + 4 * phi3) * d1 + (4 * phi2 - 8 * phi3) * d2 + (4 * phi3 - phi2) * d3)
    return x


@torch.no_grad()
def sample_res_2s(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """RES 2s: two-stage exponential RK meeting both second-order conditions (Zhang et al. 2023)."""
    return _res(model, x, sigmas, extra_args, callback, disable, 2)


@torch.no_grad()
def sample_res_3s(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """RES 3s: three-stage third-order exponential RK (c = 0, 1/2, 1; Cox & Matthews 2002's ETDRK3)."""
    return _res(model, x, sigmas, extra_args, callback, disable, 3)
