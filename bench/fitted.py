"""Accuracy at few steps: RMSE against a 2000-step reference at NFE 4..15, for every deterministic sampler with
core's nine schedules, AYS, GITS, and a schedule fitted to the model (``schedulers.fit``), on the demo model's exact
denoiser and on analytic Gaussian mixtures of our own (one of them never used while the method was developed)."""
from __future__ import annotations

import math
import time

import torch

from stepwise_sampler.sampling import SAMPLERS
from stepwise_sampler.schedulers import DiscreteModelSampling, ksampler_sigmas
from stepwise_sampler.schedulers.extra import schedule_sigmas
from stepwise_sampler.schedulers.fit import fit_schedule_report

MS = DiscreteModelSampling.scaled_linear()
SIGMA_MAX, SIGMA_MIN = float(MS.sigma_max), float(MS.sigma_min)
DETERMINISTIC = ["euler", "heun", "heunpp2", "dpm_2", "lms", "dpmpp_2m", "ipndm", "ipndm_v", "deis", "res_multistep",
                 "gradient_estimation", "uni_pc", "uni_pc_bh2"]
CORE = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
        "kl_optimal"]
EXTRA = ["ays_sd1", "gits"]
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
    from stepwise_sampler.sampling.denoiser import CFGDenoiser, parse_conditioning
    from stepwise_sampler.standalone.demo_model import DemoCLIP, DemoModel

    model, clip = DemoModel(), DemoCLIP(notice=lambda m: None)
    pos, neg = clip.encode("red circle"), clip.encode("")
    return CFGDenoiser(model, parse_conditioning(pos, "positive"), parse_conditioning(neg, "negative"), 1.0,
                       torch.zeros(batch, 4, 8, 8), None, None)


def models(draws: int, calibration: int):
    """name -> (denoiser for the evaluation batch, denoiser for the calibration batch, shape of one draw)."""
    gm_a = GaussianMixture(32, 12, seed=0)
    gm_b = GaussianMixture(48, 20, seed=123, spread=1.5, std=(0.1, 0.8))  # never seen while developing the fit
    return {
        "demo (8x8 latent, exact mixture denoiser)": (_demo_denoiser(draws), _demo_denoiser(calibration), (4, 8, 8)),
        "GMM A (32-d, 12 components)": (gm_a, gm_a, (32, 1, 1)),
        "GMM B (48-d, 20 components, unseen)": (gm_b, gm_b, (48, 1, 1)),
    }


class _Count:
    def __init__(self, fn) -> None:
        self.fn, self.n = fn, 0

    def __call__(self, x, sigma, **kw):
        self.n += 1
        return self.fn(x, sigma, **kw)


def _run(den, noise, sigmas, name):
    c = _Count(den)
    out = SAMPLERS[name](c, noise * sigmas[0], sigmas.clone(), extra_args={}, callback=None, disable=True)
    return out, c.n


def _calls_per_steps(name: str, steps: int) -> int:
    _, n = _run(lambda x, s, **k: x * 0, torch.randn(1, 1, 2, 2), ksampler_sigmas(MS, "karras", name, steps), name)
    return n


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
    if name in CORE:
        return ksampler_sigmas(MS, name, sampler, steps)
    return schedule_sigmas(MS, name, steps)


def suite(quick: bool = False, progress=print) -> dict:
    draws, calibration = (128, 64) if quick else (512, 256)
    samplers = ["euler", "dpmpp_2m", "uni_pc", "deis"] if quick else DETERMINISTIC
    nfes = [5, 10] if quick else NFES
    out = {"draws": draws, "calibration": calibration, "reference": "dpmpp_2m, 2000 karras steps, same noise",
           "models": {}}
    steps_of = {(s, n): _steps_for(s, n) for s in samplers for n in nfes}
    for model_name, (den, den_cal, shape) in models(draws, calibration).items():
        noise = torch.randn((draws, *shape), generator=torch.Generator().manual_seed(1))
        cal = torch.randn((calibration, *shape), generator=torch.Generator().manual_seed(7))
        ref_sigmas = ksampler_sigmas(MS, "karras", "dpmpp_2m", 400 if quick else 2000)
        ref, _ = _run(den, noise, ref_sigmas, "dpmpp_2m")
        cal_ref, _ = _run(den_cal, cal, ref_sigmas, "dpmpp_2m")
        rows = []
        for nfe in nfes:
            for sampler in samplers:
                steps = steps_of[(sampler, nfe)]
                if steps is None:
                    continue
                for sched in CORE + EXTRA + ["fitted"]:
                    fit = None
                    if sched == "fitted":  # no cache: every fit pays for its own teacher, as a first use would
                        fit = fit_schedule_report(den_cal, cal, steps, sampler, sigma_max=SIGMA_MAX,
                                                  sigma_min=SIGMA_MIN)
                        sigmas = fit.sigmas
                    else:
                        sigmas = _schedule(sched, sampler, steps)
                    result, used = _run(den, noise, sigmas, sampler)
                    on_cal, _ = _run(den_cal, cal, sigmas, sampler)
                    rmse = (result.float() - ref.float()).pow(2).mean().sqrt().item()
                    cal_rmse = (on_cal.float() - cal_ref.float()).pow(2).mean().sqrt().item()
                    row = {"nfe": nfe, "sampler": sampler, "schedule": sched, "steps": steps, "calls": used,
                           "rmse": rmse if math.isfinite(rmse) else None,
                           "cal_rmse": cal_rmse if math.isfinite(cal_rmse) else None}
                    if fit is not None:
                        row.update(fit_calls=fit.calls, fit_teacher_calls=fit.teacher_calls,
                                   fit_seconds=round(fit.seconds, 3), fit_shape=fit.shape)
                    rows.append(row)
            best = _best(rows, nfe)
            progress(f"accuracy {model_name} NFE {nfe}: core best {best['core']['sampler']}/{best['core']['schedule']} "
                     f"{best['core']['rmse']:.4g}, fitted best {best['fitted']['sampler']} {best['fitted']['rmse']:.4g}"
                     f" -> {best['ratio']:.2f}x; chosen on calibration draws: {best['ratio_cal']:.2f}x")
        out["models"][model_name] = {"rows": rows, "best": {nfe: _best(rows, nfe) for nfe in nfes}}
    return out


def _best(rows: list, nfe: int) -> dict:
    """The best pairs on the evaluation draws (as the target is stated), and the pairs a user would pick without
    them: lowest RMSE on the calibration draws, then judged on the evaluation draws."""
    ok = [r for r in rows if r["nfe"] == nfe and r["rmse"] is not None and r.get("cal_rmse") is not None]
    core = min((r for r in ok if r["schedule"] in CORE), key=lambda r: r["rmse"])
    fitted = min((r for r in ok if r["schedule"] == "fitted"), key=lambda r: r["rmse"])
    extra = min((r for r in ok if r["schedule"] in EXTRA), key=lambda r: r["rmse"], default=None)
    core_cal = min((r for r in ok if r["schedule"] in CORE), key=lambda r: r["cal_rmse"])
    fitted_cal = min((r for r in ok if r["schedule"] == "fitted"), key=lambda r: r["cal_rmse"])
    return {"core": core, "fitted": fitted, "extra": extra, "ratio": core["rmse"] / fitted["rmse"],
            "core_cal": core_cal, "fitted_cal": fitted_cal, "ratio_cal": core_cal["rmse"] / fitted_cal["rmse"]}


def timed(quick: bool, progress) -> dict:
    start = time.perf_counter()
    result = suite(quick, progress)
    result["seconds"] = time.perf_counter() - start
    return result
