"""Schedule (Stepwise): any of our schedules (core's nine with identical numbers, AYS, GITS, polyexponential,
laplace, vp, beta57, linear_quadratic with parameters) as SIGMAS for a ``sigmas`` socket or core's SamplerCustom."""
from __future__ import annotations

from ..host import SCHEDULE_POINTS, current_host, plot_summary
from ..host.api import remember_model_sampling
from ..schedulers.extra import SCHEDULE_NAMES, SCHEDULES, schedule_sigmas
from ..workflows.widgets import check_widgets

__all__ = ["StepwiseSchedule", "schedule_param_inputs"]


def schedule_param_inputs() -> dict:
    """Every schedule parameter as an optional input (a socket, so the node stays small; the tooltip names the
    schedules that read it). Unconnected: the defaults of core's scheduler nodes."""
    out: dict = {}
    for sched in SCHEDULES.values():
        for p in sched.params:
            if p.name in out:
                continue
            spec = {"default": p.default, "min": p.lo, "max": p.hi, "forceInput": True,
                    "tooltip": f"{p.tooltip} (default {p.default})"}
            if p.kind == "FLOAT":
                spec["step"] = p.step
            out[p.name] = (p.kind, spec)
    return out


class StepwiseSchedule:
    """A sigma schedule from a model's sampling description, including schedules core's combo does not list."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model whose sigma range/table the schedule uses."}),
            "schedule": (list(SCHEDULE_NAMES), {"default": "karras", "tooltip": "; ".join(
                f"{name}: {s.description}" for name, s in SCHEDULES.items())}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000, "tooltip": "The number of steps in the schedule."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "How much of the schedule to keep (below 1: its low-noise end, as "
                                             "KSampler's denoise)."}),
        }, "optional": schedule_param_inputs(), "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "make"
    CATEGORY = "stepwise/schedules"
    DESCRIPTION = "Sigmas of any Stepwise schedule, for a sampler node's sigmas input or core's SamplerCustom."

    def make(self, model, schedule, steps, denoise, unique_id=None, **params):
        check_widgets(type(self), {"schedule": schedule, "steps": steps, "denoise": denoise})
        host = current_host()
        ms = host.backend(model).model_sampling
        remember_model_sampling(unique_id, ms)
        sigmas = schedule_sigmas(ms, schedule, steps, denoise, **{k: v for k, v in params.items() if v is not None})
        return host.ui((sigmas,), {"stepwise": [{"sampled": False, **plot_summary(sigmas, SCHEDULE_POINTS)}]})
