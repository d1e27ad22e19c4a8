"""Noise you can reproduce: per-item seeds (initial and per-step noise, for every sampler), variations, core's
NOISE objects, and comfy mode = core's numbers."""
from __future__ import annotations

import math

import pytest
import torch

from stepwise_sampler.sampling.registry import NAMED_SAMPLERS

from stepwise_sampler.nodes import StepwiseKSampler, StepwiseKSamplerAdvanced, StepwiseNoise
from stepwise_sampler.sampling import SAMPLERS, prepare_noise
from stepwise_sampler.sampling.noise import NoiseSource, slerp

ALL = list(NAMED_SAMPLERS)


def _noise(seed, mode="comfy", vseed=0, strength=0.0, sde="brownian"):
    return StepwiseNoise().make(seed, mode, vseed, strength, sde)[0]


def _conds(toy):
    _, t = toy
    return [[t["ctx_pos"], {}]], [[t["ctx_neg"], {}]]


def _run(toy, sampler, latent, noise=None, seed=9, steps=5, cfg=6.0):
    model, _ = toy
    pos, neg = _conds(toy)
    from test_seamless import _socket

    name, socket = _socket(sampler)
    return StepwiseKSampler().sample(model, seed, steps, cfg, name, "karras", pos, neg, latent, 1.0,
                                     noise=noise, sampler=socket)[0]["samples"]


def _rel(a, b):
    return (a - b).abs().max().item() / max(1.0, b.abs().max().item())


@pytest.mark.parametrize("sampler", ALL)
def test_per_item_batch_items_stand_alone(toy, sampler):
    """Item i of a batch of 4 equals the batch-1 run with noise_seed + i (initial and per-step noise)."""
    batch = _run(toy, sampler, {"samples": torch.zeros(4, 4, 8, 8)}, _noise(100, "per_item"))
    for i in (0, 2, 3):
        alone = _run(toy, sampler, {"samples": torch.zeros(1, 4, 8, 8)}, _noise(100 + i, "per_item"))
        assert _rel(batch[i:i + 1], alone) <= 1e-5, (sampler, i)


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde", "ddim"])
def test_per_item_follows_batch_index_and_masks(toy, sampler):
    gen = torch.Generator().manual_seed(3)
    img = torch.randn(3, 4, 8, 8, generator=gen)
    mask = torch.rand(3, 8, 8, generator=gen)
    latent = {"samples": img, "batch_index": [5, 0, 2], "noise_mask": mask}
    batch = _run(toy, sampler, latent, _noise(40, "per_item"))
    for k, bi in enumerate([5, 0, 2]):
        alone = _run(toy, sampler, {"samples": img[k:k + 1], "noise_mask": mask[k:k + 1]}, _noise(40 + bi, "per_item"))
        assert _rel(batch[k:k + 1], alone) <= 1e-5


def test_per_item_batch_one_equals_comfy_initial_noise():
    latent = torch.zeros(1, 4, 8, 8)
    a = NoiseSource(7, batch_mode="per_item").initial(latent)
    assert torch.equal(a, prepare_noise(latent, 7))


def test_per_item_step_noise_is_drawn_on_the_cpu_per_item():
    x = torch.zeros(3, 4, 2, 2)
    draw = NoiseSource(10, batch_mode="per_item").default(x)(torch.tensor(1.0), torch.tensor(0.5))
    for i in range(3):
        g = torch.Generator().manual_seed(10 + 1 + i)
        assert torch.equal(draw[i], torch.randn((4, 2, 2), generator=g))


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m_sde", "lcm", "sa_solver", "ddim"])
def test_comfy_mode_equals_the_seed_widget(toy, sampler):
    latent = {"samples": torch.zeros(2, 4, 8, 8), "batch_index": [1, 3]}
    assert torch.equal(_run(toy, sampler, latent, _noise(77)), _run(toy, sampler, latent, seed=77))


def test_core_noise_objects_work_with_cores_numbers(toy):
    class RandomNoise:  # the shape of core's Noise_RandomNoise
        def __init__(self, seed):
            self.seed = seed

        def generate_noise(self, latent):
            return prepare_noise(latent["samples"], self.seed, latent.get("batch_index"))

    class DisableNoise:  # core's Noise_EmptyNoise
        seed = 0

        def generate_noise(self, latent):
            return torch.zeros(latent["samples"].shape)

    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    for sampler in ("euler", "euler_ancestral", "dpmpp_2m_sde"):
        assert torch.equal(_run(toy, sampler, latent, RandomNoise(31)), _run(toy, sampler, latent, seed=31))
    model, _ = toy
    pos, neg = _conds(toy)
    img = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))}
    (disabled,) = StepwiseKSamplerAdvanced().sample(model, "disable", 0, 6, 5.0, "euler", "karras", pos, neg, img, 2,
                                                    10000, "disable")
    (core_disabled,) = StepwiseKSamplerAdvanced().sample(model, "enable", 123, 6, 5.0, "euler", "karras", pos, neg,
                                                         img, 2, 10000, "disable", noise=DisableNoise())
    assert torch.equal(disabled["samples"], core_disabled["samples"])
    with pytest.raises(ValueError, match="noise"):
        _run(toy, "euler", latent, noise="not a noise")


def test_variation_blends_with_unit_variance():
    latent = torch.zeros(2, 4, 64, 64)
    a = NoiseSource(1).initial(latent)
    b = NoiseSource(2).initial(latent)
    assert torch.equal(NoiseSource(1, variation_seed=2, variation_strength=0.0).initial(latent), a)
    assert torch.equal(NoiseSource(1, variation_seed=2, variation_strength=1.0).initial(latent), b)
    last = 0.0
    for t in (0.1, 0.25, 0.5, 0.75, 0.9):
        v = NoiseSource(1, variation_seed=2, variation_strength=t).initial(latent)
        assert abs(v.std().item() - 1.0) < 0.02, t
        assert abs(v.norm().item() / a.norm().item() - 1.0) < 0.01
        dist = (v - a).norm().item()
        assert dist > last
        last = dist
    # per item: item i blends noise_seed + i with variation_seed + i
    per = NoiseSource(1, batch_mode="per_item", variation_seed=50, variation_strength=0.5).initial(latent)
    one = NoiseSource(2, batch_mode="per_item", variation_seed=51, variation_strength=0.5).initial(latent[:1])
    assert torch.allclose(per[1:2], one, atol=1e-6)


def test_slerp_of_identical_and_opposite_directions_is_safe():
    a = torch.randn(1, 8)
    assert torch.allclose(slerp(a, a.clone(), 0.3), a, atol=1e-6)
    out = slerp(a, -a, 0.5)
    assert torch.isfinite(out).all()


def test_noise_node_validates_and_describes():
    with pytest.raises(ValueError, match="batch_mode"):
        StepwiseNoise().make(1, "sometimes", 0, 0.0)
    with pytest.raises(ValueError, match="variation_strength"):
        StepwiseNoise().make(1, "comfy", 0, 1.5)
    with pytest.raises(ValueError, match="sde_noise"):
        StepwiseNoise().make(1, "per_item", 0, 0.0, "fast")
    value = StepwiseNoise().make(5, "per_item", 6, 0.25)[0]
    assert value.seed == 5 and value.source.describe()["batch_mode"] == "per_item"
    assert torch.equal(value.generate_noise({"samples": torch.zeros(2, 4, 4, 4)}),
                       value.source.initial(torch.zeros(2, 4, 4, 4)))


def test_noise_settings_are_in_the_ui_output(toy):
    from stepwise_sampler.host import Observer, observe

    model, _ = toy
    pos, neg = _conds(toy)
    with observe(Observer(want_ui=True)):
        out = StepwiseKSampler().sample(model, 1, 4, 5.0, "euler", "karras", pos, neg,
                                        {"samples": torch.zeros(1, 4, 8, 8)}, 1.0, noise=_noise(8, "per_item", 9, 0.3))
    noise = out["ui"]["stepwise"][0]["noise"]
    assert noise == {"seed": 8, "batch_mode": "per_item", "cpu_seed_offset": 1, "sde": "brownian",
                     "variation_seed": 9, "variation_strength": 0.3}


def test_the_sde_noise_script_still_applies(toy):
    from stepwise_sampler.nodes import StepwiseKSamplerEfficient, StepwiseNoiseScript
    from stepwise_sampler.nodes.efficient import RESULT_CACHE
    from stepwise_sampler.models.mixture import DemoModel

    RESULT_CACHE.clear()
    model = DemoModel()
    from stepwise_sampler.models.world import DemoCLIP

    c = DemoCLIP(notice=lambda m: None)
    pos, neg = c.encode("red circle"), c.encode("blue")
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    fast = StepwiseNoiseScript().script("fast")[0]
    eff = StepwiseKSamplerEfficient()
    plain = eff.sample(model, 3, 6, 6.0, "dpmpp_2m_sde", "karras", pos, neg, latent, 1.0, "none", "false")
    scripted = eff.sample(model, 3, 6, 6.0, "dpmpp_2m_sde", "karras", pos, neg, latent, 1.0, "none", "false",
                          script=fast)
    with_noise = eff.sample(model, 3, 6, 6.0, "dpmpp_2m_sde", "karras", pos, neg, latent, 1.0, "none", "false",
                            script=fast, noise=_noise(3))
    a, b, c_ = (r["result"][3]["samples"] for r in (plain, scripted, with_noise))
    assert not torch.equal(a, b) and torch.equal(b, c_)
