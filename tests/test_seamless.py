"""Seamless staged sampling: chained KSampler Advanced nodes in `seamless` mode equal one run, for every
sampler with a fixed step list; stage switches (prompt, model) equal a single run whose inputs change at the
same step; anything that cannot continue restarts as ComfyUI does and says why."""
from __future__ import annotations

import copy

import pytest
from stepwise_sampler.sampling.registry import discards_penultimate
import torch

from stepwise_sampler.nodes import StepwiseKSampler, StepwiseKSamplerAdvanced
from stepwise_sampler.host import Observer, observe
from stepwise_sampler.sampling import SAMPLERS, CFGDenoiser, parse_conditioning
from stepwise_sampler.sampling.registry import NAMED_SAMPLERS, SELF_STEPPING_SAMPLERS
from stepwise_sampler.sampling.seamless import STATE_KEY, samples_digest, step_starts

SPLITTABLE = [name for name in NAMED_SAMPLERS if name not in SELF_STEPPING_SAMPLERS]
ADV = StepwiseKSamplerAdvanced()


def _socket(sampler):
    """(the widget's name, the sampler input): Stepwise-only samplers (res_2s, ...) come through Sampler (Stepwise)."""
    from stepwise_sampler.host.profile import sampler_names
    from stepwise_sampler.nodes import StepwiseSampler

    if sampler in sampler_names():
        return sampler, None
    return "euler", StepwiseSampler().make(sampler)[0]


def _conds(toy):
    _, t = toy
    return [[t["ctx_pos"], {}]], [[t["ctx_neg"], {}]]


def _chain(model, sampler, scheduler, pos, neg, latent, cuts, steps, cfg=7.0, seed=42, mode="seamless", negs=None,
           models=None, poss=None):
    """KSampler Advanced nodes over [0, cuts[0]], [cuts[0], cuts[1]], ..., [cuts[-1], end]."""
    bounds = [0] + list(cuts) + [10000]
    out = latent
    sampler, socket = _socket(sampler)
    for k in range(len(bounds) - 1):
        first, last = k == 0, k == len(bounds) - 2
        (out,) = ADV.sample((models or [model] * 9)[k], "enable" if first else "disable", seed if first else 0, steps,
                            cfg, sampler, scheduler, (poss or [pos] * 9)[k], (negs or [neg] * 9)[k], out, bounds[k],
                            bounds[k + 1], "disable" if last else "enable", split_mode=mode, sampler=socket)
    return out


def _rel(a, b):
    return (a - b).abs().max().item() / max(1.0, b.abs().max().item())


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["karras", "normal"])
@pytest.mark.parametrize("sampler", SPLITTABLE)
def test_chains_equal_the_single_run(toy, sampler, scheduler):
    model, _ = toy
    pos, neg = _conds(toy)
    latent = {"samples": torch.zeros(2, 4, 8, 8)}
    name, socket = _socket(sampler)
    (single,) = StepwiseKSampler().sample(model, 42, 9, 7.0, name, scheduler, pos, neg, latent, 1.0, sampler=socket)
    two = _chain(model, sampler, scheduler, pos, neg, latent, [4], 9)
    three = _chain(model, sampler, scheduler, pos, neg, latent, [2, 6], 9)
    for out in (two, three):
        assert STATE_KEY not in out
        assert _rel(out["samples"], single["samples"]) <= 1e-5
        assert torch.equal(out["samples"], single["samples"]), "replayed arithmetic is bit-identical"


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "dpmpp_2m_sde", "euler_ancestral", "uni_pc"])
def test_comfy_mode_still_differs_where_comfyui_does(toy, sampler):
    model, _ = toy
    pos, neg = _conds(toy)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (single,) = StepwiseKSampler().sample(model, 42, 9, 7.0, sampler, "karras", pos, neg, latent, 1.0)
    comfy = _chain(model, sampler, "karras", pos, neg, latent, [4], 9, mode="comfy")
    assert _rel(comfy["samples"], single["samples"]) > 1e-3


@pytest.mark.parametrize("sampler", ["dpmpp_2m_cfg_pp", "euler_ancestral_cfg_pp", "res_multistep_ancestral_cfg_pp",
                                     "sa_solver_pece", "dpmpp_3m_sde", "lcm", "ddim", "er_sde", "exp_heun_2_x0_sde"])
@pytest.mark.parametrize("cfg", [1.0, 6.0])
def test_batches_masks_cfg1_and_cfg_pp(toy, sampler, cfg):
    model, t = toy
    pos, neg = _conds(toy)
    gen = torch.Generator().manual_seed(5)
    latent = {"samples": torch.randn(3, 4, 8, 8, generator=gen), "noise_mask": torch.rand(8, 8, generator=gen),
              "batch_index": [4, 0, 2]}
    (single,) = ADV.sample(model, "enable", 7, 8, cfg, sampler, "normal", pos, neg, latent, 0, 10000, "disable")
    out = _chain(model, sampler, "normal", pos, neg, latent, [3, 5], 8, cfg=cfg, seed=7)
    assert torch.equal(out["samples"], single["samples"])
    assert out["noise_mask"] is latent["noise_mask"] and out["batch_index"] == [4, 0, 2]


def test_state_is_plain_versioned_data_and_the_latent_works_elsewhere(toy):
    from stepwise_sampler.standalone.core_nodes import VAEDecode
    from stepwise_sampler.models.world import DemoVAE

    model, _ = toy
    pos, neg = _conds(toy)
    (first,) = ADV.sample(model, "enable", 1, 10, 7.0, "dpmpp_2m_sde", "karras", pos, neg,
                          {"samples": torch.zeros(1, 4, 8, 8)}, 0, 4, "enable", split_mode="seamless")
    state = first[STATE_KEY]

    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (bool, int, float, str, torch.Tensor))

    assert plain(state) and state["version"] == 1 and state["step"] == 4 and state["sampler_name"] == "dpmpp_2m_sde"
    assert state["denoised"].shape[0] == state["calls"] >= 4 and len(state["sigmas"]) == 11
    assert state["output_digest"] == samples_digest(first["samples"])
    VAEDecode().decode(DemoVAE(), first)  # a LATENT carrying state still decodes
    # comfy mode ignores the key, and never passes a stale state on
    (comfy,) = ADV.sample(model, "disable", 0, 10, 7.0, "dpmpp_2m_sde", "karras", pos, neg, first, 4, 10000, "disable")
    assert STATE_KEY not in comfy
    # the first node in seamless mode leaves the same leftover latent as comfy mode for euler
    (c_first,) = ADV.sample(model, "enable", 1, 10, 7.0, "euler", "karras", pos, neg,
                            {"samples": torch.zeros(1, 4, 8, 8)}, 0, 4, "enable")
    (s_first,) = ADV.sample(model, "enable", 1, 10, 7.0, "euler", "karras", pos, neg,
                            {"samples": torch.zeros(1, 4, 8, 8)}, 0, 4, "enable", split_mode="seamless")
    assert _rel(s_first["samples"], c_first["samples"]) < 1e-5


def _notes(run):
    seen = []
    with observe(Observer(on_notice=seen.append)):
        out = run()
    return out, seen


@pytest.mark.parametrize("change, word", [
    (dict(sampler="dpmpp_2m"), "sampler changed"), (dict(scheduler="normal"), "schedule changed"),
    (dict(steps=12), "schedule changed"), (dict(start=5), "start_at_step"), (dict(add_noise="enable"), "add_noise"),
])
def test_what_cannot_continue_restarts_as_comfyui_and_says_why(toy, change, word):
    model, _ = toy
    pos, neg = _conds(toy)
    (first,) = ADV.sample(model, "enable", 3, 10, 7.0, "dpmpp_2m_sde", "karras", pos, neg,
                          {"samples": torch.zeros(1, 4, 8, 8)}, 0, 4, "enable", split_mode="seamless")
    args = dict(sampler="dpmpp_2m_sde", scheduler="karras", steps=10, start=4, add_noise="disable")
    args.update(change)

    def second(mode):
        return ADV.sample(model, args["add_noise"], 3, args["steps"], 7.0, args["sampler"], args["scheduler"], pos,
                          neg, first, args["start"], 10000, "disable", split_mode=mode)[0]

    (out, notes) = _notes(lambda: second("seamless"))
    assert any(word in n and "restarting as ComfyUI does" in n for n in notes), notes
    assert torch.equal(out["samples"], second("comfy")["samples"])


def test_a_changed_latent_or_foreign_state_restarts(toy):
    model, _ = toy
    pos, neg = _conds(toy)
    (first,) = ADV.sample(model, "enable", 3, 10, 7.0, "uni_pc", "karras", pos, neg,
                          {"samples": torch.zeros(1, 4, 8, 8)}, 0, 4, "enable", split_mode="seamless")
    tampered = dict(first, samples=first["samples"] + 0.5)
    _, notes = _notes(lambda: ADV.sample(model, "disable", 3, 10, 7.0, "uni_pc", "karras", pos, neg, tampered, 4,
                                         10000, "disable", split_mode="seamless"))
    assert any("latent was changed" in n for n in notes)
    foreign = dict(first, **{STATE_KEY: dict(first[STATE_KEY], version=99)})
    _, notes = _notes(lambda: ADV.sample(model, "disable", 3, 10, 7.0, "uni_pc", "karras", pos, neg, foreign, 4,
                                         10000, "disable", split_mode="seamless"))
    assert any("another Stepwise version" in n for n in notes)


@pytest.mark.parametrize("sampler", sorted(SELF_STEPPING_SAMPLERS))
def test_self_stepping_samplers_refuse_a_seamless_split(toy, sampler):
    model, _ = toy
    pos, neg = _conds(toy)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    with pytest.raises(ValueError, match=f"sampler_name: {sampler} chooses its own steps"):
        ADV.sample(model, "enable", 1, 8, 7.0, sampler, "karras", pos, neg, latent, 0, 4, "enable",
                   split_mode="seamless")
    (whole,) = ADV.sample(model, "enable", 1, 8, 7.0, sampler, "karras", pos, neg, latent, 0, 10000, "disable",
                          split_mode="seamless")  # not split: fine
    assert torch.isfinite(whole["samples"]).all()


def test_step_starts_follow_the_callbacks(toy):
    model, _ = toy
    from stepwise_sampler.schedulers import ksampler_sigmas

    sig = ksampler_sigmas(model.model_sampling, "karras", discards_penultimate("heun"), 5)
    assert step_starts(SAMPLERS["euler"], sig, (1, 4, 8, 8), model, {}) == [0, 1, 2, 3, 4]
    assert step_starts(SAMPLERS["heun"], sig, (1, 4, 8, 8), model, {}) == [0, 2, 4, 6, 8]  # last step: one call
    assert step_starts(SAMPLERS["seeds_3"], sig, (1, 4, 8, 8), model, {}) == [0, 3, 6, 9, 12]


# --- stage switches: a chain equals a single run whose inputs change at the same step ----------------------------------
class _Switch:
    """A single run whose denoiser changes at the first model call of step k (the reference, built on the same
    sampler, backend and CFG denoiser as the nodes)."""

    def __init__(self, first, second, pos_b, neg_b, switch_step) -> None:
        self.first, self.second, self.pos_b, self.neg_b, self.k = first, second, pos_b, neg_b, switch_step
        self.model_sampling = first.model_sampling

    def fix_empty_latent_channels(self, latent):
        return self.first.fix_empty_latent_channels(latent)

    def sample(self, noise, latent_image, sampler_fn, sigmas, positive, negative, cfg, **kw):
        outer = self

        def fn(denoiser_a, x, sig, extra_args=None, callback=None, disable=None, **options):
            denoiser_b = CFGDenoiser(outer.second, parse_conditioning(outer.pos_b, "positive"),
                                     parse_conditioning(outer.neg_b, "negative"), cfg, denoiser_a.latent_image,
                                     denoiser_a.noise, denoiser_a.mask)
            switch_call = step_starts(sampler_fn, sig, tuple(x.shape), denoiser_a, options)[outer.k]

            class Switching:
                model_sampling = denoiser_a.model_sampling
                calls = 0

                def __call__(self, xx, s, **extra):
                    Switching.calls += 1
                    return (denoiser_a if Switching.calls <= switch_call else denoiser_b)(xx, s, **extra)

                def request_uncond(self, extra):
                    return denoiser_a.request_uncond(extra)

            return sampler_fn(Switching(), x, sig, extra_args=extra_args, callback=callback, disable=disable, **options)

        return self.first.sample(noise, latent_image, fn, sigmas, positive, negative, cfg, **kw)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "dpmpp_2m_sde", "euler_ancestral", "uni_pc", "heun"])
def test_prompt_switch_equals_a_single_run_switching_at_that_step(toy, sampler):
    model, t = toy
    pos, neg = _conds(toy)
    pos_b = [[t["ctx_neg"] * 0.5 + 0.3, {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    chain = _chain(model, sampler, "karras", pos, neg, latent, [4], 10, poss=[pos, pos_b])
    ref = StepwiseKSampler().sample(_Switch(model, model, pos_b, neg, 4), 42, 10, 7.0, sampler, "karras", pos, neg,
                                    latent, 1.0)[0]
    assert torch.equal(chain["samples"], ref["samples"])
    plain = StepwiseKSampler().sample(model, 42, 10, 7.0, sampler, "karras", pos, neg, latent, 1.0)[0]
    assert _rel(chain["samples"], plain["samples"]) > 1e-3, "the switch changed the result"


@pytest.mark.parametrize("name, switch_node", [("SD1.5_KSampler_(Advanced)-Prompt_Editing.json", "13"),
                                               ("SD1.5_KSampler_(Advanced)-LoRA.json", "13")])
@pytest.mark.parametrize("sampler", [None, "dpmpp_2m_sde", "dpmpp_2m", "uni_pc"])
def test_tutorial_switch_workflows_in_seamless_mode(tmp_path, name, switch_node, sampler):
    """The tutorial's prompt-editing and LoRA workflows with split_mode seamless equal a single run whose
    conditioning / model changes at the switch step (the reference runs through the same nodes and backend)."""
    from conftest import REPO
    from stepwise_sampler.standalone.core_nodes import RunContext, use_context
    from stepwise_sampler.standalone.workflow import execute, load_workflow

    prompt = load_workflow(REPO.parent / "shared" / "workflows" / "tutorial" / name)
    advanced = [nid for nid, n in prompt.nodes.items() if n["class_type"] == "KSamplerAdvanced"]
    for nid in advanced:
        prompt.nodes[nid]["inputs"]["split_mode"] = "seamless"
        if sampler:
            prompt.nodes[nid]["inputs"]["sampler_name"] = sampler
    with use_context(RunContext(output_dir=tmp_path, notice=lambda m: None)):
        results = execute(copy.deepcopy(prompt))
    first = next(n for n in advanced if n != switch_node)
    a, b = prompt.nodes[first]["inputs"], prompt.nodes[switch_node]["inputs"]

    def value(v):
        return results[str(v[0])][v[1]] if isinstance(v, list) else v

    k = value(a["end_at_step"])
    model_a, model_b = value(a["model"]), value(b["model"])
    ref_backend = _Switch(model_a, model_b, value(b["positive"]), value(b["negative"]), k)
    (ref,) = StepwiseKSampler().sample(ref_backend, a["noise_seed"], a["steps"], float(a["cfg"]), a["sampler_name"],
                                       a["scheduler"], value(a["positive"]), value(a["negative"]),
                                       value(a["latent_image"]), 1.0)
    assert torch.equal(results[switch_node][0]["samples"], ref["samples"])
