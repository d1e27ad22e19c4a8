"""Fitted solvers (steps and per-step coefficients, ``sampling.fit_solver``) and the Fit Solver (Stepwise) node: the
family holds the base samplers exactly, the fit beats Karras steps on held-out draws of a smooth model, it stays in
its budget, is deterministic, stops when interrupted, and runs in every sampler node through the sockets."""
from __future__ import annotations

import math

import pytest
import torch

from stepwise_sampler.sampling import SAMPLERS
from stepwise_sampler.sampling.fitted_solver import (FittedSolver, base_coefficients, dp_steps, fit_solver,
                                                     sample_fitted, teacher_run)
from stepwise_sampler.sampling.registry import discards_penultimate
from stepwise_sampler.schedulers import DiscreteModelSampling, ksampler_sigmas

MS = DiscreteModelSampling.scaled_linear()
SMAX, SMIN = float(MS.sigma_max), float(MS.sigma_min)


class SmoothMixture:
    """The exact denoiser of a mixture of two wide Gaussians in 64 dimensions (smooth: no mode flips)."""

    def __init__(self, dim: int = 64) -> None:
        g = torch.Generator().manual_seed(5)
        self.means = torch.randn(2, dim, generator=g, dtype=torch.float64) * 0.8
        self.var = 0.5
        self.calls = 0

    def __call__(self, x, sigma, **_):
        self.calls += 1
        flat = x.reshape(x.shape[0], -1).double()
        s2 = sigma.reshape(-1, 1).double() ** 2
        a = self.var + s2
        logits = -((flat[:, None, :] - self.means[None]) ** 2).sum(-1) / (2 * a)
        w = torch.softmax(logits, dim=1)
        post = self.means[None] + (self.var / a)[:, :, None] * (flat[:, None, :] - self.means[None])
        return (w[:, :, None] * post).sum(1).reshape(x.shape).to(x.dtype)


def _noise(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 4, 4, 4, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("base,sampler", [("dpmpp_2m", "dpmpp_2m"), ("euler", "euler")])
def test_the_family_holds_the_base_samplers(base, sampler):
    model = SmoothMixture()
    sigmas = ksampler_sigmas(MS, "karras", discards_penultimate(sampler), 7)
    x = _noise(3, 1) * sigmas[0]
    want = SAMPLERS[sampler](model, x, sigmas.clone(), extra_args={}, callback=None, disable=True)
    rows = base_coefficients(sigmas.tolist(), base)
    got = sample_fitted(model, x, sigmas, fitted_sigmas=tuple(sigmas.tolist()), coefficients=tuple(map(tuple, rows)),
                        base=base)
    assert (got - want).abs().max() < 1e-5


def test_third_order_rows_equal_dpm_solver_3m():
    model = SmoothMixture()
    sigmas = ksampler_sigmas(MS, "karras", False, 8)
    x = _noise(2, 3) * sigmas[0]
    want = SAMPLERS["dpmpp_3m_sde"](model, x, sigmas.clone(), extra_args={"seed": 0}, callback=None, disable=True,
                                    eta=0.0)
    rows = base_coefficients(sigmas.tolist(), "dpmpp_3m")
    got = sample_fitted(model, x, sigmas, fitted_sigmas=tuple(sigmas.tolist()), coefficients=tuple(map(tuple, rows)),
                        base="dpmpp_3m")
    assert (got - want).abs().max() < 1e-4


def test_the_step_program_finds_a_valid_path():
    model = SmoothMixture()
    teacher = teacher_run(model, _noise(4, 2), SMAX, SMIN, 60, {})
    for n in (1, 2, 5, 8):
        path = dp_steps(teacher, n, slice(0, 2))
        assert len(path) == n and path[0] == 0 and all(a < b for a, b in zip(path, path[1:]))


@pytest.fixture(scope="module")
def fitted() -> tuple[FittedSolver, SmoothMixture]:
    model = SmoothMixture()
    solver = fit_solver(model, _noise(16, 7), 6, "dpmpp_2m", sigma_max=SMAX, sigma_min=SMIN, max_calls=400)
    return solver, model


def test_a_fit_beats_karras_on_held_out_draws_within_its_budget(fitted):
    solver, model = fitted
    r = solver.report
    assert r["calls"] <= 400 and model.calls == r["calls"]
    assert r["fallback"] is None, r
    assert r["vs_karras"] > 2.0, r
    # judged again on draws the fit never saw
    noise = _noise(32, 99)
    teacher = teacher_run(SmoothMixture(), noise, SMAX, SMIN, 200, {})
    karras = ksampler_sigmas(MS, "karras", False, 6)
    plain = SAMPLERS["dpmpp_2m"](model, noise * karras[0], karras.clone(), extra_args={}, callback=None, disable=True)
    ours = solver.sampler(model, noise * solver.sigmas[0], solver.sigmas.clone(), {}, None, True)
    rmse = lambda a: float((a - teacher.target).pow(2).mean().sqrt())  # noqa: E731
    assert rmse(plain) / rmse(ours) > 2.0, (rmse(plain), rmse(ours))
    assert len(solver.sigmas) == 7 and float(solver.sigmas[-1]) == 0.0
    assert len(r["coefficient_moves"]) == 6


def test_a_fit_is_deterministic_and_runs_one_call_per_step(fitted):
    solver, _ = fitted
    again = fit_solver(SmoothMixture(), _noise(16, 7), 6, "dpmpp_2m", sigma_max=SMAX, sigma_min=SMIN, max_calls=400)
    assert torch.equal(again.sigmas, solver.sigmas) and again.coefficients == solver.coefficients
    model = SmoothMixture()
    solver.sampler(model, _noise(2, 1) * solver.sigmas[0], solver.sigmas.clone(), {}, None, True)
    assert model.calls == 6


def test_a_fit_stops_within_one_call_when_interrupted():
    model = SmoothMixture()
    seen = []

    def interrupt():
        if model.calls >= 25:
            raise InterruptedError("stop")

    with pytest.raises(InterruptedError):
        fit_solver(model, _noise(8, 1), 6, "dpmpp_2m", sigma_max=SMAX, sigma_min=SMIN, interrupt=interrupt,
                   progress=lambda calls, total, pred: seen.append(calls))
    assert model.calls == 25 and seen[-1] == 25


def test_slices_run_and_other_sigmas_are_refused(fitted):
    solver, model = fitted
    full = solver.sigmas
    x = _noise(2, 4) * full[0]
    first = solver.sampler(model, x, full[:4].clone(), {}, None, True)  # an early stop with leftover noise
    rest = solver.sampler(model, first, full[3:].clone(), {}, None, True)
    assert torch.isfinite(rest).all()
    with pytest.raises(ValueError, match="fitted with"):
        solver.sampler(model, x, ksampler_sigmas(MS, "karras", False, 6), {}, None, True)


@pytest.mark.parametrize("kw,name", [({"steps": 0}, "steps"), ({"sampler_name": "heun"}, "sampler_name"),
                                     ({"sigma_min": 0.0}, "sigma_min"), ({"max_calls": 10}, "max_calls"),
                                     ({"noise": torch.zeros(1, 4)}, "noise")])
def test_bad_arguments_are_named(kw, name):
    args = {"noise": _noise(4, 1), "steps": 5, "sampler_name": "dpmpp_2m", "sigma_max": SMAX, "sigma_min": SMIN, **kw}
    with pytest.raises(ValueError, match=name):
        fit_solver(SmoothMixture(), args.pop("noise"), args.pop("steps"), args.pop("sampler_name"), **args)


def test_the_node_feeds_a_sampler_node_through_both_sockets():
    from stepwise_sampler.host import Observer, observe
    from stepwise_sampler.models.mixture import DemoModel
    from stepwise_sampler.models.world import DemoCLIP
    from stepwise_sampler.nodes import StepwiseFitSolver, StepwiseKSampler, StepwiseKSamplerAdvanced

    model, clip = DemoModel(), DemoCLIP(notice=lambda m: None)
    pos, neg = clip.encode("red circle on white background"), clip.encode("")
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    with observe(Observer(want_ui=True)):
        out = StepwiseFitSolver().fit(model, pos, neg, latent, 3.0, 5, "dpmpp_2m", 0, 200, 4, unique_id="9")
    sampler, sigmas = out["result"]
    fit = out["ui"]["stepwise"][0]["fit"]
    assert fit["calls"] <= 200 and fit["solver"] and len(out["ui"]["stepwise"][0]["points"]) == 6
    (a,) = StepwiseKSampler().sample(model, 1, 20, 3.0, "euler", "karras", pos, neg, latent, sigmas=sigmas,
                                     sampler=sampler)
    (b,) = StepwiseKSamplerAdvanced().sample(model, "enable", 1, 20, 3.0, "euler", "karras", pos, neg, latent, 0,
                                             10000, "disable", sigmas=sigmas, sampler=sampler)
    assert torch.equal(a["samples"], b["samples"]) and torch.isfinite(a["samples"]).all()
