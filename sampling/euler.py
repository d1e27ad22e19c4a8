"""Euler/Heun-family samplers on the probability-flow ODE in sigma (Karras et al. 2022), their
ancestral variants, DPM-Solver-2 and linear multistep. All share the k-diffusion signature
``(model, x, sigmas, extra_args=None, callback=None, disable=None, **options)``."""
from __future__ import annotations

import numpy
import torch
from tqdm.auto import trange

from .model import request_uncond
from .steps import Ancestral, Churned, Stepper, ancestral_step, lambdas, scale_noise, to_d


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0.0, s_tmin=0.0,
                 s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Euler steps on the probability-flow ODE (Karras et al. 2022, Algorithm 2 with Euler steps)."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    karras = Churned(st, x, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat, denoised, d = karras.evaluate(x, sigmas, i)
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                           noise_sampler=None):
    """Ancestral Euler: an Euler step to sigma_down plus fresh noise sigma_up (k-diffusion)."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    anc = Ancestral(model, eta, s_noise, st.noise_sampler(x, noise_sampler), sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        anc.split(sigmas[i], sigmas[i + 1], i)
        st.report(i, x, sigmas[i], denoised)
        if st.sig[i + 1] == 0:
            x = denoised
        else:
            x = anc.renoise(anc.euler(x, denoised, sigmas[i]), sigmas[i], sigmas[i + 1])
    return x


@torch.no_grad()
def sample_euler_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                  s_noise=1.0, noise_sampler=None):
    """Ancestral Euler with CFG++ (Chung et al. 2024, arXiv:2406.08070): renoise along the uncond direction."""
    extra_args, tap = request_uncond(model, extra_args)
    st = Stepper(model, x, sigmas, extra_args, callback)
    noise = st.noise_sampler(x, noise_sampler)
    lambda_fn, _ = lambdas(model)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        st.report(i, x, sigmas[i], denoised)
        if st.sig[i + 1] == 0:
            x = denoised
            continue
        alpha_s = sigmas[i] * lambda_fn(sigmas[i]).exp()
        alpha_t = sigmas[i + 1] * lambda_fn(sigmas[i + 1]).exp()
        d = to_d(x, sigmas[i], alpha_s * tap.get(denoised))
        sigma_down, sigma_up = ancestral_step(sigmas[i] / alpha_s, sigmas[i + 1] / alpha_t, eta=eta)
        x = alpha_t * denoised + (alpha_t * sigma_down) * d
        if eta > 0 and s_noise > 0:
            x = x + scale_noise(alpha_t * noise(sigmas[i], sigmas[i + 1]), s_noise, sigma_up)
    return x


@torch.no_grad()
def sample_euler_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Euler with CFG++ (Chung et al. 2024): the deterministic (eta = 0) case of ancestral CFG++."""
    return sample_euler_ancestral_cfg_pp(model, x, sigmas, extra_args, callback, disable, eta=0.0, s_noise=0.0)


def _heun_correct(st: Stepper, x, d, dt, sigma_next):
    """Heun's trapezoid correction: average the slopes at both ends of the Euler step."""
    x_2 = x + d * dt
    denoised_2 = st(x_2, sigma_next)
    d_2 = to_d(x_2, sigma_next, denoised_2)
    del x_2, denoised_2
    return x + (d + d_2) / 2 * dt


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0.0, s_tmin=0.0,
                s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Heun's second-order method (Karras et al. 2022, Algorithm 2)."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    karras = Churned(st, x, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat, denoised, d = karras.evaluate(x, sigmas, i)
        del denoised  # not needed past the callback: free it before the second evaluation
        dt = sigmas[i + 1] - sigma_hat
        if st.sig[i + 1] == 0:
            x = x + d * dt
        else:
            x = _heun_correct(st, x, d, dt, sigmas[i + 1])
    return x


@torch.no_grad()
def sample_heunpp2(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0.0, s_tmin=0.0,
                   s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Heun++ (Carzit, sd-webui-samplers-scheduler): third-order-style slope blend weighted by sigma."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    karras = Churned(st, x, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
    s_end = st.sig[-1]
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat, denoised, d = karras.evaluate(x, sigmas, i)
        dt = sigmas[i + 1] - sigma_hat
        if st.sig[i + 1] == s_end:
            x = x + d * dt
            continue
        x_2 = x + d * dt
        denoised_2 = st(x_2, sigmas[i + 1])
        d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
        if st.sig[i + 2] == s_end:
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            d_prime = d * (1 - w2) + d_2 * w2
        else:
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
            denoised_3 = st(x_3, sigmas[i + 2])
            d_3 = to_d(x_3, sigmas[i + 2], denoised_3)
            w = 3 * sigmas[0]
            w2 = sigmas[i + 1] / w
            w3 = sigmas[i + 2] / w
            d_prime = (1 - w2 - w3) * d + w2 * d_2 + w3 * d_3
        x = x + d_prime * dt
    return x


def _dpm2_midpoint(st: Stepper, x, d, sigma, sigma_target):
    """DPM-Solver-2 (Lu et al. 2022) in Karras form: evaluate at the log-midpoint, step with that slope."""
    sigma_mid = sigma.log().lerp(sigma_target.log(), 0.5).exp()
    x_2 = x + d * (sigma_mid - sigma)
    denoised_2 = st(x_2, sigma_mid)
    d_2 = to_d(x_2, sigma_mid, denoised_2)
    return x + d_2 * (sigma_target - sigma)


@torch.no_grad()
def sample_dpm_2(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0.0, s_tmin=0.0,
                 s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """DPM-Solver-2 steps in the style of Karras et al. (2022) Algorithm 2."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    karras = Churned(st, x, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat, denoised, d = karras.evaluate(x, sigmas, i)
        del denoised
        if st.sig[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            x = _dpm2_midpoint(st, x, d, sigma_hat, sigmas[i + 1])
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                           noise_sampler=None):
    """Ancestral sampling with DPM-Solver-2 steps to sigma_down (k-diffusion)."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    anc = Ancestral(model, eta, s_noise, st.noise_sampler(x, noise_sampler), sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        sigma_down = anc.split(sigmas[i], sigmas[i + 1], i)
        st.report(i, x, sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if st.sig[i + 1] == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            x = anc.renoise(_dpm2_midpoint(st, x, d, sigmas[i], sigma_down), sigmas[i], sigmas[i + 1])
    return x


def lms_coefficient(order: int, t, i: int, j: int) -> float:
    """Exact integral over [t_i, t_{i+1}] of the j-th Lagrange basis polynomial through
    t_i, t_{i-1}, ..., t_{i-order+1} (linear multistep / Adams-Bashforth in sigma)."""
    if order - 1 > i:
        raise ValueError(f"lms: order {order} is too high for step {i}")
    poly = [1.0]  # coefficients, lowest degree first
    denom = 1.0
    for k in range(order):
        if k == j:
            continue
        root = t[i - k]
        poly = [(poly[d - 1] if d else 0.0) - root * (poly[d] if d < len(poly) else 0.0) for d in range(len(poly) + 1)]
        denom *= t[i - j] - root
    a, b = t[i], t[i + 1]
    integral = sum(c * (b ** (d + 1) - a ** (d + 1)) / (d + 1) for d, c in enumerate(poly))
    return float(integral / denom)


@torch.no_grad()
def sample_lms(model, x, sigmas, extra_args=None, callback=None, disable=None, order=4):
    """Linear multistep method of order 4 on the sigma ODE (k-diffusion's LMS)."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    sigmas_np = numpy.asarray(st.sig, dtype=numpy.float64)
    ds: list[torch.Tensor] = []
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        st.report(i, x, sigmas[i], denoised)
        if st.sig[i + 1] == 0:
            x = denoised
        else:
            cur_order = min(i + 1, order)
            coeffs = [lms_coefficient(cur_order, sigmas_np, i, j) for j in range(cur_order)]
            x = x + sum(coeff * d for coeff, d in zip(coeffs, reversed(ds)))
    return x
