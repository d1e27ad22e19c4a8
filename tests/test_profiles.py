"""Behaviour profiles: one named flag per difference between ComfyUI releases, chosen by the node layer."""
from __future__ import annotations

import json

import pytest
import torch

from stepwise_sampler.nodes import StepwiseKSampler
from stepwise_sampler.host.profile import current_profile, set_standalone_profile, use_profile
from stepwise_sampler.sampling.profile import NEWEST, OLDEST, parse_version, profile_for_version


def test_release_thresholds():
    assert profile_for_version("0.3.64").cpu_noise_seed_offset == 0
    assert profile_for_version("0.6.0").cpu_noise_seed_offset == 0
    assert profile_for_version("0.7.0").cpu_noise_seed_offset == 1
    assert not profile_for_version("0.5.0").sa_solver_returns_prediction
    assert profile_for_version("0.5.1").sa_solver_returns_prediction
    assert "exp_heun_2_x0" not in profile_for_version("0.4.0").sampler_names
    assert "exp_heun_2_x0" in profile_for_version("0.5.0").sampler_names
    assert parse_version("v0.3.64-rc1") == (0, 3, 64)
    with pytest.raises(ValueError, match="comfy_version"):
        parse_version("banana")


def test_standalone_default_is_the_newest_and_can_be_chosen():
    assert current_profile() is NEWEST
    try:
        set_standalone_profile("0.3.64")
        assert current_profile().comfyui_version == "0.3.64"
        assert "exp_heun_2_x0" not in StepwiseKSampler.INPUT_TYPES()["required"]["sampler_name"][0]
    finally:
        set_standalone_profile(NEWEST)
    assert "exp_heun_2_x0" in StepwiseKSampler.INPUT_TYPES()["required"]["sampler_name"][0]


@pytest.mark.parametrize("sampler", ["euler_ancestral", "lcm", "er_sde", "sa_solver"])
def test_the_cpu_noise_offset_changes_ancestral_numbers_only(toy, sampler):
    model, t = toy
    args = (model, 42, 6, 7.0, sampler, "karras", [[t["ctx_pos"], {}]], [[t["ctx_neg"], {}]],
            {"samples": torch.zeros(1, 4, 8, 8)}, 1.0)
    with use_profile(OLDEST):
        old = StepwiseKSampler().sample(*args)[0]["samples"]
    with use_profile(NEWEST):
        new = StepwiseKSampler().sample(*args)[0]["samples"]
    assert not torch.equal(old, new)
    with use_profile(OLDEST):
        e_old = StepwiseKSampler().sample(*args[:4], "euler", *args[5:])[0]["samples"]
    with use_profile(NEWEST):
        e_new = StepwiseKSampler().sample(*args[:4], "euler", *args[5:])[0]["samples"]
    assert torch.equal(e_old, e_new)


def test_cli_comfy_version(tmp_path, capsys):
    from stepwise_sampler.standalone.cli import main
    from test_hardening import txt2img

    prompt = txt2img("v")
    prompt["6"]["inputs"]["sampler_name"] = "euler_ancestral"
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(prompt))
    outs = {}
    for version in ("0.3.64", "0.8.0"):
        assert main(["run", str(path), "--out", str(tmp_path / version), "--comfy-version", version]) == 0
        outs[version] = next((tmp_path / version).glob("*.png")).read_bytes()
    set_standalone_profile(NEWEST)
    assert outs["0.3.64"] != outs["0.8.0"]
    assert main(["run", str(path), "--out", str(tmp_path / "x"), "--comfy-version", "nope"]) == 2
    assert "--comfy-version" in capsys.readouterr().err
    set_standalone_profile(NEWEST)


def test_nested_latents_standalone_get_a_clear_error(toy):
    model, t = toy

    class Nested:
        is_nested = True

        def unbind(self):
            return [torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 2, 4, 4)]

    with pytest.raises(ValueError, match="latent_image: nested latents"):
        StepwiseKSampler().sample(model, 1, 4, 7.0, "euler", "karras", [[t["ctx_pos"], {}]], [[t["ctx_neg"], {}]],
                                  {"samples": Nested()}, 1.0)


# --- ComfyUI 0.33.0 --------------------------------------------------------------------------------------------

def test_0_33_thresholds():
    p0180, p0181 = profile_for_version("0.18.0"), profile_for_version("0.18.1")
    assert not p0180.noise_drawn_in_float32 and p0181.noise_drawn_in_float32
    assert not profile_for_version("0.21.0").noise_scale_multiplies_s_noise
    assert profile_for_version("0.21.1").noise_scale_multiplies_s_noise
    assert not profile_for_version("0.21.1").latent_downscale_keys and profile_for_version("0.22.0").latent_downscale_keys
    assert NEWEST.comfyui_version == "0.33.0"


def _ks(toy, latent, sampler="euler", profile=NEWEST):
    model, t = toy
    with use_profile(profile):
        return StepwiseKSampler().sample(model, 42, 4, 7.0, sampler, "karras", [[t["ctx_pos"], {}]],
                                         [[t["ctx_neg"], {}]], latent, 1.0)[0]


def test_fp16_latents_draw_noise_in_float32_from_0_18_1(toy):
    """0.33 draws randn in float32 and casts (fp16 intermediates); 0.8.0 drew in the latent's dtype."""
    from stepwise_sampler.sampling.noise import NoiseSource

    latent = torch.zeros(1, 4, 8, 8, dtype=torch.float16)
    new = NoiseSource(7, float32_draws=True).initial(latent)
    old = NoiseSource(7).initial(latent)
    g = torch.Generator().manual_seed(7)
    assert torch.equal(new, torch.randn(1, 4, 8, 8, generator=g).half())
    g = torch.Generator().manual_seed(7)
    assert torch.equal(old, torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float16))
    # float32 latents: the same numbers either way (the golden sets)
    f32 = torch.zeros(1, 4, 8, 8)
    assert torch.equal(NoiseSource(7, float32_draws=True).initial(f32), NoiseSource(7).initial(f32))
    from stepwise_sampler.sampling.request import SamplingRequest

    for profile, expected in ((profile_for_version("0.8.0"), old), (NEWEST, new)):
        request = SamplingRequest.from_widgets(profile, seed=7, steps=4, cfg=7.0, sampler_name="euler",
                                               scheduler="karras")
        assert torch.equal(request.noise_source().initial(latent), expected)


def test_downscale_keys_resize_empty_latents_and_leave_the_output(toy):
    out = _ks(toy, {"samples": torch.zeros(1, 4, 8, 8), "downscale_ratio_spacial": 8})
    assert "downscale_ratio_spacial" not in out and out["samples"].shape == (1, 4, 8, 8)
    out = _ks(toy, {"samples": torch.zeros(1, 4, 8, 8), "downscale_ratio_spacial": 16})
    assert out["samples"].shape == (1, 4, 16, 16)  # made for a 16x VAE: this model's latent is twice as large
    old = _ks(toy, {"samples": torch.zeros(1, 4, 8, 8), "downscale_ratio_spacial": 16},
              profile=profile_for_version("0.8.0"))
    assert old["samples"].shape == (1, 4, 8, 8) and old["downscale_ratio_spacial"] == 16


@pytest.mark.parametrize("sampler,flow,scaled", [("dpmpp_2m_sde", False, True), ("euler_ancestral", False, False),
                                                 ("euler_ancestral", True, True), ("euler", True, False)])
def test_noise_scale_multiplies_s_noise(sampler, flow, scaled):
    from stepwise_sampler.sampling.registry import profile_options

    opts = profile_options(sampler, NEWEST, noise_scale=0.5, flow=flow)
    assert opts.get("s_noise") == (0.5 if scaled else None)
    assert profile_options(sampler, profile_for_version("0.8.0"), noise_scale=0.5, flow=flow).get("s_noise") is None
    assert profile_options(sampler, NEWEST, noise_scale=1.0, flow=flow).get("s_noise") is None
