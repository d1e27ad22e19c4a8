"""The fast SDE noise source has the Brownian tree's statistics, including nested intervals."""
from __future__ import annotations

from stepwise_sampler.sampling.registry import discards_penultimate
import torch

from stepwise_sampler.sampling import SAMPLERS, BrownianTreeNoiseSampler, FastBrownianNoiseSampler
from stepwise_sampler.schedulers import DiscreteModelSampling, ksampler_sigmas


def _pairs(sampler, n=4000):
    a, m, b = torch.tensor(3.0), torch.tensor(2.0), torch.tensor(1.0)
    z1, z2 = sampler.split(a, m, b)
    return z1.flatten(), z2.flatten()


def test_split_correlation_matches_brownian_motion():
    x = torch.zeros(1, 4, 50, 50)
    expected = (1.0 / 2.0) ** 0.5  # corr of W(2)-W(3) and W(1)-W(3), normalised: sqrt(|1| / |2|)
    for sampler in (FastBrownianNoiseSampler(x, seed=1),
                    BrownianTreeNoiseSampler(x, torch.tensor(0.5), torch.tensor(4.0), seed=1)):
        z1, z2 = _pairs(sampler)
        assert abs(z1.std().item() - 1) < 0.05 and abs(z2.std().item() - 1) < 0.05
        corr = torch.corrcoef(torch.stack([z1, z2]))[0, 1].item()
        assert abs(corr - expected) < 0.05, (type(sampler).__name__, corr)


def test_fast_noise_is_seeded_and_unit_normal():
    x = torch.zeros(2, 4, 32, 32)
    a = FastBrownianNoiseSampler(x, seed=7)(torch.tensor(2.0), torch.tensor(1.0))
    b = FastBrownianNoiseSampler(x, seed=7)(torch.tensor(2.0), torch.tensor(1.0))
    assert torch.equal(a, b) and abs(a.mean().item()) < 0.05 and abs(a.std().item() - 1) < 0.05


def test_fast_noise_final_statistics_match_brownian():
    """dpmpp_2m_sde with either source: the same distribution of results (moments over many seeds)."""
    ms = DiscreteModelSampling.scaled_linear()
    sigmas = ksampler_sigmas(ms, "karras", discards_penultimate("dpmpp_2m_sde"), 10)

    def model(x, sigma, **kw):
        return x * (0.25 / (0.25 + sigma.view(-1, 1, 1, 1) ** 2))

    x = torch.randn(64, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    outs = {}
    for source in ("brownian", "fast"):
        outs[source] = SAMPLERS["dpmpp_2m_sde"](model, x, sigmas, extra_args={"seed": 3}, disable=True,
                                                noise_source=source)
    for o in outs.values():
        assert torch.isfinite(o).all()
    assert abs(outs["fast"].std().item() - outs["brownian"].std().item()) < 0.05 * outs["brownian"].std().item()
    assert not torch.equal(outs["fast"], outs["brownian"])


import pytest  # noqa: E402


@pytest.mark.parametrize("name", ["dpmpp_2m_sde", "dpmpp_2m_sde_heun", "dpmpp_3m_sde"])
@pytest.mark.parametrize("scheduler", ["karras", "normal"])
def test_fast_weight_form_equals_the_step_form_with_the_same_noise(name, scheduler):
    """The opt-in fast path rewrites the update with precomputed weights; given the same noise draws it
    is the same algorithm as the step-by-step form (to float rounding)."""
    ms = DiscreteModelSampling.scaled_linear()
    sigmas = ksampler_sigmas(ms, scheduler, discards_penultimate(name), 9)

    def model(x, sigma, **kw):
        return torch.tanh(x) * (0.5 / (0.5 + sigma.view(-1, 1, 1, 1)))

    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    weights = SAMPLERS[name](model, x, sigmas, extra_args={"seed": 5}, disable=True, noise_source="fast")
    steps = SAMPLERS[name](model, x, sigmas, extra_args={"seed": 5}, disable=True,
                           noise_sampler=FastBrownianNoiseSampler(x, seed=5))
    assert torch.allclose(weights, steps, rtol=1e-5, atol=1e-5 * steps.abs().max().item())
