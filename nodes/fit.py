"""Fit Schedule (Stepwise) and Fit Solver (Stepwise): SIGMAS (and a SAMPLER) fitted to the connected model, prompt
and sampler (``sampling.fit``, ``sampling.fitted_solver``).

The model is called through the same path as a sampler node (inside ComfyUI: ComfyUI's guider, so ControlNet,
hooks and masks apply), on a small calibration batch of the latent's shape drawn from ``calibration_seed``, within a
budget of model calls; the host's progress bar counts them and its interrupt stops a fit within one call. Fits are
cached on everything that affects them.
"""
from __future__ import annotations

import torch

from ..host import SCHEDULE_POINTS, current_host, plot_summary
from ..host.api import remember_model_sampling
from ..host.profile import sampler_names
from ..sampling.cache import ResultCache
from ..sampling.fit import FITTABLE_SAMPLERS, fit_schedule_report
from ..sampling.fitted_solver import BASE_SOLVERS, fit_solver
from ..sampling.registry import SamplerSpec
from ..workflows.widgets import check_widgets
from .ksampler import CFG_SPEC

__all__ = ["StepwiseFitSchedule", "StepwiseFitSolver", "FIT_CACHE"]

FIT_CACHE = ResultCache(max_entries=32, max_bytes=1 << 20)


def fittable_names() -> list[str]:
    """The samplers a schedule can be fitted for, core's order first."""
    names = sampler_names()
    return [n for n in names if n in FITTABLE_SAMPLERS] + [n for n in FITTABLE_SAMPLERS if n not in names]


def _fit_inputs(what: str) -> dict:
    """The inputs both fit nodes open with: what is fitted to (model, prompts, latent shape) and the cfg it runs at."""
    return {
        "model": ("MODEL", {"tooltip": f"The model the {what} is fitted to."}),
        "positive": ("CONDITIONING", {"tooltip": "The prompt it is fitted for."}),
        "negative": ("CONDITIONING", {"tooltip": "The negative prompt (with cfg, as the sampler will use it)."}),
        "latent_image": ("LATENT", {"tooltip": "Its shape (not its content) sizes the calibration batch."}),
        "cfg": CFG_SPEC,
    }


def _calibration(backend, shape: tuple, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise, an empty latent) for a calibration batch of ``shape``."""
    latent = backend.fix_empty_latent_channels(torch.zeros(shape))
    noise = torch.randn(tuple(latent.shape), generator=torch.Generator().manual_seed(int(seed)))
    return noise, latent


def _in_context(host, model, backend, positive, negative, shape, cfg, seed, fit, total: int, unique_id):
    """Run ``fit(denoiser, unit_noise, extra_args, interrupt, progress)`` inside the model's own sampling context (a
    sampler node's path: ComfyUI's guider inside ComfyUI), with the host's progress and interrupt."""
    noise, latent = _calibration(backend, shape, seed)
    ms = backend.model_sampling
    found: dict = {}
    callback, _ = host.step_callback(model, total, None, unique_id)

    def progress(calls: int, of: int, prediction: torch.Tensor) -> None:
        if callback is not None:
            callback(calls - 1, prediction, prediction, of)

    def fitting_sampler(inner, x, sigmas, extra_args=None, callback=None, disable=None, **_):
        """Runs the fit inside the model's own sampling context, then returns x unchanged."""
        found["result"] = fit(inner, x / float(sigmas[0]), extra_args or {}, host.check_interrupt, progress)
        return x

    backend.sample(noise, latent, fitting_sampler, torch.tensor([float(ms.sigma_max), 0.0]), positive, negative, cfg)
    return found["result"]


def _prepare(model, latent_image, calibration_batch: int, unique_id):
    """(host, backend, model sampling, calibration shape) for a fit node."""
    if not isinstance(latent_image, dict) or not isinstance(latent_image.get("samples"), torch.Tensor):
        raise ValueError("latent_image: expected a LATENT")
    host = current_host()
    backend = host.backend(model)
    remember_model_sampling(unique_id, backend.model_sampling)
    return host, backend, backend.model_sampling, (int(calibration_batch),) + tuple(latent_image["samples"].shape[1:])


class StepwiseFitSchedule:
    """A schedule fitted to this model and prompt for one sampler and step count (few-step sampling)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            **_fit_inputs("schedule"),
            "steps": ("INT", {"default": 8, "min": 1, "max": 200, "tooltip": "The steps the fitted schedule has."}),
            "sampler_name": (fittable_names(), {"default": "uni_pc", "tooltip": "The sampler the schedule is fitted "
                                                "for (deterministic samplers with a fixed step list)."}),
            "calibration_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                         "tooltip": "Seed of the calibration noise."}),
            "teacher_steps": ("INT", {"default": 80, "min": 8, "max": 280, "tooltip": "Steps of the accurate run "
                                      "the fit aims at (denoiser calls, out of a budget of 300)."}),
        }, "optional": {
            "calibration_batch": ("INT", {"default": 4, "min": 1, "max": 256, "forceInput": True,
                                          "tooltip": "Draws per denoiser call (more: a fit that generalises better, "
                                                     "slower calls); default 4."}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "fit"
    CATEGORY = "stepwise/schedules"
    DESCRIPTION = ("A schedule fitted to the model and prompt for few-step sampling (teacher trajectory + search "
                   "within 300 model calls); plotted against karras.")

    def fit(self, model, positive, negative, latent_image, cfg, steps, sampler_name, calibration_seed, teacher_steps,
            calibration_batch=4, unique_id=None):
        check_widgets(type(self), {"cfg": cfg, "steps": steps, "sampler_name": sampler_name,
                                   "calibration_seed": calibration_seed, "teacher_steps": teacher_steps,
                                   "calibration_batch": calibration_batch})
        host, backend, ms, shape = _prepare(model, latent_image, calibration_batch, unique_id)
        key = ("fit", model, positive, negative, shape, float(cfg), int(steps), sampler_name, int(calibration_seed),
               int(teacher_steps))
        hit = FIT_CACHE.get(key)
        if hit is None:
            def run(denoiser, noise, extra_args, interrupt, progress):
                return fit_schedule_report(denoiser, noise, steps, sampler_name, sigma_max=float(ms.sigma_max),
                                           sigma_min=float(ms.sigma_min), teacher_steps=teacher_steps,
                                           extra_args=extra_args, interrupt=interrupt, progress=progress)

            r = _in_context(host, model, backend, positive, negative, shape, cfg, calibration_seed, run, 300,
                            unique_id)
            report = {"calls": r.calls, "seconds": round(r.seconds, 3), "shape": r.shape,
                      "sigma_last": round(r.sigma_last, 5), "calibration_rmse": r.calibration_rmse,
                      "candidates": r.candidates, "sampler": sampler_name}
            hit = (r.sigmas, report)
            FIT_CACHE.put(key, hit)
        sigmas, report = hit
        sigmas = sigmas.clone()
        return host.ui((sigmas,), {"stepwise": [{"sampled": False, "fit": report,
                                                 **plot_summary(sigmas, SCHEDULE_POINTS)}]})


class StepwiseFitSolver:
    """A solver fitted to this model and prompt: its steps (SIGMAS) and each step's coefficients (SAMPLER)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            **_fit_inputs("solver"),
            "steps": ("INT", {"default": 8, "min": 1, "max": 50, "tooltip": "Model calls of the fitted solver."}),
            "base": (list(BASE_SOLVERS), {"default": "dpmpp_2m", "tooltip": "The solver whose coefficients the fit "
                                          "starts from (its order)."}),
            "calibration_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                         "tooltip": "Seed of the calibration noise."}),
            "max_calls": ("INT", {"default": 1000, "min": 100, "max": 5000,
                                  "tooltip": "The fit's budget of model calls, teacher included."}),
        }, "optional": {
            "calibration_batch": ("INT", {"default": 8, "min": 2, "max": 256, "forceInput": True,
                                          "tooltip": "Draws per model call: half fit the solver, half judge it "
                                                     "(default 8)."}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("SAMPLER", "SIGMAS")
    RETURN_NAMES = ("sampler", "sigmas")
    FUNCTION = "fit"
    CATEGORY = "stepwise/schedules"
    DESCRIPTION = ("A few-step solver fitted to the model and prompt: the steps (a dynamic program's and Karras-like "
                   "candidates on a teacher's trajectory) and each step's coefficients (least squares), kept only "
                   "where they beat karras on held-out draws. Connect both outputs to a sampler node (or core's "
                   "SamplerCustom).")

    def fit(self, model, positive, negative, latent_image, cfg, steps, base, calibration_seed, max_calls,
            calibration_batch=8, unique_id=None):
        check_widgets(type(self), {"cfg": cfg, "steps": steps, "base": base, "calibration_seed": calibration_seed,
                                   "max_calls": max_calls, "calibration_batch": calibration_batch})
        host, backend, ms, shape = _prepare(model, latent_image, calibration_batch, unique_id)
        key = ("fit-solver", model, positive, negative, shape, float(cfg), int(steps), base, int(calibration_seed),
               int(max_calls))
        solver = FIT_CACHE.get(key)
        if solver is None:
            def run(denoiser, noise, extra_args, interrupt, progress):
                return fit_solver(denoiser, noise, steps, base, sigma_max=float(ms.sigma_max),
                                  sigma_min=float(ms.sigma_min), max_calls=max_calls, extra_args=extra_args,
                                  interrupt=interrupt, progress=progress)

            solver = _in_context(host, model, backend, positive, negative, shape, cfg, calibration_seed, run,
                                 max_calls, unique_id)
            FIT_CACHE.put(key, solver)
        spec = SamplerSpec("fitted", tuple(sorted(solver.options.items())))
        sigmas = solver.sigmas.clone()
        return host.ui((host.sampler_output(spec), sigmas),
                       {"stepwise": [{"sampled": False, "fit": {**solver.report, "solver": True},
                                      **plot_summary(sigmas, SCHEDULE_POINTS)}]})
