"""Schedules beyond core's nine (a node and a SIGMAS socket), and the SAMPLER socket — core's combos unchanged."""
from __future__ import annotations

import pytest
from stepwise_sampler.sampling.registry import discards_penultimate
import torch

from stepwise_sampler.nodes import (StepwiseKSampler, StepwiseKSamplerAdvanced, StepwiseSampler, StepwiseSchedule)
from stepwise_sampler.host import Observer, observe
from stepwise_sampler.sampling.profile import NEWEST
from stepwise_sampler.schedulers import SCHEDULER_NAMES, ksampler_sigmas
from stepwise_sampler.schedulers.extra import AYS_LEVELS, SCHEDULE_NAMES, schedule_sigmas


def _conds(toy):
    _, t = toy
    return [[t["ctx_pos"], {}]], [[t["ctx_neg"], {}]]


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_every_schedule_decreases_to_zero_for_any_steps(toy, name):
    model, _ = toy
    for steps in list(range(1, 25)) + [33, 60]:
        sig = schedule_sigmas(model.model_sampling, name, steps)
        if name == "kl_optimal" and steps == 1:
            continue  # core's own 0/0 (a NaN schedule, recorded in the golden set)
        if name not in ("ddim_uniform", "beta", "beta57"):  # table schedules may merge duplicate steps, as core
            assert len(sig) == steps + 1, (name, steps)
        assert sig[-1] == 0 and torch.isfinite(sig).all(), (name, steps)
        assert bool((sig[1:] <= sig[:-1]).all()), (name, steps, sig)
    for denoise in (0.3, 0.75):
        sig = schedule_sigmas(model.model_sampling, name, 10, denoise)
        assert sig[-1] == 0 and bool((sig[1:] <= sig[:-1]).all())


def test_core_nine_are_identical_through_the_schedule_node(toy):
    model, _ = toy
    for name in SCHEDULER_NAMES:
        for steps, denoise in ((7, 1.0), (20, 0.55), (3, 1.0)):
            (sig,) = StepwiseSchedule().make(model, name, steps, denoise)
            assert torch.equal(sig, ksampler_sigmas(model.model_sampling, name, discards_penultimate("euler"), steps, denoise)), name


def test_ays_sd1_at_10_steps_is_the_published_list(toy):
    model, _ = toy
    sig = schedule_sigmas(model.model_sampling, "ays_sd1", 10)
    ref = torch.tensor(AYS_LEVELS["ays_sd1"][:-1] + [0.0], dtype=torch.float32)
    assert torch.equal(sig, ref)
    assert len(schedule_sigmas(model.model_sampling, "ays_sd1", 13)) == 14
    assert len(schedule_sigmas(model.model_sampling, "ays_sd1", 10, 0.5)) == 6


def test_schedule_parameters_and_errors(toy):
    model, _ = toy
    a = schedule_sigmas(model.model_sampling, "polyexponential", 10)
    b = schedule_sigmas(model.model_sampling, "polyexponential", 10, rho=2.0)
    assert not torch.equal(a, b)
    (c,) = StepwiseSchedule().make(model, "polyexponential", 10, 1.0, rho=2.0)
    assert torch.equal(b, c)
    assert torch.allclose(schedule_sigmas(model.model_sampling, "polyexponential", 10),
                          schedule_sigmas(model.model_sampling, "exponential", 10), rtol=1e-4)  # defaults ~ SD1.5 range
    with pytest.raises(ValueError, match="rho: schedule 'karras' has no parameter"):
        schedule_sigmas(model.model_sampling, "karras", 10, rho=2.0)
    with pytest.raises(ValueError, match="coeff"):
        schedule_sigmas(model.model_sampling, "gits", 10, coeff=2.0)
    with pytest.raises(ValueError, match="schedule: unknown schedule 'nope'"):
        schedule_sigmas(model.model_sampling, "nope", 10)
    with pytest.raises(ValueError, match="schedule"):
        StepwiseSchedule().make(model, "nope", 10, 1.0)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "uni_pc", "dpmpp_2m_sde", "dpm_2"])
def test_a_sigmas_socket_with_cores_karras_equals_the_widget(toy, sampler):
    model, _ = toy
    pos, neg = _conds(toy)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    sig = ksampler_sigmas(model.model_sampling, "karras", discards_penultimate(sampler), 10)
    (widget,) = StepwiseKSampler().sample(model, 4, 10, 6.0, sampler, "karras", pos, neg, latent, 1.0)
    (socket,) = StepwiseKSampler().sample(model, 4, 99, 6.0, sampler, "normal", pos, neg, latent, 0.3, sigmas=sig)
    assert torch.equal(widget["samples"], socket["samples"])
    runs = []
    with observe(Observer()) as obs:
        (w_adv,) = StepwiseKSamplerAdvanced().sample(model, "enable", 4, 10, 6.0, sampler, "karras", pos, neg, latent,
                                                     2, 7, "enable")
        (s_adv,) = StepwiseKSamplerAdvanced().sample(model, "enable", 4, 3, 6.0, sampler, "normal", pos, neg, latent,
                                                     2, 7, "enable", sigmas=sig)
        runs = obs.runs
    assert torch.equal(w_adv["samples"], s_adv["samples"])
    assert torch.equal(runs[0].sigmas, runs[1].sigmas)


def test_a_sigmas_socket_works_in_seamless_chains(toy):
    model, _ = toy
    pos, neg = _conds(toy)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (sig,) = StepwiseSchedule().make(model, "ays_sd1", 10, 1.0)
    (single,) = StepwiseKSampler().sample(model, 4, 10, 6.0, "dpmpp_2m_sde", "karras", pos, neg, latent, 1.0,
                                          sigmas=sig)
    adv = StepwiseKSamplerAdvanced()
    (a,) = adv.sample(model, "enable", 4, 10, 6.0, "dpmpp_2m_sde", "karras", pos, neg, latent, 0, 4, "enable",
                      split_mode="seamless", sigmas=sig)
    (b,) = adv.sample(model, "disable", 0, 10, 6.0, "dpmpp_2m_sde", "karras", pos, neg, a, 4, 10000, "disable",
                      split_mode="seamless", sigmas=sig)
    assert torch.equal(b["samples"], single["samples"])


def test_the_sampler_socket(toy):
    model, _ = toy
    pos, neg = _conds(toy)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (plain,) = StepwiseSampler().make("euler_ancestral")
    (widget,) = StepwiseKSampler().sample(model, 4, 8, 6.0, "euler_ancestral", "karras", pos, neg, latent, 1.0)
    (socket,) = StepwiseKSampler().sample(model, 4, 8, 6.0, "euler", "karras", pos, neg, latent, 1.0, sampler=plain)
    assert torch.equal(widget["samples"], socket["samples"]), "defaults give core's numbers"
    (eta0,) = StepwiseSampler().make("euler_ancestral", eta=0.0)
    (det,) = StepwiseKSampler().sample(model, 4, 8, 6.0, "euler", "karras", pos, neg, latent, 1.0, sampler=eta0)
    (euler,) = StepwiseKSampler().sample(model, 4, 8, 6.0, "euler", "karras", pos, neg, latent, 1.0)
    assert torch.allclose(det["samples"], euler["samples"], rtol=1e-5, atol=1e-5), "eta 0: plain Euler"
    (heun_type,) = StepwiseSampler().make("dpmpp_2m_sde", solver_type="heun")
    (sde,) = StepwiseKSampler().sample(model, 4, 8, 6.0, "euler", "karras", pos, neg, latent, 1.0, sampler=heun_type)
    (sde_heun,) = StepwiseKSampler().sample(model, 4, 8, 6.0, "dpmpp_2m_sde_heun", "karras", pos, neg, latent, 1.0)
    assert torch.equal(sde["samples"], sde_heun["samples"])
    with pytest.raises(ValueError, match="eta: sampler 'euler' has no option 'eta'"):
        StepwiseSampler().make("euler", eta=1.0)
    with pytest.raises(ValueError, match="order"):
        StepwiseSampler().make("lms", order=9)
    with pytest.raises(ValueError, match="sampler: expected a SAMPLER"):
        StepwiseKSampler().sample(model, 4, 8, 6.0, "euler", "karras", pos, neg, latent, 1.0, sampler="x")
    with pytest.raises(ValueError, match="sigmas: expected a 1-D tensor"):
        StepwiseKSampler().sample(model, 4, 8, 6.0, "euler", "karras", pos, neg, latent, 1.0,
                                  sigmas=torch.zeros(2, 2))


def test_core_combos_stay_core_lists():
    req = StepwiseKSampler.INPUT_TYPES()["required"]
    assert req["sampler_name"][0] == list(NEWEST.sampler_names)
    assert req["scheduler"][0] == list(NEWEST.scheduler_names)
    assert "ays_sd1" not in req["scheduler"][0]
    adv = StepwiseKSamplerAdvanced.INPUT_TYPES()
    assert list(adv["optional"]) == ["split_mode", "start_at_sigma", "end_at_sigma", "noise", "sigmas", "sampler"]


def test_schedule_route_serves_extra_schedules():
    from stepwise_sampler.host.api import sigmas_response

    status, body = sigmas_response({"schedule": "gits", "steps": "10", "coeff": "1.05", "start": "3"})
    assert status == 200 and len(body["sigmas"]) == 11 and body["start"] == 3
    assert sigmas_response({"schedule": "gits", "steps": "10", "coeff": "x"})[0] == 400
    assert sigmas_response({"schedule": "bogus", "steps": "10"})[0] == 400
