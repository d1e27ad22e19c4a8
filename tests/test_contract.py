"""The contract every registered sampler and scheduler keeps (diffusers-style shared test)."""
from __future__ import annotations

import inspect
import math

import pytest
from stepwise_sampler.sampling.registry import discards_penultimate
import torch

from stepwise_sampler.sampling import SAMPLERS, SAMPLER_NAMES
from stepwise_sampler.sampling.model import UncondTap
from stepwise_sampler.sampling.registry import DISCARD_PENULTIMATE_SIGMA_SAMPLERS
from stepwise_sampler.schedulers import SCHEDULERS, DiscreteModelSampling, \
    ksampler_sigmas

CORE_SAMPLERS = ["euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
                 "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
                 "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
                 "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde",
                 "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis", "res_multistep",
                 "res_multistep_cfg_pp", "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp",
                 "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver",
                 "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2"]
CORE_SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                   "linear_quadratic", "kl_optimal"]
MS = DiscreteModelSampling.scaled_linear()


CORE_SAMPLERS_0_3_64 = list(CORE_SAMPLERS)
CORE_SAMPLERS = CORE_SAMPLERS[:6] + ["exp_heun_2_x0", "exp_heun_2_x0_sde"] + CORE_SAMPLERS[6:]  # from 0.5.0


def test_registries_list_every_core_name_in_core_order():
    from stepwise_sampler.sampling.profile import NEWEST, OLDEST, profile_for_version

    assert SAMPLER_NAMES[:len(CORE_SAMPLERS)] == CORE_SAMPLERS  # core's, in core's order, then Stepwise's own
    from stepwise_sampler.sampling.registry import TRAITS

    assert SAMPLER_NAMES[len(CORE_SAMPLERS):] == ["res_2s", "res_3s", "fitted"] and TRAITS["fitted"].fitted
    assert list(SCHEDULERS) == CORE_SCHEDULERS
    assert list(OLDEST.sampler_names) == CORE_SAMPLERS_0_3_64 and list(NEWEST.sampler_names) == CORE_SAMPLERS
    assert list(profile_for_version("0.4.0").sampler_names) == CORE_SAMPLERS_0_3_64
    assert list(profile_for_version("0.5.0").sampler_names) == CORE_SAMPLERS


def test_profiles_match_the_golden_sets_metadata(golden_dir):
    import json

    from stepwise_sampler.sampling.profile import profile_for_version

    for root in (golden_dir, golden_dir.parent / "golden-v0.8.0", golden_dir.parent / "golden-v0.33.0"):
        if not (root / "cases.json").exists():
            continue
        meta = json.loads((root / "cases.json").read_text())
        profile = profile_for_version(meta["comfyui_version"])
        assert list(profile.sampler_names) == meta["samplers"]
        assert list(profile.scheduler_names) == meta["schedulers"]


class PlainModel:
    """A smooth stand-in denoiser: D(x, sigma) = x * c(sigma) with a data scale of 0.8."""

    calls = 0

    def __call__(self, x, sigma, **extra_args):
        PlainModel.calls += 1
        s = sigma.view(-1, *([1] * (x.ndim - 1)))
        return x * (0.64 / (0.64 + s ** 2))


def _run(name, sigmas, seed=7, callback=None):
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    return SAMPLERS[name](PlainModel(), x, sigmas.clone(), extra_args={"seed": seed}, callback=callback,
                          disable=True)


@pytest.mark.parametrize("name", CORE_SAMPLERS)
def test_sampler_contract(name):
    fn = SAMPLERS[name]
    params = list(inspect.signature(fn).parameters)
    assert params[:6] == ["model", "x", "sigmas", "extra_args", "callback", "disable"]
    assert fn.__doc__ and fn.__doc__.strip(), f"{name} needs a docstring naming its method"
    sigmas = ksampler_sigmas(MS, "karras", discards_penultimate(name), 8)
    events = []
    out1 = _run(name, sigmas, callback=events.append)
    out2 = _run(name, sigmas)
    assert out1.shape == (2, 4, 8, 8) and out1.dtype == torch.float32
    assert torch.isfinite(out1).all()
    assert torch.equal(out1, out2), "same seed must give the same result"
    assert events and all({"i", "x", "denoised"} <= set(e) for e in events)
    assert [e["i"] for e in events] == sorted(e["i"] for e in events)
    # the data distribution has std 0.8: a finished sample should be in that range, not noise-sized
    assert 0.05 < out1.std().item() < 3.0


@pytest.mark.parametrize("name", CORE_SAMPLERS)
def test_sampler_short_schedules(name):
    """One step, and a schedule ending above zero (leftover noise), both work."""
    one = ksampler_sigmas(MS, "normal", discards_penultimate(name), 1)
    assert torch.isfinite(_run(name, one)).all()
    partial = ksampler_sigmas(MS, "normal", discards_penultimate(name), 10)[:5]
    assert float(partial[-1]) > 0
    assert torch.isfinite(_run(name, partial)).all()


@pytest.mark.parametrize("name", [n for n in CORE_SAMPLERS if n.endswith("_cfg_pp")])
def test_cfg_pp_samplers_read_the_uncond_tap(name):
    class Guided(PlainModel):
        requested = 0

        def request_uncond(self, extra_args):
            Guided.requested += 1
            tap = UncondTap()
            return {**extra_args, "tap": tap}, tap

        def __call__(self, x, sigma, tap=None, **kw):
            out = super().__call__(x, sigma)
            if tap is not None:
                tap.value = out * 0.5
            return out

    sigmas = ksampler_sigmas(MS, "karras", discards_penultimate(name), 6)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * sigmas[0]
    guided = SAMPLERS[name](Guided(), x, sigmas, extra_args={"seed": 1}, disable=True)
    plain = SAMPLERS[name](PlainModel(), x, sigmas, extra_args={"seed": 1}, disable=True)
    assert Guided.requested == 1
    assert not torch.allclose(guided, plain), "a different uncond must change a CFG++ result"


@pytest.mark.parametrize("name", CORE_SCHEDULERS)
@pytest.mark.parametrize("steps", [1, 2, 7, 20, 50])
def test_scheduler_contract(name, steps):
    sig = SCHEDULERS[name](MS, steps)
    assert sig.dtype == torch.float32 and sig.ndim == 1
    assert float(sig[-1]) == 0.0
    if name == "kl_optimal" and steps == 1:
        assert math.isnan(float(sig[0]))  # ComfyUI's 0/0, kept on purpose
        return
    assert torch.isfinite(sig).all()
    assert bool((sig[:-1] >= sig[1:]).all()), "sigmas must not increase"
    if name not in ("ddim_uniform", "beta"):
        assert len(sig) == steps + 1


@pytest.mark.parametrize("name", sorted(DISCARD_PENULTIMATE_SIGMA_SAMPLERS))
def test_discard_penultimate(name):
    full = SCHEDULERS["karras"](MS, 11)
    got = ksampler_sigmas(MS, "karras", discards_penultimate(name), 10)
    assert torch.equal(got, torch.cat([full[:-2], full[-1:]]))


def test_sampler_runs_on_float64_inputs():
    sigmas = ksampler_sigmas(MS, "karras", discards_penultimate("euler"), 5).double()
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64) * 14
    out = SAMPLERS["dpmpp_2m"](PlainModel(), x, sigmas, extra_args={"seed": 1}, disable=True)
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2", "heunpp2"])
def test_churn_option_is_seeded_and_changes_the_result(name):
    sigmas = ksampler_sigmas(MS, "karras", discards_penultimate(name), 8)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2)) * sigmas[0]
    run = lambda **kw: SAMPLERS[name](PlainModel(), x, sigmas, extra_args={"seed": 5}, disable=True, **kw)  # noqa
    plain, churned, again = run(), run(s_churn=1.0), run(s_churn=1.0)
    assert torch.equal(churned, again) and not torch.allclose(plain, churned)
