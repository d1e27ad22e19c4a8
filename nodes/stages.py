"""Stages (Stepwise): one denoising run handed from model to model (prompt to prompt, cfg to cfg) at switch points given
as a noise level, a step or a fraction of the schedule — Wan 2.2's high-/low-noise experts, an SDXL base -> refiner
hand-off, a prompt switch.

The node is the seamless chain of KSampler Advanced nodes it replaces, run inside one node: stage k runs steps
``[switch_{k-1}, switch_k)`` with its own model, conditioning and cfg, and hands the sampler's state (history, noise
stream, Brownian tree) to the next stage exactly as ``split_mode: seamless`` does, so the result equals that chain
bit for bit. A sigma switch point follows the rule of :func:`~..schedulers.plan.step_at_sigma`: the first step whose
sigma is below the boundary belongs to the next stage.
"""
from __future__ import annotations

from typing import Any

from ..host import current_host, plot_summary
from ..host.profile import combo_spec, sampler_names, scheduler_names
from ..sampling.seamless import STATE_KEY
from ..schedulers.plan import SWITCH_UNITS, plan_stages
from ..workflows.widgets import check_widgets
from .ksampler import CFG_SPEC, NOISE_SPEC, SAMPLER_SPEC, SEED_SPEC, SIGMAS_SPEC, STEPS_SPEC, build_request, \
    full_schedule, run_sampler

__all__ = ["StepwiseStages", "MAX_STAGES"]

MAX_STAGES = 4
UNTIL_SPEC = ("FLOAT", {"default": -1.0, "min": -1.0, "max": 10000.0, "step": 0.001, "round": False,
                        "tooltip": "Where this stage hands over to the next, in switch_unit (sigma: the first step "
                                   "whose noise level is below it switches; step; fraction of the steps). -1: no "
                                   "further stage."})
STAGE_CFG_SPEC = ("FLOAT", {"default": -1.0, "min": -1.0, "max": 100.0, "step": 0.1, "round": 0.01,
                            "tooltip": "This stage's cfg; -1 keeps the previous stage's."})


class StepwiseStages:
    """One run in up to four stages, each with its own model, prompt and cfg (see the module docstring)."""

    SEARCH_ALIASES = ["stages", "moe", "wan 2.2", "two experts", "refiner", "switch model", "high noise low noise",
                      "prompt switch", "model switch"]

    @classmethod
    def INPUT_TYPES(cls):
        optional: dict[str, Any] = {}
        for k in range(2, MAX_STAGES + 1):
            optional[f"model_{k}"] = ("MODEL", {"tooltip": f"Stage {k}'s model (unconnected: stage {k - 1}'s)."})
            optional[f"positive_{k}"] = ("CONDITIONING", {"tooltip": f"Stage {k}'s positive prompt (unconnected: "
                                                                     f"stage {k - 1}'s)."})
            optional[f"negative_{k}"] = ("CONDITIONING", {"tooltip": f"Stage {k}'s negative prompt (unconnected: "
                                                                     f"stage {k - 1}'s)."})
            optional[f"cfg_{k}"] = STAGE_CFG_SPEC
            if k < MAX_STAGES:
                optional[f"until_{k}"] = UNTIL_SPEC
        optional.update({"noise": NOISE_SPEC, "sigmas": SIGMAS_SPEC, "sampler": SAMPLER_SPEC})
        until_1 = (UNTIL_SPEC[0], {**UNTIL_SPEC[1], "default": 0.875,
                                   "tooltip": "Where stage 1 hands over to stage 2, in switch_unit (sigma: the first "
                                              "step whose noise level is below it switches; Wan 2.2 publishes 0.875 "
                                              "for text-to-video, 0.9 for image-to-video). -1: one stage."})
        return {"required": {
            "model": ("MODEL", {"tooltip": "Stage 1's model (e.g. the high-noise expert)."}),
            "seed": SEED_SPEC,
            "steps": STEPS_SPEC,
            "cfg": CFG_SPEC,
            "sampler_name": combo_spec(sampler_names(), {"tooltip": "The sampling algorithm (one run across stages)."}),
            "scheduler": combo_spec(scheduler_names(), {"tooltip": "How the noise levels are spaced over the steps."}),
            "positive": ("CONDITIONING", {"tooltip": "Stage 1's positive prompt."}),
            "negative": ("CONDITIONING", {"tooltip": "Stage 1's negative prompt."}),
            "latent_image": ("LATENT", {"tooltip": "The latent to denoise (images or video)."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "How much of the schedule to run (as KSampler's denoise)."}),
            "switch_unit": (list(SWITCH_UNITS), {"default": "sigma",
                                                 "tooltip": "How the until_k switch points are given: a noise level "
                                                            "(sigma), a step number, or a fraction of the steps."}),
            "until_1": until_1,
        }, "optional": optional, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "stepwise/sampling"
    DESCRIPTION = ("One sampling run in up to four stages, each with its own model, prompts and cfg, switched at a "
                   "noise level, a step or a fraction (Wan 2.2 experts, base -> refiner, prompt switches); equals the "
                   "seamless chain of KSampler Advanced nodes, bit for bit.")

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
               switch_unit, until_1, unique_id=None, noise=None, sigmas=None, sampler=None, **stage_inputs):
        widgets = {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler_name, "scheduler": scheduler,
                   "denoise": denoise}
        check_widgets(type(self), {**widgets, "switch_unit": switch_unit, "until_1": until_1,
                                   **{k: v for k, v in stage_inputs.items() if k.startswith(("until_", "cfg_"))}})
        unknown = sorted(k for k in stage_inputs if k.rsplit("_", 1)[0] not in ("model", "positive", "negative", "cfg",
                                                                                "until"))
        if unknown:
            raise ValueError(f"{unknown[0]}: not an input of Stages (Stepwise)")
        host = current_host()
        request = build_request({**widgets, "split_mode": "seamless"}, noise=noise, sigmas=sigmas, sampler=sampler)
        full = full_schedule(model, request)
        until = []
        for k in range(1, MAX_STAGES):
            value = until_1 if k == 1 else stage_inputs.get(f"until_{k}", -1.0)
            if value is None or value < 0:
                later = [j for j in range(k + 1, MAX_STAGES) if (stage_inputs.get(f"until_{j}") or -1) >= 0]
                if later:
                    raise ValueError(f"until_{later[0]}: set while until_{k} is -1; stages switch in order")
                break
            until.append(float(value))
        ranges = plan_stages(full, until, switch_unit)
        stage = {"model": model, "positive": positive, "negative": negative, "cfg": float(cfg)}
        latent, first, infos, table = latent_image, True, [], []
        for k, (start, end) in enumerate(ranges, start=1):
            if k > 1:
                for name in ("model", "positive", "negative"):
                    if stage_inputs.get(f"{name}_{k}") is not None:
                        stage[name] = stage_inputs[f"{name}_{k}"]
                own_cfg = stage_inputs.get(f"cfg_{k}")
                if own_cfg is not None and own_cfg >= 0:
                    stage["cfg"] = float(own_cfg)
            last = k == len(ranges)
            table.append({"stage": k, "start": start, "end": end, "cfg": stage["cfg"],
                          "model": _label(stage["model"], k, stage_inputs, "model"),
                          "prompt": _label(stage["positive"], k, stage_inputs, "positive")})
            if end <= start and not last:
                continue  # an empty stage: its switch point is where the previous one's is
            part = request.replace(cfg=stage["cfg"], add_noise=first, start_at_step=start,
                                   end_at_step=10000 if last else end, return_with_leftover_noise=not last)
            (latent,), info = run_sampler(stage["model"], part, stage["positive"], stage["negative"], latent,
                                          unique_id=unique_id)
            infos.append(info)
            first = False
        out = dict(latent)
        out.pop(STATE_KEY, None)
        summary = {"sampled": any(i.sampled for i in infos), **plot_summary(full), "stages": table,
                   "switch_unit": switch_unit}
        notes = [n for i in infos for n in i.notes]
        if notes:
            summary["notes"] = notes
        recipes = [i.recipe for i in infos if i.recipe is not None]
        ui = {"stepwise": [summary]}
        if recipes:
            from ..workflows.recipe import recipe_document

            ui["stepwise_recipe"] = [recipe_document([dict(r) for r in recipes], None, None)]
        return host.ui((out,), ui)


def _label(value: Any, k: int, stage_inputs: dict, name: str) -> str:
    """Which input a stage uses, for the plot ("model" or "model_2")."""
    for j in range(k, 1, -1):
        if stage_inputs.get(f"{name}_{j}") is not None:
            return f"{name}_{j}"
    return name
