"""The nodes mirror ComfyUI core's KSampler / KSamplerAdvanced widget for widget."""
from __future__ import annotations

import torch

import stepwise_sampler
from stepwise_sampler.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, StepwiseKSampler, \
    StepwiseKSamplerAdvanced
from stepwise_sampler.host import Observer, observe

# (name, type, default, min, max) exactly as core's nodes.py (v0.3.64) declares them
CORE_KSAMPLER = [
    ("model", "MODEL", None, None, None), ("seed", "INT", 0, 0, 0xFFFFFFFFFFFFFFFF),
    ("steps", "INT", 20, 1, 10000), ("cfg", "FLOAT", 8.0, 0.0, 100.0), ("sampler_name", "COMBO", None, None, None),
    ("scheduler", "COMBO", None, None, None), ("positive", "CONDITIONING", None, None, None),
    ("negative", "CONDITIONING", None, None, None), ("latent_image", "LATENT", None, None, None),
    ("denoise", "FLOAT", 1.0, 0.0, 1.0),
]
CORE_ADVANCED = [
    ("model", "MODEL", None, None, None), ("add_noise", "COMBO", None, None, None),
    ("noise_seed", "INT", 0, 0, 0xFFFFFFFFFFFFFFFF), ("steps", "INT", 20, 1, 10000),
    ("cfg", "FLOAT", 8.0, 0.0, 100.0), ("sampler_name", "COMBO", None, None, None),
    ("scheduler", "COMBO", None, None, None), ("positive", "CONDITIONING", None, None, None),
    ("negative", "CONDITIONING", None, None, None), ("latent_image", "LATENT", None, None, None),
    ("start_at_step", "INT", 0, 0, 10000), ("end_at_step", "INT", 10000, 0, 10000),
    ("return_with_leftover_noise", "COMBO", None, None, None),
]


def _describe(node_cls):
    rows = []
    for name, spec in node_cls.INPUT_TYPES()["required"].items():
        kind = "COMBO" if isinstance(spec[0], list) else spec[0]
        opts = spec[1] if len(spec) > 1 else {}
        rows.append((name, kind, opts.get("default"), opts.get("min"), opts.get("max")))
    return rows


def test_input_types_match_core():
    assert _describe(StepwiseKSampler) == CORE_KSAMPLER
    assert _describe(StepwiseKSamplerAdvanced) == CORE_ADVANCED
    adv = StepwiseKSamplerAdvanced.INPUT_TYPES()["required"]
    assert adv["add_noise"][0] == ["enable", "disable"]
    assert adv["return_with_leftover_noise"][0] == ["disable", "enable"]
    for cls in (StepwiseKSampler, StepwiseKSamplerAdvanced):
        req = cls.INPUT_TYPES()["required"]
        assert req["cfg"][1]["step"] == 0.1 and req["cfg"][1]["round"] == 0.01
        assert cls.RETURN_TYPES == ("LATENT",) and cls.CATEGORY == "stepwise/sampling"


def test_registration():
    assert stepwise_sampler.NODE_CLASS_MAPPINGS is NODE_CLASS_MAPPINGS
    assert stepwise_sampler.WEB_DIRECTORY == "./js"
    assert NODE_DISPLAY_NAME_MAPPINGS["StepwiseKSampler"] == "KSampler (Stepwise)"
    assert NODE_DISPLAY_NAME_MAPPINGS["StepwiseKSamplerAdvanced"] == "KSampler Advanced (Stepwise)"
    for node_id in NODE_CLASS_MAPPINGS:
        assert node_id.startswith("Stepwise"), "ids must not collide with core ids"


def test_latent_keeps_other_keys_and_input_is_not_modified(toy):
    model, conds = toy
    samples = torch.zeros(1, 4, 8, 8)
    latent = {"samples": samples, "batch_index": [2], "custom": "kept"}
    (out,) = StepwiseKSampler().sample(model, 1, 3, 7.0, "euler", "normal", [[conds["ctx_pos"], {}]],
                                       [[conds["ctx_neg"], {}]], latent, 1.0)
    assert out["custom"] == "kept" and out["batch_index"] == [2]
    assert out is not latent and torch.count_nonzero(latent["samples"]) == 0


def test_advanced_split_equals_single_run_for_euler(toy):
    """The tutorial's two-node split: (0,10)+leftover then (10,20) without noise equals one run (euler)."""
    model, conds = toy
    pos, neg = [[conds["ctx_pos"], {}]], [[conds["ctx_neg"], {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    node = StepwiseKSamplerAdvanced()
    (single,) = node.sample(model, "enable", 5, 20, 7.0, "euler", "karras", pos, neg, latent, 0, 10000, "disable")
    (a,) = node.sample(model, "enable", 5, 20, 7.0, "euler", "karras", pos, neg, latent, 0, 10, "enable")
    (b,) = node.sample(model, "disable", 5, 20, 7.0, "euler", "karras", pos, neg, a, 10, 10000, "disable")
    scale = single["samples"].abs().max().item()
    assert (b["samples"] - single["samples"]).abs().max().item() <= 1e-5 * scale


def test_observer_sees_steps_and_sigmas(toy):
    model, conds = toy
    seen = []
    with observe(Observer(on_step=lambda s, x0, x, t: seen.append((s, t)))) as obs:
        StepwiseKSamplerAdvanced().sample(model, "enable", 1, 10, 7.0, "euler", "normal", [[conds["ctx_pos"], {}]],
                                          [[conds["ctx_neg"], {}]], {"samples": torch.zeros(1, 4, 8, 8)}, 3, 7,
                                          "enable")
    assert seen == [(i, 4) for i in range(4)]
    assert obs.runs[-1].sigmas.numel() == 5 and obs.runs[-1].sampled
