"""Sampler (Stepwise): one of our samplers with its options, as a SAMPLER for a sampler node's ``sampler`` input."""
from __future__ import annotations

import inspect

from ..host import current_host
from ..host.profile import combo_spec, sampler_names
from ..sampling import SAMPLERS
from ..sampling.registry import NAMED_SAMPLERS
from ..sampling.registry import SamplerSpec
from ..workflows.widgets import check_widgets

__all__ = ["StepwiseSampler", "SamplerSpec", "SAMPLER_OPTIONS"]

#: option -> (type, spec, the sampler keywords it may set, in order of preference)
SAMPLER_OPTIONS = {
    "eta": ("FLOAT", {"min": 0.0, "max": 100.0, "step": 0.01,
                      "tooltip": "ancestral/SDE noise amount (sampler default if unconnected)"}, ("eta",)),
    "s_noise": ("FLOAT", {"min": 0.0, "max": 100.0, "step": 0.01, "tooltip": "noise scale"}, ("s_noise",)),
    "r": ("FLOAT", {"min": 0.01, "max": 1.0, "step": 0.01, "tooltip": "dpmpp_sde / seeds_2 midpoint ratio"}, ("r",)),
    "order": ("INT", {"min": 1, "max": 4, "tooltip": "lms order, ipndm/deis max order, sa_solver predictor order"},
              ("order", "max_order", "predictor_order")),
    "solver_type": ("STRING", {"tooltip": "dpmpp_2m_sde: midpoint | heun; seeds_2: phi_1 | phi_2"}, ("solver_type",)),
    "s_churn": ("FLOAT", {"min": 0.0, "max": 100.0, "step": 0.01, "tooltip": "euler/heun/dpm_2 churn"}, ("s_churn",)),
}


class StepwiseSampler:
    """Any Stepwise sampler with its options; unconnected options keep the sampler's defaults (core's numbers)."""

    @classmethod
    def INPUT_TYPES(cls):
        optional = {name: (kind, {**spec, "forceInput": True}) for name, (kind, spec, _) in SAMPLER_OPTIONS.items()}
        return {"required": {"sampler_name": combo_spec(list(dict.fromkeys(sampler_names() + list(NAMED_SAMPLERS))),
                                                        {"tooltip": "The sampling algorithm."})},
                "optional": optional}

    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "make"
    CATEGORY = "stepwise/sampling"
    DESCRIPTION = "A Stepwise sampler with options, for a sampler node's sampler input."

    def make(self, sampler_name, **options):
        check_widgets(type(self), {"sampler_name": sampler_name})
        if sampler_name not in NAMED_SAMPLERS:
            raise ValueError(f"sampler_name: {sampler_name!r} is not a Stepwise sampler; allowed: "
                             f"{', '.join(NAMED_SAMPLERS)}")
        params = inspect.signature(SAMPLERS[sampler_name]).parameters
        chosen = []
        for name, value in options.items():
            if value is None:
                continue
            if name not in SAMPLER_OPTIONS:
                raise ValueError(f"{name}: not a sampler option; allowed: {', '.join(SAMPLER_OPTIONS)}")
            kind, spec, keywords = SAMPLER_OPTIONS[name]
            key = next((k for k in keywords if k in params), None)
            if key is None:
                takes = sorted(set(params) & {k for *_, ks in SAMPLER_OPTIONS.values() for k in ks})
                raise ValueError(f"{name}: sampler {sampler_name!r} has no option {name!r}; it takes "
                                 f"{', '.join(takes) or 'none of these options'}")
            if kind == "STRING":
                if not isinstance(value, str):
                    raise ValueError(f"{name}: expected text, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not spec["min"] <= value <= spec["max"]:
                raise ValueError(f"{name}: {value!r} is outside the allowed range {spec['min']}..{spec['max']}")
            chosen.append((key, int(value) if kind == "INT" else value))
        return (current_host().sampler_output(SamplerSpec(sampler_name, tuple(sorted(chosen)))),)
