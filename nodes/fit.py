"""Fit Schedule (Stepwise): SIGMAS fitted to the connected model, prompt and sampler (``schedulers.fit``).

The model is called through the same path as a sampler node (inside ComfyUI: ComfyUI's guider, so ControlNet,
hooks and masks apply), on a small calibration batch of the latent's shape drawn from ``calibration_seed``; the
fit uses at most 300 denoiser calls and is cached on everything that affects it, so changing only the steps
reuses the teacher trajectory.
"""
from __future__ import annotations

import torch

from ..schedulers.fit import FITTABLE_SAMPLERS, fit_schedule_report
from .bridge import as_backend, current_observer, is_comfy_model
from .cache import ResultCache
from .ksampler import CFG_SPEC
from .profile import sampler_names
from .schedule_api import remember_model_sampling
from .widgets import check_widgets

__all__ = ["StepwiseFitSchedule", "FIT_CACHE"]

FIT_CACHE = ResultCache(max_entries=32, max_bytes=1 << 20)


def fittable_names() -> list[str]:
    names = sampler_names()
    return [n for n in FITTABLE_SAMPLERS if n in names]


class StepwiseFitSchedule:
    """A schedule fitted to this model and prompt for one sampler and step count (few-step sampling)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image": ("LATENT", {"tooltip": "Its shape (not its content) sizes the calibration batch."}),
            "cfg": CFG_SPEC,
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
        if not isinstance(latent_image, dict) or not isinstance(latent_image.get("samples"), torch.Tensor):
            raise ValueError("latent_image: expected a LATENT")
        backend = as_backend(model)
        ms = backend.model_sampling
        remember_model_sampling(unique_id, ms)
        shape = (int(calibration_batch),) + tuple(latent_image["samples"].shape[1:])
        key = ("fit", model, positive, negative, shape, float(cfg), int(steps), sampler_name, int(calibration_seed),
               int(teacher_steps))
        hit = FIT_CACHE.get(key)
        if hit is None:
            hit = self._run(backend, positive, negative, shape, cfg, steps, sampler_name, calibration_seed,
                            teacher_steps, ms)
            FIT_CACHE.put(key, hit)
        sigmas, report = hit
        sigmas = sigmas.clone()
        observer = current_observer()
        if is_comfy_model(model) or (observer is not None and observer.want_ui):
            values = sigmas.tolist()
            return {"ui": {"stepwise": [{"sampled": False, "steps": len(values) - 1, "fit": report,
                                         "points": [[i, float(f"{v:.5g}")] for i, v in enumerate(values)]}]},
                    "result": (sigmas,)}
        return (sigmas,)

    @staticmethod
    def _run(backend, positive, negative, shape, cfg, steps, sampler_name, seed, teacher_steps, ms):
        generator = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(shape, generator=generator)
        latent = backend.fix_empty_latent_channels(torch.zeros(shape))
        if latent.shape != noise.shape:
            noise = torch.randn(tuple(latent.shape), generator=torch.Generator().manual_seed(int(seed)))
        sigma_max, sigma_min = float(ms.sigma_max), float(ms.sigma_min)
        found: dict = {}

        def fitting_sampler(model, x, sigmas, extra_args=None, callback=None, disable=None, **_):
            """Runs the fit inside the model's own sampling context, then returns x unchanged."""
            start = float(sigmas[0])
            found["result"] = fit_schedule_report(model, x / start, steps, sampler_name, sigma_max=sigma_max,
                                                  sigma_min=sigma_min, teacher_steps=teacher_steps,
                                                  extra_args=extra_args or {})
            return x

        sigmas = torch.tensor([sigma_max, 0.0])
        backend.sample(noise, latent, fitting_sampler, sigmas, positive, negative, cfg)
        r = found["result"]
        report = {"calls": r.calls, "seconds": round(r.seconds, 3), "shape": r.shape,
                  "sigma_last": round(r.sigma_last, 5), "calibration_rmse": r.calibration_rmse,
                  "candidates": r.candidates, "sampler": sampler_name}
        return r.sigmas, report
