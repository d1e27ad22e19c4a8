"""Accuracy at few model calls, fair by construction: latent RMSE against a long reference run from the same noise, at
NFE 4, 5, 6, 8, 10, 15, on ``stepwise-tiny`` (held-out seeds *and* prompts), the demo's exact mixture and two
Gaussian mixtures (one never used while the methods were developed).

Per model and NFE:
- **core's best pair**: core's deterministic samplers x core's nine schedules + AYS + GITS (core has those nodes),
  the pair with the lowest RMSE on the *calibration* draws, then judged on the held-out draws;
- **Stepwise's best pair**: the same pairs plus Stepwise's own (res_2s/res_3s, the extra schedules, a fitted
  schedule, the fitted solver), picked the same way on the calibration draws, judged on the held-out draws.
Fits see only the calibration draws. Wall time per image includes the fit amortised over 1, 10 and 100 images.
"""
from __future__ import annotations

import math
import time

import torch

from stepwise_sampler.sampling import SAMPLERS
from stepwise_sampler.sampling.fit import fit_schedule_report
from stepwise_sampler.sampling.fitted_solver import fit_solver
from stepwise_sampler.sampling.registry import discards_penultimate
from stepwise_sampler.schedulers import DiscreteModelSampling, ksampler_sigmas
from stepwise_sampler.schedulers.extra import schedule_sigmas

MS = DiscreteModelSampling.scaled_linear()
SIGMA_MAX, SIGMA_MIN = float(MS.sigma_max), float(MS.sigma_min)
#: core's deterministic samplers with a fixed step list
CORE_SAMPLERS = ["euler", "heun", "heunpp2", "dpm_2", "lms", "dpmpp_2m", "ipndm", "ipndm_v", "deis", "res_multistep",
                 "gradient_estimation", "uni_pc", "uni_pc_bh2"]
CORE_SCHEDULES = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                  "linear_quadratic", "kl_optimal", "ays_sd1", "gits"]
#: on stepwise-tiny (a network call per draw costs ~1000x a mixture's) the pair search keeps the strongest of core's
#: multistep and single-step samplers
TINY_CORE_SAMPLERS = ["euler", "heun", "lms", "dpmpp_2m", "ipndm", "deis", "res_multistep", "uni_pc"]
OUR_SAMPLERS = ["res_2s", "res_3s"]
OUR_SCHEDULES = ["polyexponential", "bong_tangent", "laplace", "beta57"]
FITTED_BASES = ["dpmpp_2m", "res_multistep", "dpmpp_3m"]
NFES = [4, 5, 6, 8, 10, 15]


class GaussianMixture:
    """The exact denoiser E[x0 | x] of a Gaussian mixture with isotropic components (Tweedie / posterior mean)."""

    def __init__(self, dim: int, components: int, seed: int, spread: float = 2.0, std: tuple = (0.2, 0.6)) -> None:
        g = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.mu = torch.randn(components, dim, generator=g, dtype=torch.float64) * spread
        lo, hi = std
        self.var = (lo + (hi - lo) * torch.rand(components, generator=g, dtype=torch.float64)) ** 2
        self.log_weight = torch.log_softmax(torch.randn(components, generator=g, dtype=torch.float64) * 0.5, 0)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        z = x.reshape(x.shape[0], -1).double()
        v = self.var[None, :] + sigma.reshape(-1, 1).double() ** 2
        d2 = ((z[:, None, :] - self.mu[None]) ** 2).sum(-1)
        w = torch.softmax(self.log_weight[None] - d2 / (2 * v) - 0.5 * self.dim * torch.log(v), 1)
        post = self.mu[None] + (self.var[None, :, None] / v[:, :, None]) * (z[:, None, :] - self.mu[None])
        return (w[:, :, None] * post).sum(1).reshape(x.shape).to(x.dtype)


def _demo_denoiser(batch: int):
    from stepwise_sampler.models.mixture import DemoModel
    from stepwise_sampler.models.world import DemoCLIP
    from stepwise_sampler.sampling.denoiser import CFGDenoiser, parse_conditioning

    model, clip = DemoModel(), DemoCLIP(notice=lambda m: None)
    pos, neg = clip.encode("red circle"), clip.encode("")
    return CFGDenoiser(model, parse_conditioning(pos, "positive"), parse_conditioning(neg, "negative"), 1.0,
                       torch.zeros(batch, 4, 8, 8), None, None)


def _tiny_prompts(n: int, held_out: bool) -> list[str]:
    """Calibration and judged prompts never overlap: the judged ones use the other half of the colour x background
    combinations (and every shape)."""
    from stepwise_sampler.models import world

    combos = [(c, b) for c in world.COLOURS for b in world.BACKGROUNDS if c != b]
    half = combos[1::2] if held_out else combos[0::2]
    return [f"{c} {world.SHAPES[i % len(world.SHAPES)]} on {b} background"
            for i, (c, b) in enumerate(half[k % len(half)] for k in range(n))]


def models(judged: int, calibration: int, quick: bool):
    """name -> (judged denoiser, calibration denoiser, shape of one draw)."""
    from stepwise_sampler.models.tiny import load_network, prompt_denoiser

    net, _ = load_network()
    gm_a = GaussianMixture(32, 12, seed=0)
    gm_b = GaussianMixture(48, 20, seed=123, spread=1.5, std=(0.1, 0.8))  # never seen while developing the fits
    side = 16 if quick else 32
    return {
        f"stepwise-tiny ({side * 8}x{side * 8}, cfg 5, held-out seeds and prompts)": (
            prompt_denoiser(net, _tiny_prompts(judged, True)), prompt_denoiser(net, _tiny_prompts(calibration, False)),
            (4, side, side)),
        "demo mixture (8x8 latent, exact)": (_demo_denoiser(judged), _demo_denoiser(calibration), (4, 8, 8)),
        "GMM A (32-d, 12 components)": (gm_a, gm_a, (32, 1, 1)),
        "GMM B (48-d, 20 components, unseen)": (gm_b, gm_b, (48, 1, 1)),
    }


class _Count:
    def __init__(self, fn) -> None:
        self.fn, self.n = fn, 0

    def __call__(self, x, sigma, **kw):
        self.n += 1
        return self.fn(x, sigma, **kw)


def _run(den, noise, sigmas, sampler):
    """(samples, model calls, seconds); ``sampler`` is a name or a function."""
    fn = SAMPLERS[sampler] if isinstance(sampler, str) else sampler
    c = _Count(den)
    start = time.perf_counter()
    out = fn(c, noise * sigmas[0], sigmas.clone(), extra_args={}, callback=None, disable=True)
    return out, c.n, time.perf_counter() - start


def _calls_per_steps(name: str, steps: int) -> int:
    sig = ksampler_sigmas(MS, "karras", discards_penultimate(name), steps)
    return _run(lambda x, s, **k: x * 0, torch.randn(1, 1, 2, 2), sig, name)[1]


def _steps_for(name: str, nfe: int) -> int | None:
    """The largest step count whose model calls stay within ``nfe``."""
    best = None
    for steps in range(1, nfe + 1):
        if _calls_per_steps(name, steps) <= nfe:
            best = steps
        else:
            break
    return best


def _schedule(name: str, sampler: str, steps: int) -> torch.Tensor:
    core = ("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
            "kl_optimal")
    if name in core:
        return ksampler_sigmas(MS, name, discards_penultimate(sampler), steps)
    return schedule_sigmas(MS, name, steps)


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    v = (a.float() - b.float()).pow(2).mean().sqrt().item()
    return v if math.isfinite(v) else float("inf")


def suite(quick: bool = False, progress=print) -> dict:
    judged, calibration = (8, 8) if quick else (32, 16)
    all_core_samplers = ["euler", "dpmpp_2m", "uni_pc", "deis"] if quick else CORE_SAMPLERS
    core_schedules = ["karras", "exponential", "ays_sd1", "simple"] if quick else CORE_SCHEDULES
    our_samplers = ["res_2s"] if quick else OUR_SAMPLERS
    our_schedules = ["polyexponential", "bong_tangent"] if quick else OUR_SCHEDULES
    bases = ["dpmpp_2m"] if quick else FITTED_BASES
    nfes = [5, 10] if quick else NFES
    reference_steps = 100 if quick else 200
    out = {"judged_draws": judged, "calibration_draws": calibration,
           "reference": f"dpmpp_2m, {reference_steps} karras steps, the same noise", "models": {}}
    steps_of = {(s, n): _steps_for(s, n) for s in all_core_samplers + our_samplers for n in nfes}
    for model_name, (den, den_cal, shape) in models(judged, calibration, quick).items():
        tiny = model_name.startswith("stepwise-tiny")
        core_samplers = [s for s in all_core_samplers if s in TINY_CORE_SAMPLERS] if tiny and not quick \
            else all_core_samplers
        n_judged, n_cal = (16, 8) if tiny and not quick else (judged, calibration)
        noise = torch.randn((n_judged, *shape), generator=torch.Generator().manual_seed(1))
        cal = torch.randn((n_cal, *shape), generator=torch.Generator().manual_seed(7))
        ref_sigmas = ksampler_sigmas(MS, "karras", False, reference_steps)
        ref, _, ref_seconds = _run(den, noise, ref_sigmas, "dpmpp_2m")
        cal_ref, _, _ = _run(den_cal, cal, ref_sigmas, "dpmpp_2m")
        cells = {}
        for nfe in nfes:
            rows = []
            for sampler in core_samplers + our_samplers:
                steps = steps_of[(sampler, nfe)]
                if steps is None:
                    continue
                for sched in core_schedules + our_schedules:
                    sigmas = _schedule(sched, sampler, steps)
                    on_cal, used, seconds = _run(den_cal, cal, sigmas, sampler)
                    rows.append({"sampler": sampler, "schedule": sched, "steps": steps, "calls": used,
                                 "cal_rmse": _rmse(on_cal, cal_ref), "sigmas": sigmas, "fn": sampler,
                                 "core": sampler in core_samplers and sched in core_schedules,
                                 "fit_calls": 0, "fit_seconds": 0.0})
            for base in bases:  # the fitted solver: one call per step, steps = nfe
                start = time.perf_counter()
                solver = fit_solver(den_cal, cal, nfe, base, sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN,
                                    max_calls=1000)
                fit_seconds = time.perf_counter() - start
                on_cal, used, _ = _run(den_cal, cal, solver.sigmas, solver.sampler)
                rows.append({"sampler": f"fitted solver ({base})", "schedule": "fitted", "steps": nfe, "calls": used,
                             "cal_rmse": _rmse(on_cal, cal_ref), "sigmas": solver.sigmas, "fn": solver.sampler,
                             "core": False, "fit_calls": solver.report["calls"], "fit_seconds": fit_seconds,
                             "fallback": solver.report["fallback"]})
            for sampler in ("dpmpp_2m", "uni_pc"):  # the fitted schedule (steps only)
                steps = steps_of.get((sampler, nfe))
                if steps is None:
                    continue
                start = time.perf_counter()
                fit = fit_schedule_report(den_cal, cal, steps, sampler, sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN)
                fit_seconds = time.perf_counter() - start
                on_cal, used, _ = _run(den_cal, cal, fit.sigmas, sampler)
                rows.append({"sampler": sampler, "schedule": "fitted schedule", "steps": steps, "calls": used,
                             "cal_rmse": _rmse(on_cal, cal_ref), "sigmas": fit.sigmas, "fn": sampler, "core": False,
                             "fit_calls": fit.calls, "fit_seconds": fit_seconds})
            core = min((r for r in rows if r["core"]), key=lambda r: r["cal_rmse"])
            ours = min(rows, key=lambda r: r["cal_rmse"])
            for r in (core, ours):  # judged on the held-out draws
                result, used, seconds = _run(den, noise, r["sigmas"], r["fn"])
                r["rmse"], r["seconds_per_image"] = _rmse(result, ref), seconds / n_judged
            cell = {"nfe": nfe, "core": _plain(core), "ours": _plain(ours),
                    "ratio": core["rmse"] / ours["rmse"] if ours["rmse"] > 0 else float("inf"),
                    "pairs_tried": len(rows), "core_pairs": sum(r["core"] for r in rows)}
            for images in (1, 10, 100):
                cell[f"ours_seconds_per_image_{images}"] = ours["seconds_per_image"] + ours["fit_seconds"] / images
            cell["core_seconds_per_image"] = core["seconds_per_image"]
            cells[nfe] = cell
            progress(f"accuracy {model_name} NFE {nfe}: core {core['sampler']}/{core['schedule']} {core['rmse']:.4g}"
                     f", ours {ours['sampler']}/{ours['schedule']} {ours['rmse']:.4g} -> {cell['ratio']:.2f}x")
        ratios = [c["ratio"] for c in cells.values() if math.isfinite(c["ratio"]) and c["ratio"] > 0]
        out["models"][model_name] = {"cells": cells, "reference_seconds": ref_seconds, "judged_draws": n_judged,
                                     "calibration_draws": n_cal, "core_samplers": core_samplers,
                                     "geometric_mean_ratio": math.exp(sum(map(math.log, ratios)) / len(ratios))
                                     if ratios else None}
    return out


def _plain(row: dict) -> dict:
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()
            if k not in ("sigmas", "fn")}


def timed(quick: bool, progress) -> dict:
    start = time.perf_counter()
    result = suite(quick, progress)
    result["seconds"] = time.perf_counter() - start
    return result
