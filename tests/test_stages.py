"""Stages (Stepwise): one run handed between models at a sigma, step or fraction; equal to the seamless chain of
KSampler Advanced nodes it replaces, bit for bit. KSampler Advanced's start_at_sigma/end_at_sigma use the same rule."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stepwise_sampler.host import Observer, observe
from stepwise_sampler.nodes import StepwiseKSamplerAdvanced, StepwiseStages as _Stages
from stepwise_sampler.schedulers.plan import step_at_sigma, switch_step
from stepwise_sampler.sampling.seamless import STATE_KEY


def test_the_sigma_rule():
    sigmas = torch.tensor([14.6, 5.0, 0.9, 0.875, 0.5, 0.0])
    assert step_at_sigma(sigmas, 0.875) == 4  # 0.875 itself is not below: still the first stage
    assert step_at_sigma(sigmas, 0.88) == 3
    assert step_at_sigma(sigmas, 100.0) == 0  # every step is below: the second stage from the start
    assert step_at_sigma(sigmas, 0.1) == 5  # none below (the final 0 is not a step): the first stage throughout
    assert switch_step(sigmas, 2, "step") == 2 and switch_step(sigmas, 0.5, "fraction") == 2
    assert switch_step(sigmas, 99, "step") == 5
    with pytest.raises(ValueError, match="switch unit"):
        switch_step(sigmas, 1, "percent")


class StepwiseStages(_Stages):
    """The node with its UI output (as the editor gets it)."""

    def sample(self, *args, **kwargs):
        with observe(Observer(want_ui=True)):
            return super().sample(*args, **kwargs)


def _adv(*args, **kwargs):
    return {"result": StepwiseKSamplerAdvanced().sample(*args, **kwargs)}


def _chain(model_a, model_b, t, latent, boundary_step, steps=8, sampler="dpmpp_2m", seed=3, cfg_a=7.0, cfg_b=4.0,
           pos_b=None):
    pos, neg = [[t["ctx_pos"], {}]], [[t["ctx_neg"], {}]]
    (mid,) = _adv(model_a, "enable", seed, steps, cfg_a, sampler, "karras", pos, neg, latent, 0, boundary_step,
                        "enable", split_mode="seamless")["result"]
    (out,) = _adv(model_b, "disable", seed, steps, cfg_b, sampler, "karras", pos_b or pos, neg, mid,
                        boundary_step, 10000, "disable", split_mode="seamless")["result"]
    return out


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "euler_ancestral", "dpmpp_2m_sde", "uni_pc"])
def test_two_stages_equal_the_seamless_chain_bit_for_bit(toy, sampler):
    model, t = toy
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    pos, neg = [[t["ctx_pos"], {}]], [[t["ctx_neg"], {}]]
    pos_b = [[t["ctx_neg"], {}]]  # a prompt switch at the boundary
    res = StepwiseStages().sample(model, 3, 8, 7.0, sampler, "karras", pos, neg, latent, 1.0, "step", 3,
                                  positive_2=pos_b, cfg_2=4.0)
    staged = res["result"][0]
    chained = _chain(model, model, t, latent, 3, sampler=sampler, pos_b=pos_b)
    assert torch.equal(staged["samples"], chained["samples"])
    assert STATE_KEY not in staged
    table = res["ui"]["stepwise"][0]["stages"]
    assert [(s["start"], s["end"], s["cfg"], s["prompt"]) for s in table] == [(0, 3, 7.0, "positive"),
                                                                                 (3, 8, 4.0, "positive_2")]


def test_sigma_switch_equals_the_step_it_names(toy):
    model, t = toy
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    pos, neg = [[t["ctx_pos"], {}]], [[t["ctx_neg"], {}]]
    from stepwise_sampler.nodes.ksampler import build_request, full_schedule

    full = full_schedule(model, build_request({"seed": 3, "steps": 8, "cfg": 7.0, "sampler_name": "euler",
                                               "scheduler": "karras"}))
    boundary = float(full[4] + full[5]) / 2  # between steps 4 and 5: step 5 is the first below
    by_sigma = StepwiseStages().sample(model, 3, 8, 7.0, "euler", "karras", pos, neg, latent, 1.0, "sigma",
                                       boundary, cfg_2=3.0)["result"][0]
    by_step = StepwiseStages().sample(model, 3, 8, 7.0, "euler", "karras", pos, neg, latent, 1.0, "step", 5,
                                      cfg_2=3.0)["result"][0]
    by_fraction = StepwiseStages().sample(model, 3, 8, 7.0, "euler", "karras", pos, neg, latent, 1.0, "fraction",
                                          5 / 8, cfg_2=3.0)["result"][0]
    assert torch.equal(by_sigma["samples"], by_step["samples"])
    assert torch.equal(by_fraction["samples"], by_step["samples"])
    # the Advanced node's end_at_sigma / start_at_sigma name the same step
    (mid,) = _adv(model, "enable", 3, 8, 7.0, "euler", "karras", pos, neg, latent, 0, 10000, "enable",
                        split_mode="seamless", end_at_sigma=boundary)["result"]
    (out,) = _adv(model, "disable", 3, 8, 3.0, "euler", "karras", pos, neg, mid, 0, 10000, "disable",
                        split_mode="seamless", start_at_sigma=boundary)["result"]
    assert torch.equal(out["samples"], by_step["samples"])


def test_one_stage_is_the_plain_run_and_four_stages_work(toy):
    from stepwise_sampler.nodes import StepwiseKSampler

    model, t = toy
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    pos, neg = [[t["ctx_pos"], {}]], [[t["ctx_neg"], {}]]
    one = StepwiseStages().sample(model, 5, 6, 7.0, "dpmpp_2m", "normal", pos, neg, latent, 1.0, "sigma",
                                  -1.0)["result"][0]
    plain = StepwiseKSampler().sample(model, 5, 6, 7.0, "dpmpp_2m", "normal", pos, neg, latent, 1.0)[0]
    assert torch.equal(one["samples"], plain["samples"])
    four = StepwiseStages().sample(model, 5, 8, 7.0, "dpmpp_2m", "normal", pos, neg, latent, 1.0, "step", 2,
                                   until_2=4, until_3=6, cfg_2=5.0, cfg_3=3.0, cfg_4=1.0)
    table = four["ui"]["stepwise"][0]["stages"]
    assert [(s["start"], s["end"], s["cfg"]) for s in table] == [(0, 2, 7.0), (2, 4, 5.0), (4, 6, 3.0), (6, 8, 1.0)]
    assert torch.isfinite(four["result"][0]["samples"]).all()


def test_bad_switch_points_name_the_widget(toy):
    model, t = toy
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    pos, neg = [[t["ctx_pos"], {}]], [[t["ctx_neg"], {}]]
    with pytest.raises(ValueError, match="until_2.*go back"):
        StepwiseStages().sample(model, 5, 8, 7.0, "euler", "normal", pos, neg, latent, 1.0, "step", 5, until_2=3)
    with pytest.raises(ValueError, match="until_3: set while until_2 is -1"):
        StepwiseStages().sample(model, 5, 8, 7.0, "euler", "normal", pos, neg, latent, 1.0, "step", 5, until_3=6)
    with pytest.raises(ValueError, match="switch_unit"):
        StepwiseStages().sample(model, 5, 8, 7.0, "euler", "normal", pos, neg, latent, 1.0, "percent", 5)


def test_video_latents_five_d(toy):
    """A (B, C, T, H, W) latent runs through the stages like through the chain."""
    toy_model, t = toy

    class Folded(torch.nn.Module):
        """The toy network on video latents: frames folded into the batch (as a video model sees them)."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, timestep, context):
            b, c, frames, h, w = x.shape
            flat = x.permute(0, 2, 1, 3, 4).reshape(b * frames, c, h, w)
            out = self.net(flat, timestep.repeat_interleave(frames), context.repeat_interleave(frames, 0))
            return out.reshape(b, frames, c, h, w).permute(0, 2, 1, 3, 4)

    model = toy_model.with_network(Folded(toy_model.network))
    latent = {"samples": torch.zeros(1, 4, 3, 8, 8)}
    pos, neg = [[t["ctx_pos"], {}]], [[t["ctx_neg"], {}]]
    staged = StepwiseStages().sample(model, 2, 6, 7.0, "euler_ancestral", "karras", pos, neg, latent, 1.0,
                                     "step", 2, cfg_2=3.0)["result"][0]
    chained = _chain(model, model, t, latent, 2, steps=6, sampler="euler_ancestral", seed=2, cfg_b=3.0)
    assert staged["samples"].shape == (1, 4, 3, 8, 8)
    assert torch.equal(staged["samples"], chained["samples"])


TUTORIAL = Path(__file__).resolve().parent.parent.parent / "shared" / "workflows" / "tutorial"


@pytest.mark.parametrize("name", ["divide", "Prompt_Editing", "LoRA"])
def test_migrate_stages_folds_the_tutorial_chains_and_equals_them_seamless(name, tmp_path):
    """The tutorial's split chains (the same model; a prompt switch; a LoRA from step 6) fold into one Stages node
    whose result equals the chain run with split_mode seamless."""
    import json

    from stepwise_sampler.standalone.core_nodes import RunContext, use_context
    from stepwise_sampler.standalone.workflow import execute, parse_workflow
    from stepwise_sampler.workflows.migrate import migrate_workflow

    wf = json.loads((TUTORIAL / f"SD1.5_KSampler_({'Advanced'})-{name}.json").read_text())
    for n in wf["nodes"]:
        if n["type"] == "EmptyLatentImage":
            n["widgets_values"][:2] = [128, 128]
    folded, report = migrate_workflow(wf, stages=True)
    (fold,) = [c for c in report.changed if c["to"] == "StepwiseStages"]
    stages = next(n for n in folded["nodes"] if n["type"] == "StepwiseStages")
    seamless = json.loads(json.dumps(wf))
    chain = [n for n in seamless["nodes"] if n["type"] == "KSamplerAdvanced"]
    for n in chain:
        n["widgets_values"] = n["widgets_values"][:10] + ["seamless"]
    tail = next(n for n in chain if n["id"] != stages["id"])
    with use_context(RunContext(output_dir=tmp_path / "a", notice=lambda m: None)):
        a = execute(parse_workflow(folded))[str(stages["id"])][0]["samples"]
    with use_context(RunContext(output_dir=tmp_path / "b", notice=lambda m: None)):
        b = execute(parse_workflow(seamless))[str(tail["id"])][0]["samples"]
    assert torch.equal(a, b), fold
    # euler is single-step and deterministic: no note that the numbers change
    assert not any("numbers" in note for note in fold["notes"])


def test_stages_widget_slots_match_the_fold():
    from stepwise_sampler.standalone.workflow import _widget_slots
    from stepwise_sampler.workflows.fold_stages import STAGES_WIDGETS

    assert _widget_slots(_Stages) == [w.replace("seed:control", "seed:control") for w in STAGES_WIDGETS]


def test_fold_leaves_api_format_with_a_clear_error():
    from stepwise_sampler.workflows.migrate import migrate_workflow

    with pytest.raises(ValueError, match="--stages: folds workflows in the editor's format"):
        migrate_workflow({"1": {"class_type": "KSamplerAdvanced", "inputs": {}}}, stages=True)


def test_the_plot_endpoint_places_switches_by_the_same_rule():
    from stepwise_sampler.host.api import sigmas_response
    from stepwise_sampler.schedulers.plan import plan_stages

    status, body = sigmas_response({"scheduler": "karras", "sampler": "euler", "steps": "10", "until": "2.0,0.5,-1",
                                    "unit": "sigma"})
    assert status == 200
    full = torch.tensor(body["sigmas"])
    assert body["stages"] == [list(r) for r in plan_stages(full, [2.0, 0.5], "sigma")]
    assert len(body["stages"]) == 3 and body["stages"][-1][1] == 10
    status, body = sigmas_response({"scheduler": "karras", "steps": "10", "until": "5,3", "unit": "step"})
    assert status == 200 and body["stages"] is None and "until_2" in body["stages_error"]
    assert sigmas_response({"scheduler": "karras", "steps": "10", "until": "x"})[0] == 400
    assert sigmas_response({"scheduler": "karras", "steps": "10", "unit": "percent", "until": "1"})[0] == 400
