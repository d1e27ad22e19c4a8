"""DPM-Solver++ samplers (Lu et al. 2022, arXiv:2211.01095): single-step 2S (ancestral), the
stochastic SDE variant, multistep 2M, and the 2M/3M SDE solvers, plus their CFG++ forms."""
from __future__ import annotations

import torch
from tqdm.auto import trange

from .model import offset_first_sigma_for_snr, request_uncond
from .noise import FastBrownianNoiseSampler
from .steps import (
    Ancestral, Stepper, ancestral_step, brownian_noise, flow_interpolate, lambdas, sde_exp_step,
    scale_noise, sde_noise, sigma_fn, t_fn, to_d,
)


# --- DPM-Solver++(2S) ancestral -----------------------------------------------------------------
def _dpmpp_2s_midpoint_sigma(st: Stepper, anc: Ancestral, i: int, sigmas, sigma_down):
    """The sigma of the 2S intermediate evaluation: the midpoint in half log-SNR."""
    if not anc.flow:
        t, t_next = t_fn(sigmas[i]), t_fn(sigma_down)
        return sigma_fn(t + 0.5 * (t_next - t))
    if st.sig[i] == 1.0:
        return 0.9999
    lam_i, lam_down = ((1 - sigmas[i]) / sigmas[i]).log(), ((1 - sigma_down) / sigma_down).log()
    return ((lam_i + 0.5 * (lam_down - lam_i)).exp() + 1) ** -1


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                              s_noise=1.0, noise_sampler=None):
    """Ancestral sampling with DPM-Solver++(2S) second-order single steps (Lu et al. 2022)."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    anc = Ancestral(model, eta, s_noise, st.noise_sampler(x, noise_sampler), sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        sigma_down = anc.split(sigmas[i], sigmas[i + 1], i)
        st.report(i, x, sigmas[i], denoised)
        if st.sig[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
            continue
        sigma_s = _dpmpp_2s_midpoint_sigma(st, anc, i, sigmas, sigma_down)
        if anc.flow:
            u = flow_interpolate(x, denoised, sigmas[i], sigma_s)
            x = flow_interpolate(x, st(u, sigma_s), sigmas[i], sigma_down)
        else:
            t, t_next = t_fn(sigmas[i]), t_fn(sigma_down)
            h = t_next - t
            x_2 = (sigma_s / sigma_fn(t)) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = st(x_2, sigma_s)
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_2
        x = anc.renoise(x, sigmas[i], sigmas[i + 1])
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                     s_noise=1.0, noise_sampler=None):
    """DPM-Solver++(2S) ancestral with CFG++ (Chung et al. 2024, arXiv:2406.08070)."""
    extra_args, tap = request_uncond(model, extra_args)
    st = Stepper(model, x, sigmas, extra_args, callback)
    noise = st.noise_sampler(x, noise_sampler)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        st.report(i, x, sigmas[i], denoised)
        if st.sig[i + 1] == 0:
            x = denoised + to_d(x, sigmas[i], tap.get(denoised)) * sigma_down
        else:
            t, t_next = t_fn(sigmas[i]), t_fn(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (sigma_fn(s) / sigma_fn(t)) * (x + (denoised - tap.get(denoised))) - (-h * 0.5).expm1() * denoised
            denoised_2 = st(x_2, sigma_fn(s))
            # ComfyUI reads the uncond tap again here, i.e. the midpoint evaluation's uncond.
            x = (sigma_fn(t_next) / sigma_fn(t)) * (x + (denoised - tap.get(denoised))) - (-h).expm1() * denoised_2
        if st.sig[i + 1] > 0:
            x = x + scale_noise(noise(sigmas[i], sigmas[i + 1]), s_noise, sigma_up)
    return x


# --- DPM-Solver++ SDE (single step) ---------------------------------------------------------------
@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                     noise_sampler=None, r=1 / 2, cpu_tree=True, noise_source="brownian"):
    """DPM-Solver++ (stochastic, second order, single step) with Brownian-tree noise (k-diffusion)."""
    if len(sigmas) <= 1:
        return x
    st = Stepper(model, x, sigmas, extra_args, callback)
    noise = brownian_noise(x, sigmas, st.seed, cpu_tree, noise_source, noise_sampler)
    split = getattr(noise, "split", None) or (lambda a, m, b: (noise(a, m), noise(a, b)))
    lambda_fn, sigma_of = lambdas(model)
    sigmas = offset_first_sigma_for_snr(sigmas, model)
    fac = 1 / (2 * r)
    inject = eta > 0 and s_noise > 0
    # Every scalar of the step depends on the schedule only: ComfyUI's float32 formulas, vectorised over
    # the steps once (elementwise, so the same numbers) instead of ~40 tiny tensor ops per step.
    lam = lambda_fn(sigmas)
    lambda_s, lambda_t = lam[:-1], lam[1:]
    h = lambda_t - lambda_s
    lambda_s_1 = lambda_s + r * h
    sigma_s_1 = sigma_of(lambda_s_1)
    alpha_s = sigmas[:-1] * lambda_s.exp()
    alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
    alpha_t = sigmas[1:] * lambda_t.exp()
    coef = []
    for alpha_to, lambda_to in ((alpha_s_1, lambda_s_1), (alpha_t, lambda_t)):
        # ancestral noise in the VE (sigma/alpha) space, then the exponential-integrator step to sigma_down
        sd, su = ancestral_step(lambda_s.neg().exp(), lambda_to.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        coef.append(((alpha_to / alpha_s) * (-h_).exp(), alpha_to * (-h_).expm1(), alpha_to,
                     su if inject else None))
    (cx_1, cd_1, a_1, su_1), (cx_2, cd_2, a_2, su_2) = [[None if v is None else v.unbind() for v in c] for c in coef]
    sigma_s_1 = sigma_s_1.unbind()
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        st.report(i, x, sigmas[i], denoised)
        if st.sig[i + 1] == 0:
            x = denoised
            continue
        # Step 1: to the intermediate point.
        x_2 = cx_1[i] * x - cd_1[i] * denoised
        if inject:
            # both increments start at sigma_i; the second interval contains the first
            noise_1, noise_2 = split(sigmas[i], sigma_s_1[i], sigmas[i + 1])
            x_2 = x_2 + scale_noise(a_1[i] * noise_1, s_noise, su_1[i])
        denoised_2 = st(x_2, sigma_s_1[i])
        # Step 2: the full step with the blended prediction.
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = cx_2[i] * x - cd_2[i] * denoised_d
        if inject:
            x = x + scale_noise(a_2[i] * noise_2, s_noise, su_2[i])
    return x


@torch.no_grad()
def sample_dpmpp_sde_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                         noise_sampler=None, r=1 / 2, noise_source="brownian"):
    """DPM-Solver++ SDE with the Brownian tree kept on the sampling device."""
    return sample_dpmpp_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, r,
                            cpu_tree=False, noise_source=noise_source)


# --- DPM-Solver++(2M) --------------------------------------------------------------------------------
@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """DPM-Solver++(2M): second-order multistep in data prediction (Lu et al. 2022)."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    old_denoised = None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        st.report(i, x, sigmas[i], denoised)
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is not None and st.sig[i + 1] != 0:
            r = (t - t_fn(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        else:
            denoised_d = denoised
        x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """DPM-Solver++(2M) with CFG++ (Chung et al. 2024): the exponential step uses the uncond prediction."""
    extra_args, tap = request_uncond(model, extra_args)
    st = Stepper(model, x, sigmas, extra_args, callback)
    old_uncond = None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        uncond = tap.get(denoised)
        st.report(i, x, sigmas[i], denoised)
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        mix = -torch.exp(-h) * uncond
        if old_uncond is not None and st.sig[i + 1] != 0:
            r = (t - t_fn(sigmas[i - 1])) / h
            mix = mix - torch.expm1(-h) * (1 / (2 * r)) * (denoised - old_uncond)
        x = denoised + mix + torch.exp(-h) * x
        old_uncond = uncond
    return x


# --- DPM-Solver++(2M) SDE and (3M) SDE ------------------------------------------------------------
def _correct_midpoint(x, denoised, past_d, past_h, h, h_eta, alpha_t):
    """Second-order multistep correction, midpoint form."""
    if not past_d:
        return x
    r = past_h[0] / h
    return x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - past_d[0])


def _correct_heun(x, denoised, past_d, past_h, h, h_eta, alpha_t):
    """Second-order multistep correction, Heun (trapezoid) form."""
    if not past_d:
        return x
    r = past_h[0] / h
    return x + alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r) * (denoised - past_d[0])


def _correct_third_order(x, denoised, past_d, past_h, h, h_eta, alpha_t):
    """Third-order multistep correction from two past predictions (second order after one)."""
    phi_2 = h_eta.neg().expm1() / h_eta + 1
    if len(past_h) > 1 and past_h[1] is not None:
        r0 = past_h[0] / h
        r1 = past_h[1] / h
        d1_0 = (denoised - past_d[0]) / r0
        d1_1 = (past_d[0] - past_d[1]) / r1
        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi_3 = phi_2 / h_eta - 0.5
        return x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
    if past_h and past_h[0] is not None:
        return x + (alpha_t * phi_2) * ((denoised - past_d[0]) / (past_h[0] / h))
    return x


def _multistep_sde_weights(sigmas: torch.Tensor, lambda_fn, eta: float, s_noise: float, correct) -> torch.Tensor:
    """Every step's update as weights: x' = A x + w0 D_i + w1 D_(i-1) + w2 D_(i-2) + C noise.

    The same arithmetic as the step-by-step form, evaluated once for the whole schedule in float64
    (used by the fast-noise path, which promises ComfyUI's statistics, not its bits)."""
    sig = sigmas.detach().double().cpu()
    n = len(sig) - 1
    weights = torch.zeros(n, 5, dtype=torch.float64)  # A, w0, w1, w2, C
    past_h: list = []
    for i in range(n):
        if float(sig[i + 1]) == 0:
            weights[i, 1] = 1.0
            past_h = [None] + past_h[:1]
            continue
        lam_s, lam_t = lambda_fn(sig[i]), lambda_fn(sig[i + 1])
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        alpha_t = sig[i + 1] * lam_t.exp()
        w = [sig[i + 1] / sig[i] * (-h * eta).exp(), alpha_t * (-h_eta).expm1().neg(), 0.0, 0.0]
        if correct is _correct_third_order:
            phi_2 = h_eta.neg().expm1() / h_eta + 1
            if len(past_h) > 1 and past_h[0] is not None and past_h[1] is not None:
                r0, r1 = past_h[0] / h, past_h[1] / h
                phi_3 = phi_2 / h_eta - 0.5
                c1 = alpha_t * phi_2 / r0 * (1 + r0 / (r0 + r1)) - alpha_t * phi_3 / r0 / (r0 + r1)
                c2 = -alpha_t * phi_2 / r1 * (r0 / (r0 + r1)) + alpha_t * phi_3 / r1 / (r0 + r1)
                w[1] += c1
                w[2] += c2 - c1
                w[3] -= c2
            elif past_h and past_h[0] is not None:
                c = alpha_t * phi_2 / (past_h[0] / h)
                w[1] += c
                w[2] -= c
        elif past_h and past_h[0] is not None:
            r = past_h[0] / h
            if correct is _correct_heun:
                c = alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r)
            else:
                c = 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r)
            w[1] += c
            w[2] -= c
        noise_c = sig[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise if eta > 0 and s_noise > 0 else 0.0
        weights[i] = torch.tensor([float(v) for v in w] + [float(noise_c)], dtype=torch.float64)
        past_h = [h] + past_h[:1]
    return weights


def _dpmpp_multistep_sde_fast(model, x, sigmas, extra_args, callback, disable, eta, s_noise, correct):
    """The multistep SDE update in precomputed-weight form with device-side noise (opt-in)."""
    st = Stepper(model, x, sigmas, extra_args, callback)
    noise = FastBrownianNoiseSampler(x, st.seed)
    lambda_fn, _ = lambdas(model)
    sigmas = offset_first_sigma_for_snr(sigmas, model)
    weights = _multistep_sde_weights(sigmas, lambda_fn, eta, s_noise, correct).to(x.device, x.dtype)
    past: list = []
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        st.report(i, x, sigmas[i], denoised)
        if st.sig[i + 1] == 0:
            x = denoised
        else:
            a, w0, w1, w2, c = weights[i]
            x = a * x + w0 * denoised
            if past:
                x = x + w1 * past[0]
            if len(past) > 1:
                x = x + w2 * past[1]
            if eta > 0 and s_noise > 0:
                x = x + c * noise(sigmas[i], sigmas[i + 1])
        past = [denoised] + past[:1]
    return x


def _dpmpp_multistep_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, cpu_tree,
                         correct, history, noise_source="brownian"):
    """DPM-Solver++ multistep SDE driver: first-order exponential step, a multistep correction from
    the last ``history`` predictions, then Brownian-tree noise (Lu et al. 2022; k-diffusion)."""
    if len(sigmas) <= 1:
        return x
    fast = noise_source == "fast" if noise_sampler is None else getattr(noise_sampler, "sde", None) == "fast"
    if fast:
        return _dpmpp_multistep_sde_fast(model, x, sigmas, extra_args, callback, disable, eta, s_noise, correct)
    st = Stepper(model, x, sigmas, extra_args, callback)
    noise = brownian_noise(x, sigmas, st.seed, cpu_tree, noise_source, noise_sampler)
    lambda_fn, _ = lambdas(model)
    sigmas = offset_first_sigma_for_snr(sigmas, model)
    past_d: list = []  # newest first
    past_h: list = []
    h = None
    lambda_next = None  # lambda of sigma_{i+1}, reused as the next step's lambda_s (same value)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = st(x, sigmas[i])
        st.report(i, x, sigmas[i], denoised)
        if st.sig[i + 1] == 0:
            x = denoised
        else:
            lambda_s = lambda_fn(sigmas[i]) if lambda_next is None else lambda_next
            lambda_t = lambda_next = lambda_fn(sigmas[i + 1])
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sde_exp_step(x, denoised, sigmas[i], sigmas[i + 1], h, h_eta, alpha_t, eta)
            x = correct(x, denoised, past_d, past_h, h, h_eta, alpha_t)
            x = sde_noise(x, noise, sigmas[i], sigmas[i + 1], h, eta, s_noise)
        past_d = [denoised] + past_d[:history - 1]
        past_h = [h] + past_h[:history - 1]
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                        noise_sampler=None, solver_type="midpoint", cpu_tree=True, noise_source="brownian"):
    """DPM-Solver++(2M) SDE with Brownian-tree noise; ``solver_type`` 'midpoint' or 'heun'."""
    corrections = {"midpoint": _correct_midpoint, "heun": _correct_heun}
    if solver_type not in corrections:
        raise ValueError("dpmpp_2m_sde: solver_type must be 'heun' or 'midpoint'")
    return _dpmpp_multistep_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                                cpu_tree, corrections[solver_type], history=1, noise_source=noise_source)


@torch.no_grad()
def sample_dpmpp_2m_sde_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                            noise_sampler=None, solver_type="midpoint", noise_source="brownian"):
    """DPM-Solver++(2M) SDE with the Brownian tree kept on the sampling device."""
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                               solver_type, cpu_tree=False, noise_source=noise_source)


@torch.no_grad()
def sample_dpmpp_2m_sde_heun(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                             noise_sampler=None, noise_source="brownian"):
    """DPM-Solver++(2M) SDE with the Heun-type second-order correction."""
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, "heun",
                               noise_source=noise_source)


@torch.no_grad()
def sample_dpmpp_2m_sde_heun_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                                 s_noise=1.0, noise_sampler=None, noise_source="brownian"):
    """DPM-Solver++(2M) SDE (Heun correction) with the Brownian tree on the sampling device."""
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, "heun",
                               cpu_tree=False, noise_source=noise_source)


@torch.no_grad()
def sample_dpmpp_3m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                        noise_sampler=None, cpu_tree=True, noise_source="brownian"):
    """DPM-Solver++(3M) SDE: third-order multistep with Brownian-tree noise (k-diffusion)."""
    return _dpmpp_multistep_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                                cpu_tree, _correct_third_order, history=2, noise_source=noise_source)


@torch.no_grad()
def sample_dpmpp_3m_sde_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                            noise_sampler=None, noise_source="brownian"):
    """DPM-Solver++(3M) SDE with the Brownian tree kept on the sampling device."""
    return sample_dpmpp_3m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler,
                               cpu_tree=False, noise_source=noise_source)
