"""Multistep samplers that reuse past derivatives or predictions: iPNDM (fixed and variable step),
DEIS, RES multistep (and its ancestral and CFG++ forms) and gradient estimation."""
from __future__ import annotations

import torch
from tqdm.auto import trange

from .model import request_uncond
from .steps import Stepper, ancestral_step, scale_noise, sigma_fn, t_fn, to_d

# Adams-Bashforth weights (numerators, denominator) for orders 1..4, newest derivative first.
_ADAMS_BASHFORTH = {
    1: ((1,), 1),
    2: ((3, -1), 2),
    3: ((23, -16, 5), 12),
    4: ((55, -59, 37, -9), 24),
}


class _History:
    """The last ``size`` derivatives, newest last."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: list[torch.Tensor] = []

    def push(self, d: torch.Tensor) -> None:
        if self.size <= 0:
            return
        self.items.append(d)
        if len(self.items) > self.size:
            self.items.pop(0)

    def newest(self, k: int) -> torch.Tensor:
        """k = 1 is the most recent past derivative."""
        return self.items[-k]


def _combine(d_cur: torch.Tensor, hist: _History, coeffs) -> torch.Tensor:
    acc = coeffs[0] * d_cur
    for k, c in enumerate(coeffs[1:], start=1):
        acc = acc + c * hist.newest(k)
    return acc


def _ipndm_v_coeffs(order: int, h: list[torch.Tensor]) -> list[torch.Tensor]:
    """Variable-step Adams-Bashforth weights; h[0] is the current step, h[k] the k-th previous one."""
    h_n = h[0]
    if order == 2:
        return [(2 + (h_n / h[1])) / 2, -(h_n / h[1]) / 2]
    h_n_1, h_n_2 = h[1], h[2]
    temp1 = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
    if order == 3:
        return [(2 + (h_n / h_n_1)) / 2 + temp1,
                -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp1,
                temp1 * h_n_1 / h_n_2]
    h_n_3 = h[3]
    ratio = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3))
    temp2 = ((1 - h_n / (3 * (h_n + h_n_1))) / 2 + (1 - h_n / (2 * (h_n + h_n_1))) * h_n / (6 * (h_n + h_n_1 + h_n_2))) \
        * (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2)) / (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3))
    return [(2 + (h_n / h_n_1)) / 2 + temp1 + temp2,
            -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp1 - (1 + (h_n_1 / h_n_2) + ratio) * temp2,
            temp1 * h_n_1 / h_n_2 + ((h_n_1 / h_n_2) + ratio * (1 + h_n_2 / h_n_3)) * temp2,
            -temp2 * ratio * h_n_1 / h_n_2]


def _ab_fixed(order: int, sigmas, i: int, dt):
    """Adams-Bashforth weights for equal steps (numerators, denominator)."""
    return _ADAMS_BASHFORTH[order]


def _ab_variable(order: int, sigmas, i: int, dt):
    """Adams-Bashforth weights for the actual, unequal step sizes."""
    h = [dt] + [sigmas[i - k] - sigmas[i - k - 1] for k in range(order - 1)]
    return _ipndm_v_coeffs(order, h), 1


def _ipndm(model, x, sigmas, extra_args, callback, disable, max_order, weights):
    """iPNDM driver: Adams-Bashforth on the sigma ODE with a lower-order warm start."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    hist = _History(max_order - 1)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        st.report(i, x, sigmas[i], denoised)
        d_cur = (x - denoised) / sigmas[i]
        order = min(max_order, i + 1)
        dt = sigmas[i + 1] - sigmas[i]
        if st.sig[i + 1] == 0:
            x_next = denoised
        elif order == 1:
            x_next = x + dt * d_cur
        else:
            coeffs, den = weights(order, sigmas, i, dt)
            x_next = x + dt * _combine(d_cur, hist, coeffs) / den
        hist.push(d_cur)
        x = x_next
    return x


@torch.no_grad()
def sample_ipndm(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=4):
    """Improved pseudo numerical method (iPNDM): fixed-step Adams-Bashforth on the sigma ODE
    (Zhang & Chen 2023, arXiv:2204.13902)."""
    return _ipndm(model, x, sigmas, extra_args, callback, disable, max_order, _ab_fixed)


@torch.no_grad()
def sample_ipndm_v(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=4):
    """iPNDM with variable-step Adams-Bashforth weights (Zhang & Chen 2023; diff-solvers)."""
    return _ipndm(model, x, sigmas, extra_args, callback, disable, max_order, _ab_variable)


def deis_coefficients(sigmas: torch.Tensor, max_order: int, n_points: int = 10000) -> list[list[torch.Tensor]]:
    """DEIS 'tab' coefficients (Zhang & Chen 2023, arXiv:2204.13902): integrals of Lagrange basis
    polynomials in VP time against the exponential-integrator weight, by an N-point Riemann sum.

    Sigmas are mapped to VP time t with EDM's default VP fit (sigma 0.002..80, epsilon 1e-3).
    """
    eps_s, sigma_min, sigma_max = 1e-3, torch.tensor(0.002), torch.tensor(80.0)
    beta_d = 2 * (torch.log(sigma_min ** 2 + 1) / eps_s - torch.log(sigma_max ** 2 + 1)) / (eps_s - 1)
    beta_min = torch.log(sigma_max ** 2 + 1) - 0.5 * beta_d
    s = sigmas.detach().cpu()
    t_steps = ((beta_min ** 2 + 2 * beta_d * (s ** 2 + 1).log()).sqrt() - beta_min) / beta_d
    beta_0, beta_1 = beta_min, beta_d + beta_min

    coeffs: list[list[torch.Tensor]] = []
    for i in range(len(t_steps) - 1):
        order = min(i + 1, max_order)
        if order == 1:
            coeffs.append([])
            continue
        t_cur, t_next = t_steps[i], t_steps[i + 1]
        taus = torch.linspace(t_cur, t_next, n_points)
        dtau = (t_next - t_cur) / n_points
        prev_t = t_steps[[i - k for k in range(order)]]
        # alpha(t) = exp(-t^2 (b1 - b0)/2 - t b0); d log(alpha)/dt = -(t (b1 - b0) + b0)
        alpha = torch.exp(-0.5 * taus ** 2 * (beta_1 - beta_0) - taus * beta_0)
        d_log_alpha = -(taus * (beta_1 - beta_0) + beta_0)
        integrand = -0.5 * d_log_alpha / torch.sqrt(alpha * (1 - alpha))
        row = []
        for j in range(order):
            poly = 1
            for k in range(order):
                if k != j:
                    poly = poly * ((taus - prev_t[k]) / (prev_t[j] - prev_t[k]))
            row.append(torch.sum(integrand * poly) * dtau)
        coeffs.append(row)
    return coeffs


@torch.no_grad()
def sample_deis(model, x, sigmas, extra_args=None, callback=None, disable=None, max_order=3):
    """DEIS multistep exponential integrator, tabulated coefficients (Zhang & Chen 2023)."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    table = deis_coefficients(sigmas, max_order)
    hist = _History(max_order - 1)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        st.report(i, x, sigmas[i], denoised)
        d_cur = (x - denoised) / sigmas[i]
        order = 1 if st.sig[i + 1] <= 0 else min(max_order, i + 1)
        if order == 1:
            x_next = x + (sigmas[i + 1] - sigmas[i]) * d_cur
        else:
            c = [v.to(x.device) for v in table[i]]
            x_next = x + c[0] * d_cur
            for k in range(1, order):
                x_next = x_next + c[k] * hist.newest(k)
        hist.push(d_cur)
        x = x_next
    return x


@torch.no_grad()
def res_multistep(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0, noise_sampler=None,
                  eta=1.0, cfg_pp=False):
    """Second-order RES multistep exponential integrator (Zhang et al. 2023, arXiv:2308.02157),
    optionally ancestral (eta > 0) and CFG++."""
    extra_args = {} if extra_args is None else dict(extra_args)
    tap = None
    if cfg_pp:
        extra_args, tap = request_uncond(model, extra_args)
    st = Stepper(model, x, sigmas, extra_args, callback)
    noise = st.noise_sampler(x, noise_sampler) if eta > 0 else None
    old_sigma_down = None
    old_denoised = None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        uncond = tap.get(denoised) if cfg_pp else denoised
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        st.report(i, x, sigmas[i], denoised)
        if st.sig[i + 1] == 0 or old_denoised is None:
            if cfg_pp:
                x = denoised + to_d(x, sigmas[i], uncond) * sigma_down
            else:
                x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_old, t_next, t_prev = t_fn(sigmas[i]), t_fn(old_sigma_down), t_fn(sigma_down), t_fn(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t_old) / h
            phi1 = torch.expm1(-h) / (-h)
            phi2 = (phi1 - 1.0) / (-h)
            b1 = torch.nan_to_num(phi1 - phi2 / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2 / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - uncond)
            x = sigma_fn(h) * x + h * (b1 * uncond + b2 * old_denoised)
        if st.sig[i + 1] > 0 and eta > 0:
            x = x + scale_noise(noise(sigmas[i], sigmas[i + 1]), s_noise, sigma_up)
        old_denoised = uncond
        old_sigma_down = sigma_down
    return x


@torch.no_grad()
def sample_res_multistep(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
                         noise_sampler=None):
    """RES second-order multistep (Zhang et al. 2023), deterministic."""
    return res_multistep(model, x, sigmas, extra_args, callback, disable, s_noise, noise_sampler, eta=0.0)


@torch.no_grad()
def sample_res_multistep_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
                                noise_sampler=None):
    """RES multistep with CFG++ (Chung et al. 2024)."""
    return res_multistep(model, x, sigmas, extra_args, callback, disable, s_noise, noise_sampler, eta=0.0,
                         cfg_pp=True)


@torch.no_grad()
def sample_res_multistep_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                   s_noise=1.0, noise_sampler=None):
    """RES multistep with ancestral noise (eta = 1)."""
    return res_multistep(model, x, sigmas, extra_args, callback, disable, s_noise, noise_sampler, eta=eta)


@torch.no_grad()
def sample_res_multistep_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                          s_noise=1.0, noise_sampler=None):
    """RES multistep, ancestral and CFG++."""
    return res_multistep(model, x, sigmas, extra_args, callback, disable, s_noise, noise_sampler, eta=eta,
                         cfg_pp=True)


@torch.no_grad()
def sample_gradient_estimation(model, x, sigmas, extra_args=None, callback=None, disable=None, ge_gamma=2.0,
                               cfg_pp=False):
    """Gradient estimation: Euler with a momentum-like correction of the denoiser direction
    (Permenter & Yuan 2024, "Interpreting and improving diffusion models from an optimization perspective")."""
    extra_args = {} if extra_args is None else dict(extra_args)
    tap = None
    if cfg_pp:
        extra_args, tap = request_uncond(model, extra_args)
    st = Stepper(model, x, sigmas, extra_args, callback)
    old_d = None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        d = to_d(x, sigmas[i], tap.get(denoised) if cfg_pp else denoised)
        st.report(i, x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if st.sig[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if i >= 1:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


@torch.no_grad()
def sample_gradient_estimation_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, ge_gamma=2.0):
    """Gradient estimation with CFG++ (Chung et al. 2024)."""
    return sample_gradient_estimation(model, x, sigmas, extra_args, callback, disable, ge_gamma, cfg_pp=True)
