"""Stochastic samplers driven by per-step Gaussian noise from a seeded generator: DDPM, LCM,
ER-SDE, SEEDS-2/3 and SA-Solver."""
from __future__ import annotations

import math

import torch
from tqdm.auto import trange

from .model import model_sampling_of, offset_first_sigma_for_snr
from .steps import Stepper, lambdas, lcm_renoise, phi_1, phi_2, scale_noise


# --- DDPM ancestral step ----------------------------------------------------------------------------
def _ddpm_step(x, sigma, sigma_prev, eps, noise):
    """One DDPM posterior step in the VP parametrisation (Ho et al. 2020, eq. 11)."""
    alpha_cumprod = 1 / ((sigma * sigma) + 1)
    alpha_cumprod_prev = 1 / ((sigma_prev * sigma_prev) + 1)
    alpha = alpha_cumprod / alpha_cumprod_prev
    mu = (1.0 / alpha).sqrt() * (x - (1 - alpha) * eps / (1 - alpha_cumprod).sqrt())
    if noise is not None:
        mu = mu + ((1 - alpha) * (1.0 - alpha_cumprod_prev) / (1.0 - alpha_cumprod)).sqrt() * noise(sigma, sigma_prev)
    return mu


@torch.no_grad()
def sample_ddpm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """DDPM ancestral sampling (Ho et al. 2020), stepping between the schedule's sigmas."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    noise = st.noise_sampler(x, noise_sampler)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        st.report(i, x, sigmas[i], denoised)
        x_vp = x / torch.sqrt(1.0 + sigmas[i] ** 2.0)
        eps = (x - denoised) / sigmas[i]
        x = _ddpm_step(x_vp, sigmas[i], sigmas[i + 1], eps, noise if st.sig[i + 1] > 0 else None)
        if st.sig[i + 1] != 0:
            x = x * torch.sqrt(1.0 + sigmas[i + 1] ** 2.0)
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Latent consistency model multistep sampling: jump to the prediction, re-noise to the next
    sigma (Luo et al. 2023, arXiv:2310.04378)."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    noise = st.noise_sampler(x, noise_sampler)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        st.report(i, x, sigmas[i], denoised)
        x = denoised
        if st.sig[i + 1] > 0:
            x = lcm_renoise(model, x, sigmas[i + 1], noise(sigmas[i], sigmas[i + 1]))
    return x


# --- ER-SDE -------------------------------------------------------------------------------------------
def _er_sde_noise_scaler(x):
    return x * ((x ** 0.3).exp() + 10.0)


@torch.no_grad()
def sample_er_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0, noise_sampler=None,
                  noise_scaler=None, max_stage=3):
    """Extended reverse-time SDE solver, VP ER-SDE-Solver-3 (Cui et al. 2023, arXiv:2309.06169)."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    noise = st.noise_sampler(x, noise_sampler)
    scaler = _er_sde_noise_scaler if noise_scaler is None else noise_scaler
    n_points = 200.0
    point_index = torch.arange(0, n_points, dtype=torch.float32, device=x.device)
    lambda_fn, _ = lambdas(model)
    sigmas = offset_first_sigma_for_snr(sigmas, model)
    er_lambdas = lambda_fn(sigmas).neg().exp()  # sigma_t / alpha_t
    old_denoised = None
    old_denoised_d = None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        st.report(i, x, sigmas[i], denoised)
        stage = min(max_stage, i + 1)
        if st.sig[i + 1] == 0:
            x = denoised
        else:
            er_s, er_t = er_lambdas[i], er_lambdas[i + 1]
            alpha_s = sigmas[i] / er_s
            alpha_t = sigmas[i + 1] / er_t
            r = scaler(er_t) / scaler(er_s)
            x = alpha_t / alpha_s * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2:
                dt = er_t - er_s
                step = -dt / n_points
                lambda_pos = er_t + point_index * step
                scaled_pos = scaler(lambda_pos)
                s = torch.sum(1 / scaled_pos) * step
                denoised_d = (denoised - old_denoised) / (er_s - er_lambdas[i - 1])
                x = x + alpha_t * (dt + s * scaler(er_t)) * denoised_d
                if stage >= 3:
                    s_u = torch.sum((lambda_pos - er_s) / scaled_pos) * step
                    denoised_u = (denoised_d - old_denoised_d) / ((er_s - er_lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt ** 2) / 2 + s_u * scaler(er_t)) * denoised_u
                old_denoised_d = denoised_d
            if s_noise > 0:
                x = x + scale_noise(alpha_t * noise(sigmas[i], sigmas[i + 1]), s_noise,
                                    (er_t ** 2 - er_s ** 2 * r ** 2).sqrt().nan_to_num(nan=0.0))
        old_denoised = denoised
    return x


# --- SEEDS ----------------------------------------------------------------------------------------------
class _SeedsNoise:
    """The Brownian path of one SEEDS step, extended stage by stage so that the stages' noises are
    correlated as in the exact SDE solution (Gonzalez et al. 2023)."""

    def __init__(self, noise, h, eta: float, s_noise: float) -> None:
        self.noise, self.h, self.eta, self.s_noise = noise, h, eta, s_noise
        self.value = None
        self.r = 0.0

    def advance(self, r: float, sigma_from, sigma_to):
        if self.value is None:
            self.value = (-2 * r * self.h * self.eta).expm1().neg().sqrt() * self.noise(sigma_from, sigma_to)
        else:
            segment = (self.r - r) * self.h * self.eta
            self.value = self.value * segment.exp()
            self.value = self.value + segment.mul(2).expm1().neg().sqrt() * self.noise(sigma_from, sigma_to)
        self.r = r
        return self.value * sigma_to * self.s_noise


@torch.no_grad()
def _seeds(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, stages):
    """SEEDS: stochastic explicit exponential derivative-free solvers, data prediction
    (Gonzalez et al. 2023, arXiv:2305.14267). ``stages`` lists (r, term) per stage, where
    ``term(alpha_r, preds, h_eta)`` is the exponential-integrator term subtracted at that stage; the last
    stage lands on the next sigma, every other one adds a model evaluation at its half-log-SNR fraction r."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    noise = st.noise_sampler(x, noise_sampler)
    inject = eta > 0 and s_noise > 0
    lambda_fn, sigma_of = lambdas(model)
    sigmas = offset_first_sigma_for_snr(sigmas, model)
    last = len(stages) - 1
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        st.report(i, x, sigmas[i], denoised)
        if st.sig[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = lambda_fn(sigmas[i]), lambda_fn(sigmas[i + 1])
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        path = _SeedsNoise(noise, h, eta, s_noise) if inject else None
        preds = [denoised]
        sigma_prev = sigmas[i]
        for k, (r, term) in enumerate(stages):
            if k == last:
                sigma_r, alpha_r = sigmas[i + 1], sigmas[i + 1] * lambda_t.exp()
            else:
                lambda_r = torch.lerp(lambda_s, lambda_t, r)
                sigma_r = sigma_of(lambda_r)
                alpha_r = sigma_r * lambda_r.exp()
            x_r = sigma_r / sigmas[i] * (-r * h * eta).exp() * x - term(alpha_r, preds, h_eta)
            if inject:
                x_r = x_r + path.advance(r, sigma_prev, sigma_r)
            sigma_prev = sigma_r
            if k == last:
                x = x_r
            else:
                preds.append(st(x_r, sigma_r))
    return x


@torch.no_grad()
def sample_seeds_2(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                   noise_sampler=None, r=0.5, solver_type="phi_1"):
    """SEEDS-2: two-stage SEEDS (Gonzalez et al. 2023, arXiv:2305.14267). ``solver_type="phi_2"`` combines the
    two predictions with the second-order exponential weights (b2 = phi_2 / r, b1 = phi_1 - b2)."""
    if solver_type == "phi_1":
        fac = 1 / (2 * r)
        final = lambda alpha, p, h_eta: alpha * phi_1(-h_eta) * torch.lerp(p[0], p[1], fac)  # noqa: E731
    elif solver_type == "phi_2":
        def final(alpha, p, h_eta):
            b2 = phi_2(-h_eta) / r
            b1 = phi_1(-h_eta) - b2
            return alpha * (b1 * p[0] + b2 * p[1])
    else:
        raise ValueError(f"solver_type: {solver_type!r} is not one of phi_1, phi_2")
    stages = [(r, lambda alpha, p, h_eta: alpha * phi_1(-r * h_eta) * p[0]), (1.0, final)]
    return _seeds(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, stages)


@torch.no_grad()
def sample_exp_heun_2_x0(model, x, sigmas, extra_args=None, callback=None, disable=None, solver_type="phi_2"):
    """Deterministic exponential Heun (second order) in data prediction and half-log-SNR time: SEEDS-2 with
    r = 1 and phi_2 weights, no noise (ComfyUI 0.5.0's exp_heun_2_x0)."""
    return sample_seeds_2(model, x, sigmas, extra_args, callback, disable, eta=0.0, s_noise=0.0, noise_sampler=None,
                          r=1.0, solver_type=solver_type)


@torch.no_grad()
def sample_exp_heun_2_x0_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                             noise_sampler=None, solver_type="phi_2"):
    """Stochastic exponential Heun (second order), data prediction: SEEDS-2 with r = 1 and phi_2 weights."""
    return sample_seeds_2(model, x, sigmas, extra_args, callback, disable, eta=eta, s_noise=s_noise,
                          noise_sampler=noise_sampler, r=1.0, solver_type=solver_type)


@torch.no_grad()
def sample_seeds_3(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                   noise_sampler=None, r_1=1.0 / 3, r_2=2.0 / 3):
    """SEEDS-3: three-stage SEEDS (Gonzalez et al. 2023, arXiv:2305.14267)."""

    def stage_2(alpha, p, h_eta):
        a3_2 = r_2 / r_1 * phi_2(-r_2 * h_eta)
        a3_1 = phi_1(-r_2 * h_eta) - a3_2
        return alpha * (a3_1 * p[0] + a3_2 * p[1])

    def stage_3(alpha, p, h_eta):
        b3 = phi_2(-h_eta) / r_2
        b1 = phi_1(-h_eta) - b3
        return alpha * (b1 * p[0] + b3 * p[2])

    stages = [(r_1, lambda alpha, p, h_eta: alpha * phi_1(-r_1 * h_eta) * p[0]), (r_2, stage_2), (1.0, stage_3)]
    return _seeds(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, stages)


# --- SA-Solver ------------------------------------------------------------------------------------------
def _exponential_coeffs(s: torch.Tensor, t: torch.Tensor, order: int, tau: float) -> torch.Tensor:
    """(1 + tau^2) * integral_s^t exp((1 + tau^2)(x - t)) x^p dx for p = 0..order-1, by repeated
    integration by parts written as a lower-triangular matrix times the boundary terms."""
    tau_mul = 1 + tau ** 2
    h = t - s
    p = torch.arange(order, dtype=s.dtype, device=s.device)
    boundary = t ** p - s ** p * (-tau_mul * h).exp()
    depth = p.unsqueeze(1) - p.unsqueeze(0)
    log_fact = (p + 1).lgamma()
    log_coeff = log_fact.unsqueeze(1) - log_fact.unsqueeze(0)
    if tau > 0:
        log_coeff = log_coeff - depth * math.log(tau_mul)
    signs = torch.where(depth % 2 == 0, 1.0, -1.0)
    return (log_coeff.exp() * signs).tril() @ boundary


def _sa_b_coeffs(sigma_next, nodes, lambda_s, lambda_t, tau: float, simple_order_2: bool,
                 corrector: bool) -> torch.Tensor:
    """Stochastic Adams weights b_i (Xue et al. 2023, eqs. 15 and 18): integrals of the Lagrange
    basis through ``nodes`` (half log-SNRs) against the SDE's exponential weight."""
    n = nodes.shape[0]
    alpha_t = sigma_next * lambda_t.exp()
    if simple_order_2 and n == 2:
        tau_mul = 1 + tau ** 2
        h = lambda_t - lambda_s
        if corrector:
            b_1 = alpha_t * (0.5 * tau_mul * h)
            b_2 = alpha_t * (-h * tau_mul).expm1().neg() - b_1
        else:
            b_2 = alpha_t * (0.5 * tau_mul * h ** 2) / (nodes[-2] - lambda_s)
            b_1 = alpha_t * (-h * tau_mul).expm1().neg() - b_2
        return torch.stack([b_2, b_1])
    moments = _exponential_coeffs(lambda_s, lambda_t, n, tau)
    weights = torch.linalg.solve(torch.vander(nodes, n, increasing=True).T, moments)
    return alpha_t * weights


@torch.no_grad()
def sample_sa_solver(model, x, sigmas, extra_args=None, callback=None, disable=False, tau_func=None, s_noise=1.0,
                     noise_sampler=None, predictor_order=3, corrector_order=4, use_pece=False, simple_order_2=False,
                     return_prediction=False):
    """SA-Solver: stochastic Adams predictor-corrector (Xue et al. 2023, arXiv:2309.05019).

    ``return_prediction`` returns the last predictor output (the sample at the slice's last sigma, ComfyUI from
    0.5.1) instead of the last corrected sample (before)."""
    if len(sigmas) <= 1:
        return x
    st = Stepper(model, x, sigmas, extra_args, callback)
    noise = st.noise_sampler(x, noise_sampler)
    lambda_fn, _ = lambdas(model)
    sigmas = offset_first_sigma_for_snr(sigmas, model)
    sig = sigmas.tolist()
    lams = lambda_fn(sigmas)
    if tau_func is None:
        ms = model_sampling_of(model)
        start_sigma, end_sigma = ms.percent_to_sigma(0.2), ms.percent_to_sigma(0.8)
        tau_func = lambda sigma: 1.0 if start_sigma >= float(sigma) >= end_sigma else 0.0  # noqa: E731
    max_order = max(predictor_order, corrector_order)
    x_pred = x
    h = 0.0
    tau_t = 0.0
    added_noise = 0.0
    preds: list[torch.Tensor] = []
    lower_order_to_end = sig[-1] == 0
    n = len(sigmas)
    for i in trange(n - 1, disable=disable):
        denoised = st(x_pred, sigmas[i])
        st.report(i, x_pred, sigmas[i], denoised)
        preds = (preds + [denoised])[-max_order:]
        p_order = min(predictor_order, len(preds))
        c_order = 0 if i == 0 or (sig[i + 1] == 0 and not use_pece) else min(corrector_order, len(preds))
        if lower_order_to_end:
            p_order = min(p_order, n - 2 - i)
            c_order = min(c_order, n - 1 - i)
        # Corrector
        if c_order == 0:
            x = x_pred
        else:
            b = _sa_b_coeffs(sigmas[i], lams[i - c_order + 1:i + 1], lams[i - 1], lams[i], tau_t, simple_order_2, True)
            corr = torch.tensordot(torch.stack(preds[-c_order:], dim=1), b, dims=([1], [0]))
            x = sigmas[i] / sigmas[i - 1] * (-(tau_t ** 2) * h).exp() * x + corr
            if tau_t > 0 and s_noise > 0:
                x = x + added_noise
            if use_pece:
                denoised = st(x, sigmas[i])
                preds[-1] = denoised
        # Predictor
        if sig[i + 1] == 0:
            x = denoised
            x_pred = denoised
        else:
            tau_t = tau_func(sig[i + 1])
            b = _sa_b_coeffs(sigmas[i + 1], lams[i - p_order + 1:i + 1], lams[i], lams[i + 1], tau_t,
                             simple_order_2, False)
            pred = torch.tensordot(torch.stack(preds[-p_order:], dim=1), b, dims=([1], [0]))
            h = lams[i + 1] - lams[i]
            x_pred = sigmas[i + 1] / sigmas[i] * (-(tau_t ** 2) * h).exp() * x + pred
            if tau_t > 0 and s_noise > 0:
                added_noise = noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * \
                    (-2 * tau_t ** 2 * h).expm1().neg().sqrt() * s_noise
                x_pred = x_pred + added_noise
    return x_pred if return_prediction else x


@torch.no_grad()
def sample_sa_solver_pece(model, x, sigmas, extra_args=None, callback=None, disable=False, tau_func=None,
                          s_noise=1.0, noise_sampler=None, predictor_order=3, corrector_order=4, simple_order_2=False,
                          return_prediction=False):
    """SA-Solver in PECE mode: re-evaluate the model after each correction (Xue et al. 2023)."""
    return sample_sa_solver(model, x, sigmas, extra_args, callback, disable, tau_func, s_noise, noise_sampler,
                            predictor_order, corrector_order, True, simple_order_2, return_prediction)
