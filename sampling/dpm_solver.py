"""DPM-Solver (Lu et al. 2022, arXiv:2206.00927) in noise prediction: fixed-step "fast" and
adaptive-step variants, with k-diffusion's time t = -log(sigma)."""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .steps import ancestral_step, bind_default_noise


class PIDStepSizeController:
    """A PID controller for adaptive ODE step sizes (Söderlind 2003), as used by k-diffusion."""

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float = 1,
                 accept_safety: float = 0.81, eps: float = 1e-8) -> None:
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: list[float] = []

    def propose_step(self, error: torch.Tensor) -> bool:
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)  # soft limiter
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2] = self.errs[1]
            self.errs[1] = self.errs[0]
        self.h *= factor
        return accept


class DPMSolver:
    """DPM-Solver-1/2/3 single steps on a model wrapped as a noise predictor."""

    def __init__(self, model, extra_args: dict | None, eps_callback=None, info_callback=None) -> None:
        self.model = model
        self.extra_args = {} if extra_args is None else extra_args
        self.eps_callback = eps_callback
        self.info_callback = info_callback

    @staticmethod
    def t(sigma: torch.Tensor) -> torch.Tensor:
        return -sigma.log()

    @staticmethod
    def sigma(t: torch.Tensor) -> torch.Tensor:
        return t.neg().exp()

    def eps(self, cache: dict, key: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if key not in cache:
            sigma = self.sigma(t) * x.new_ones([x.shape[0]])
            cache[key] = (x - self.model(x, sigma, **self.extra_args)) / self.sigma(t)
            if self.eps_callback is not None:
                self.eps_callback()
        return cache[key]

    def step_1(self, x, t, t_next, cache):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        return x - self.sigma(t_next) * h.expm1() * eps

    def step_2(self, x, t, t_next, cache, r1=1 / 2):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)

    def step_3(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        s2 = t + r2 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = x - self.sigma(s2) * (r2 * h).expm1() * eps - self.sigma(s2) * (r2 / r1) * (
            (r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps)
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)

    def _step(self, order: int, x, t, t_next, cache):
        return (self.step_1, self.step_2, self.step_3)[order - 1](x, t, t_next, cache)

    def _ancestral(self, t, t_next, t_end, eta):
        if not eta:
            return t_next, 0.0
        sd, _ = ancestral_step(self.sigma(t), self.sigma(t_next), eta)
        t_next_ = torch.minimum(t_end, self.t(sd))
        return t_next_, (self.sigma(t_next) ** 2 - self.sigma(t_next_) ** 2) ** 0.5

    def fast(self, x, t_start, t_end, nfe: int, eta=0.0, s_noise=1.0, noise_sampler=None):
        """DPM-Solver-fast: orders 3,3,...,(2,1) so that the total NFE is exactly ``nfe``."""
        if not t_end > t_start and eta:
            raise ValueError("dpm_fast: eta must be 0 for reverse sampling")
        noise_sampler = bind_default_noise(x, noise_sampler, self.extra_args.get("seed", None))
        m = math.floor(nfe / 3) + 1
        ts = torch.linspace(t_start, t_end, m + 1, device=x.device)
        orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
        for i, order in enumerate(orders):
            cache: dict = {}
            t, t_next = ts[i], ts[i + 1]
            t_next_, su = self._ancestral(t, t_next, t_end, eta)
            eps = self.eps(cache, "eps", x, t)
            denoised = x - self.sigma(t) * eps
            if self.info_callback is not None:
                self.info_callback({"x": x, "i": i, "t": ts[i], "t_up": t, "denoised": denoised})
            x = self._step(order, x, t, t_next_, cache)
            if eta:
                x = x + su * s_noise * noise_sampler(self.sigma(t), self.sigma(t_next))
        return x

    def adaptive(self, x, t_start, t_end, order=3, rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0, icoeff=1.0,
                 dcoeff=0.0, accept_safety=0.81, eta=0.0, s_noise=1.0, noise_sampler=None):
        """Embedded DPM-Solver-12/23 pairs with PID step-size control."""
        if order not in {2, 3}:
            raise ValueError("dpm_adaptive: order should be 2 or 3")
        forward = bool(t_end > t_start)
        if not forward and eta:
            raise ValueError("dpm_adaptive: eta must be 0 for reverse sampling")
        noise_sampler = bind_default_noise(x, noise_sampler, self.extra_args.get("seed", None))
        h_init = abs(h_init) * (1 if forward else -1)
        atol = torch.tensor(atol)
        rtol = torch.tensor(rtol)
        s = t_start
        x_prev = x
        pid = PIDStepSizeController(h_init, pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
        info = {"steps": 0, "nfe": 0, "n_accept": 0, "n_reject": 0}
        while (s < t_end - 1e-5) if forward else (s > t_end + 1e-5):
            cache: dict = {}
            t = torch.minimum(t_end, s + pid.h) if forward else torch.maximum(t_end, s + pid.h)
            t_, su = self._ancestral(s, t, t_end, eta)
            eps = self.eps(cache, "eps", x, s)
            denoised = x - self.sigma(s) * eps
            if order == 2:
                x_low = self.step_1(x, s, t_, cache)
                x_high = self.step_2(x, s, t_, cache)
            else:
                x_low = self.step_2(x, s, t_, cache, r1=1 / 3)
                x_high = self.step_3(x, s, t_, cache)
            delta = torch.maximum(atol, rtol * torch.maximum(x_low.abs(), x_prev.abs()))
            error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
            if pid.propose_step(error):
                x_prev = x_low
                x = x_high + su * s_noise * noise_sampler(self.sigma(s), self.sigma(t)) if eta else x_high
                s = t
                info["n_accept"] += 1
            else:
                info["n_reject"] += 1
            info["nfe"] += order
            info["steps"] += 1
            if self.info_callback is not None:
                self.info_callback({"x": x, "i": info["steps"] - 1, "t": s, "t_up": s, "denoised": denoised,
                                    "error": error, "h": pid.h, **info})
        return x, info


def _sigma_range(name: str, sigmas: torch.Tensor, sig: list[float]):
    """(sigma_min, sigma_max) for the fixed/adaptive solvers: they stop at the last positive sigma."""
    sigma_min = sigmas[-1] if sig[-1] != 0 else sigmas[-2]
    if min(sig[0], float(sigma_min)) <= 0:
        raise ValueError(f"{name}: sigma_min and sigma_max must not be 0")
    return sigma_min, sigmas[0]


def _solver(model, extra_args, callback, pbar) -> DPMSolver:
    solver = DPMSolver(model, extra_args, eps_callback=pbar.update)
    if callback is not None:
        solver.info_callback = lambda info: callback(
            {"sigma": solver.sigma(info["t"]), "sigma_hat": solver.sigma(info["t_up"]), **info})
    return solver


@torch.no_grad()
def sample_dpm_fast(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, s_noise=1.0,
                    noise_sampler=None):
    """DPM-Solver-fast with a fixed budget of len(sigmas)-1 evaluations (Lu et al. 2022)."""
    if len(sigmas) <= 1:
        return x
    sig = sigmas.tolist()
    sigma_min, sigma_max = _sigma_range("dpm_fast", sigmas, sig)
    n = len(sigmas) - 1
    with tqdm(total=n, disable=disable) as pbar:
        solver = _solver(model, extra_args, callback, pbar)
        return solver.fast(x, solver.t(sigma_max.clone()), solver.t(sigma_min.clone()), n, eta, s_noise,
                           noise_sampler)


@torch.no_grad()
def sample_dpm_adaptive(model, x, sigmas, extra_args=None, callback=None, disable=None, order=3, rtol=0.05,
                        atol=0.0078, h_init=0.05, pcoeff=0.0, icoeff=1.0, dcoeff=0.0, accept_safety=0.81, eta=0.0,
                        s_noise=1.0, noise_sampler=None):
    """Adaptive DPM-Solver-23 between the first and last positive sigma (Lu et al. 2022)."""
    if len(sigmas) <= 1:
        return x
    sig = sigmas.tolist()
    sigma_min, sigma_max = _sigma_range("dpm_adaptive", sigmas, sig)
    with tqdm(disable=disable) as pbar:
        solver = _solver(model, extra_args, callback, pbar)
        x, _ = solver.adaptive(x, solver.t(sigma_max.clone()), solver.t(sigma_min.clone()), order, rtol, atol,
                               h_init, pcoeff, icoeff, dcoeff, accept_safety, eta, s_noise, noise_sampler)
    return x
