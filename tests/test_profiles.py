"""Behaviour profiles: one named flag per difference between ComfyUI releases, chosen by the node layer."""
from __future__ import annotations

import json

import pytest
import torch

from stepwise_sampler.nodes import StepwiseKSampler
from stepwise_sampler.nodes.profile import current_profile, set_standalone_profile, use_profile
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
    assert "comfy_version" in capsys.readouterr().err
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
