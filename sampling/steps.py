"""Pieces shared by the samplers: the model-evaluation/callback driver, the ODE derivative,
ancestral splits, churn and the SDE noise terms. Samplers compose these instead of copying them.

Floating-point order follows k-diffusion/ComfyUI so results match ComfyUI bit for bit where the
model does; branch decisions read a Python copy of the sigmas taken once per run, so the step loop
never synchronises with the device.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .model import is_flow, model_sampling_of
from .noise import BrownianTreeNoiseSampler, FastBrownianNoiseSampler, NoiseSampler, NoiseSource, default_noise_sampler

Callback = Callable[[dict], None] | None


class Stepper:
    """Evaluates the model at a sigma and reports steps to a k-diffusion-style callback."""

    __slots__ = ("model", "s_in", "extra_args", "callback", "sig")

    def __init__(self, model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None,
                 callback: Callback) -> None:
        self.model = model
        self.s_in = x.new_ones([x.shape[0]])
        self.extra_args = {} if extra_args is None else extra_args
        self.callback = callback
        self.sig: list[float] = sigmas.tolist()  # one host copy per run, for branching only

    @property
    def seed(self) -> int | None:
        return self.extra_args.get("seed", None)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        return self.model(x, sigma * self.s_in, **self.extra_args)

    def report(self, i: int, x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor,
               sigma_hat: torch.Tensor | None = None) -> None:
        if self.callback is not None:
            self.callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma if sigma_hat is None else sigma_hat,
                           "denoised": denoised})

    def noise_sampler(self, x: torch.Tensor, noise_sampler: NoiseSampler | None) -> NoiseSampler:
        return bind_default_noise(x, noise_sampler, self.seed)


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v[(...,) + (None,) * (ndim - v.ndim)]


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE derivative dx/dsigma = (x - D(x)) / sigma (Karras et al. 2022, eq. 3)."""
    return (x - denoised) / append_dims(sigma, x.ndim)


def ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0):
    """Split a step sigma_from -> sigma_to into a deterministic step to sigma_down and fresh noise
    of std sigma_up, with sigma_down^2 + sigma_up^2 = sigma_to^2 (DDIM eta, Song et al. 2021)."""
    if not eta:
        return sigma_to, 0.0
    up = eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5
    # Python's min(sigma_to, up): a NaN ``up`` (sigma_from = inf at a flow model's sigma 1) keeps sigma_to.
    sigma_up = torch.where(up < sigma_to, up, sigma_to)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def flow_ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float):
    """The rectified-flow analogue of :func:`ancestral_step`: returns (sigma_down, alpha ratio,
    renoise coefficient) so that ``x = ratio * x_down + renoise * noise`` lands on sigma_next."""
    downstep_ratio = 1 + (sigma_next / sigma - 1) * eta
    sigma_down = sigma_next * downstep_ratio
    alpha_ip1 = 1 - sigma_next
    alpha_down = 1 - sigma_down
    renoise_coeff = (sigma_next ** 2 - sigma_down ** 2 * alpha_ip1 ** 2 / alpha_down ** 2) ** 0.5
    return sigma_down, alpha_ip1 / alpha_down, renoise_coeff


def flow_interpolate(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor, sigma_target) -> torch.Tensor:
    """Move along the straight flow path from (x at sigma) towards the prediction, to sigma_target."""
    ratio = sigma_target / sigma
    return ratio * x + (1 - ratio) * denoised


class Ancestral:
    """The ancestral split for eps/v models (:func:`ancestral_step`) or flow models
    (:func:`flow_ancestral_step`): a deterministic move to sigma_down, then renoising to sigma_next.

    The split of every step is computed once, vectorised over the schedule (only +, -, *, / and
    square roots, so the values are bit-identical to per-step scalar arithmetic)."""

    __slots__ = ("flow", "eta", "s_noise", "noise", "down", "up", "ratio", "_downs", "_ups", "_ratios")

    def __init__(self, model: Any, eta: float, s_noise: float, noise: NoiseSampler,
                 sigmas: torch.Tensor | None = None) -> None:
        self.flow = is_flow(model)
        self.eta, self.s_noise, self.noise = eta, s_noise, noise
        self.down = self.up = self.ratio = None
        self._downs = self._ups = self._ratios = None
        if sigmas is not None and len(sigmas) > 1:
            if self.flow:
                self._downs, self._ratios, self._ups = flow_ancestral_step(sigmas[:-1], sigmas[1:], eta)
            elif eta:
                self._downs, self._ups = ancestral_step(sigmas[:-1], sigmas[1:], eta=eta)

    def split(self, sigma: torch.Tensor, sigma_next: torch.Tensor, i: int | None = None) -> torch.Tensor:
        if i is not None and self._downs is not None:
            self.down, self.up = self._downs[i], self._ups[i]
            if self.flow:
                self.ratio = self._ratios[i]
        elif self.flow:
            self.down, self.ratio, self.up = flow_ancestral_step(sigma, sigma_next, self.eta)
        else:
            self.down, self.up = ancestral_step(sigma, sigma_next, eta=self.eta)
        return self.down

    def euler(self, x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """An Euler step from sigma to sigma_down (a straight-path interpolation for flow models)."""
        if self.flow:
            return flow_interpolate(x, denoised, sigma, self.down)
        return x + to_d(x, sigma, denoised) * (self.down - sigma)

    def renoise(self, x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        if not self.eta:
            return x
        scaled = scale_noise(self.noise(sigma, sigma_next), self.s_noise, self.up)
        if self.flow:
            return self.ratio * x + scaled
        return x + scaled


def scale_noise(noise: torch.Tensor, s_noise: float, amount: torch.Tensor) -> torch.Tensor:
    """``noise * s_noise * amount``, skipping the exact multiplication by s_noise == 1."""
    if s_noise == 1.0:
        return noise * amount
    return noise * s_noise * amount


class Churned:
    """Karras et al. (2022) Algorithm 2 evaluation: optional "churn" (raise sigma_i to sigma_hat with
    fresh noise), the model call, the ODE derivative and the callback. Churn is off by default."""

    __slots__ = ("st", "s_churn", "s_tmin", "s_tmax", "s_noise", "noise")

    def __init__(self, st: Stepper, x: torch.Tensor, noise_sampler: NoiseSampler | None, s_churn: float,
                 s_tmin: float, s_tmax: float, s_noise: float) -> None:
        self.st, self.s_churn, self.s_tmin, self.s_tmax, self.s_noise = st, s_churn, s_tmin, s_tmax, s_noise
        self.noise = st.noise_sampler(x, noise_sampler) if s_churn > 0 else None

    def evaluate(self, x: torch.Tensor, sigmas: torch.Tensor, i: int):
        """Returns (x, sigma_hat, denoised, d) at step i."""
        st = self.st
        gamma = 0.0
        if self.s_churn > 0 and self.s_tmin <= st.sig[i] <= self.s_tmax:
            gamma = min(self.s_churn / (len(st.sig) - 1), 2 ** 0.5 - 1)
        sigma_hat = sigmas[i]
        if gamma > 0:
            sigma_hat = sigmas[i] * (gamma + 1)
            eps = self.noise(sigmas[i], sigma_hat) * self.s_noise
            x = x + eps * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
        denoised = st(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        st.report(i, x, sigmas[i], denoised, sigma_hat)
        return x, sigma_hat, denoised, d


def lambdas(model: Any):
    """(lambda_fn, sigma_fn) for the model's half log-SNR, flow-aware."""
    flow = is_flow(model)
    return ((lambda s: s.logit().neg()) if flow else (lambda s: s.log().neg()),
            (lambda l: l.neg().sigmoid()) if flow else (lambda l: l.neg().exp()))


def t_fn(sigma: torch.Tensor) -> torch.Tensor:
    """DPM-Solver time t = -log(sigma) (for VE/EPS models)."""
    return sigma.log().neg()


def sigma_fn(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


def phi_1(h: torch.Tensor) -> torch.Tensor:
    """h * phi_1(h) = e^h - 1, the first exponential-integrator weight."""
    return torch.expm1(h)


def phi_2(h: torch.Tensor) -> torch.Tensor:
    """h * phi_2(h) = (e^h - 1 - h) / h."""
    return (torch.expm1(h) - h) / h


def bind_default_noise(x: torch.Tensor, noise_sampler, seed: int | None) -> NoiseSampler:
    """The per-step normal noise a sampler draws: from the run's :class:`NoiseSource`, a given callable, or
    (neither) ComfyUI's default generator seeded with ``seed``."""
    if noise_sampler is None:
        return default_noise_sampler(x, seed=seed)
    if isinstance(noise_sampler, NoiseSource):
        return noise_sampler.default(x)
    return noise_sampler


def brownian_noise(x: torch.Tensor, sigmas: torch.Tensor, seed: int | None, cpu_tree: bool,
                   source: str = "brownian", noise_sampler=None) -> NoiseSampler:
    """The SDE samplers' noise: from the run's :class:`NoiseSource` or a given callable; else ComfyUI's
    Brownian tree over the run's positive sigma range, or (``source="fast"``) the opt-in device-side source
    with the same statistics."""
    if isinstance(noise_sampler, NoiseSource):
        return noise_sampler.brownian(x, sigmas, cpu_tree)
    if noise_sampler is not None:
        return noise_sampler
    if source == "fast":
        return FastBrownianNoiseSampler(x, seed)
    if source != "brownian":
        raise ValueError(f"noise_source: unknown source {source!r}; allowed: brownian, fast")
    positive = sigmas[sigmas > 0]
    return BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=seed, cpu=cpu_tree)


def sde_exp_step(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor,
                 h: torch.Tensor, h_eta: torch.Tensor, alpha_t: torch.Tensor, eta: float) -> torch.Tensor:
    """First-order DPM-Solver++ SDE step in data prediction (Lu et al. 2022, arXiv:2211.01095)."""
    decay = (-h).exp() if eta == 1.0 else (-h * eta).exp()  # -h * 1.0 is -h exactly
    return sigma_next / sigma * decay * x + alpha_t * (-h_eta).expm1().neg() * denoised


def sde_noise(x: torch.Tensor, noise: NoiseSampler, sigma: torch.Tensor, sigma_next: torch.Tensor,
              h: torch.Tensor, eta: float, s_noise: float) -> torch.Tensor:
    """Add the noise that keeps a DPM-Solver++ SDE step on the marginals: sigma' * sqrt(1 - e^(-2 h eta))."""
    if eta > 0 and s_noise > 0:
        if isinstance(noise, FastBrownianNoiseSampler):  # not ComfyUI's numbers anyway: one fused scale
            return x + noise(sigma, sigma_next) * (sigma_next * (-2 * h * eta).expm1().neg().sqrt() * s_noise)
        keep = (-2 * h).expm1() if eta == 1.0 else (-2 * h * eta).expm1()
        scaled = noise(sigma, sigma_next) * sigma_next * keep.neg().sqrt()
        x = x + (scaled if s_noise == 1.0 else scaled * s_noise)  # * 1.0 is exact: skip that latent pass
    return x


def lcm_renoise(model: Any, x: torch.Tensor, sigma_next: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Put a clean estimate back on the noise level sigma_next (consistency-model multistep)."""
    return model_sampling_of(model).noise_scaling(sigma_next, noise, x)


INF = math.inf
