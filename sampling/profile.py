"""Behaviour profiles: where ComfyUI releases differ in numbers, one named flag in one frozen object.

A profile is chosen once, by the node layer (from the installed ComfyUI's version, or standalone from
``--comfy-version``, or by the golden runner from a set's ``comfyui_version``), and handed down to
``common_ksampler``; no sampler ever checks a version. The release in which each change first shipped was
read from ComfyUI's history (the commit that made it, and the first release tag that contains it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Profile", "PROFILES", "NEWEST", "OLDEST", "profile_for_version", "parse_version",
           "SAMPLER_NAMES_0_3_64", "SAMPLER_NAMES_0_5_0", "SCHEDULER_NAMES_CORE"]

#: core's sampler combo of 0.3.64 (KSAMPLER_NAMES + ddim, uni_pc, uni_pc_bh2), in core's order
SAMPLER_NAMES_0_3_64 = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2")
#: from 0.5.0 (ComfyUI commit 827bb151): exp_heun_2_x0 and exp_heun_2_x0_sde right after heunpp2
SAMPLER_NAMES_0_5_0 = SAMPLER_NAMES_0_3_64[:6] + ("exp_heun_2_x0", "exp_heun_2_x0_sde") + SAMPLER_NAMES_0_3_64[6:]
#: core's scheduler combo (unchanged from 0.3.64 to 0.8.0)
SCHEDULER_NAMES_CORE = ("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                        "linear_quadratic", "kl_optimal")


def parse_version(text: str) -> tuple[int, ...]:
    """'0.8.0' -> (0, 8, 0); 'v0.3.64-rc1' -> (0, 3, 64). A ValueError names what is wrong."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not m:
        raise ValueError(f"comfy_version: {text!r} is not a version like 0.8.0")
    return tuple(int(g or 0) for g in m.groups())


@dataclass(frozen=True)
class Profile:
    """The numbers-affecting behaviour of one ComfyUI release."""

    #: the release this profile reproduces (a golden set exists for 0.3.64, 0.8.0 and 0.33.0)
    comfyui_version: str
    #: the default per-step noise generator is seeded with ``seed + this`` when the latent is on the CPU
    #: (0.7.0, ComfyUI commit 1e4e342f: "Fix noise with ancestral samplers when inferencing on cpu")
    cpu_noise_seed_offset: int
    #: sa_solver(_pece) returns its last prediction ``x_pred`` (0.5.1, commit 5d9ad0c6); before, ``x``
    sa_solver_returns_prediction: bool
    #: core's sampler and scheduler combos, in core's order
    sampler_names: tuple[str, ...]
    scheduler_names: tuple[str, ...] = SCHEDULER_NAMES_CORE
    #: the initial noise is drawn in float32 and then cast to the latent's dtype (0.18.1, commit 11c15d88 "Fix fp16
    #: intermediates giving different results"); before, ``randn`` drew in the latent's dtype (fp16/bf16 differ)
    noise_drawn_in_float32: bool = False
    #: ``model_sampling.noise_scale`` (a model setting, default 1.0) multiplies ``s_noise`` in the stochastic samplers
    #: (0.21.1, commit 8e53f001); only a model that sets it sees different numbers
    noise_scale_multiplies_s_noise: bool = False
    #: a LATENT's ``downscale_ratio_spacial``/``downscale_ratio_temporal`` resize an all-zero latent to the model's
    #: scale, and the sampler nodes drop both keys from their output (0.22.0, commit 990a7ae7)
    latent_downscale_keys: bool = False

    @property
    def label(self) -> str:
        return f"ComfyUI {self.comfyui_version}"


def profile_for_version(version: str | tuple[int, ...]) -> Profile:
    """The behaviour of a given ComfyUI release (releases older than 0.3.64 get 0.3.64's behaviour)."""
    v = parse_version(version) if isinstance(version, str) else tuple(version)
    text = ".".join(map(str, v))
    return Profile(
        comfyui_version=text,
        cpu_noise_seed_offset=1 if v >= (0, 7, 0) else 0,
        sa_solver_returns_prediction=v >= (0, 5, 1),
        sampler_names=SAMPLER_NAMES_0_5_0 if v >= (0, 5, 0) else SAMPLER_NAMES_0_3_64,
        noise_drawn_in_float32=v >= (0, 18, 1),
        noise_scale_multiplies_s_noise=v >= (0, 21, 1),
        latent_downscale_keys=v >= (0, 22, 0),
    )


OLDEST = profile_for_version("0.3.64")
NEWEST = profile_for_version("0.33.0")
#: the profiles checked against golden sets
PROFILES = {p.comfyui_version: p for p in (OLDEST, profile_for_version("0.8.0"), NEWEST)}
