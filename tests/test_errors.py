"""Bad input: a ValueError that names the input and what is allowed. Never a silent fallback."""
from __future__ import annotations

import math

import pytest
import torch

from stepwise_sampler.nodes import StepwiseKSampler, StepwiseKSamplerAdvanced
from stepwise_sampler.sampling import SAMPLERS, SamplingRequest, common_ksampler, get_sampler
from stepwise_sampler.schedulers import DiscreteModelSampling, calculate_sigmas


@pytest.fixture
def run(toy):
    model, conds = toy

    def go(latent=None, **kw):
        args = dict(seed=1, steps=4, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0)
        args.update(kw)
        latent = {"samples": torch.zeros(1, 4, 8, 8)} if latent is None else latent
        return StepwiseKSampler().sample(model, args["seed"], args["steps"], args["cfg"], args["sampler_name"],
                                         args["scheduler"], [[conds["ctx_pos"], {}]], [[conds["ctx_neg"], {}]],
                                         latent, args["denoise"])
    return go


@pytest.mark.parametrize("kw, words", [
    (dict(sampler_name="eulr"), ["sampler_name", "eulr", "euler", "dpmpp_2m"]),
    (dict(scheduler="karass"), ["scheduler", "karass", "karras"]),
    (dict(steps=0), ["steps", "1..10000"]),
    (dict(steps=2.5), ["steps", "integer"]),
    (dict(cfg=math.nan), ["cfg", "finite"]),
    (dict(cfg=math.inf), ["cfg"]),
    (dict(cfg=101.0), ["cfg", "0.0..100.0"]),
    (dict(denoise=1.5), ["denoise", "0.0..1.0"]),
    (dict(seed=-1), ["seed", "0..18446744073709551615"]),
    (dict(seed=2 ** 64), ["seed"]),
])
def test_bad_widgets(run, kw, words):
    with pytest.raises(ValueError) as err:
        run(**kw)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("latent, words", [
    ({"samples": torch.zeros(4, 8, 8)}, ["latent_image", "4-D"]),
    ({"samples": torch.zeros(1, 4, 8, 8, dtype=torch.int64)}, ["latent_image", "float"]),
    ({"samples": [[0.0]]}, ["latent_image"]),
    ({"nothing": 1}, ["latent_image", "samples"]),
    ({"samples": torch.zeros(2, 4, 8, 8), "batch_index": [0]}, ["batch_index", "2"]),
    ({"samples": torch.zeros(1, 4, 8, 8), "batch_index": [-1]}, ["batch_index"]),
    ({"samples": torch.zeros(1, 4, 8, 8), "noise_mask": torch.ones(8)}, ["noise_mask"]),
    ({"samples": torch.zeros(3, 4, 8, 8), "noise_mask": torch.ones(2, 8, 8)}, ["noise_mask", "cannot broadcast"]),
])
def test_bad_latents(run, latent, words):
    with pytest.raises(ValueError) as err:
        run(latent=latent)
    for w in words:
        assert w in str(err.value)


def test_ddim_max_seed_names_the_seed(run):
    with pytest.raises(ValueError) as err:
        run(seed=2 ** 64 - 1, sampler_name="ddim")
    assert "18446744073709551615" in str(err.value) and "seed" in str(err.value)


def test_max_seed_works_for_other_samplers(run):
    (out,) = run(seed=2 ** 64 - 1, sampler_name="euler")
    assert torch.isfinite(out["samples"]).all()


def test_advanced_combo_values(toy):
    model, conds = toy
    with pytest.raises(ValueError, match="add_noise"):
        StepwiseKSamplerAdvanced().sample(model, "yes", 1, 4, 7.0, "euler", "normal", [[conds["ctx_pos"], {}]],
                                          [[conds["ctx_neg"], {}]], {"samples": torch.zeros(1, 4, 8, 8)}, 0, 4,
                                          "disable")


def test_registries_reject_unknown_names():
    with pytest.raises(ValueError, match="allowed"):
        get_sampler("nope")
    with pytest.raises(ValueError, match="allowed"):
        calculate_sigmas(DiscreteModelSampling.scaled_linear(), "nope", 5)
    assert "nope" not in SAMPLERS


def test_bad_conditioning(toy):
    model, conds = toy
    with pytest.raises(ValueError, match="positive"):
        common_ksampler(model, SamplingRequest(seed=1, steps=3, cfg=7.0), "a red circle", [[conds["ctx_neg"], {}]],
                        {"samples": torch.zeros(1, 4, 8, 8)})


def test_bad_model():
    with pytest.raises(ValueError, match="model"):
        StepwiseKSampler().sample(object(), 1, 3, 7.0, "euler", "normal", [], [], {"samples": torch.zeros(1, 4, 8, 8)})
