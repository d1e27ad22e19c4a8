"""The sampler registry: ComfyUI's sampler names -> functions with the k-diffusion signature."""
from __future__ import annotations

import inspect
from typing import Callable

import torch

from . import dpm_solver, dpmpp, euler, multistep, stochastic, unipc

__all__ = ["SAMPLERS", "SAMPLER_NAMES", "RANDOM_INPAINT_NOISE_SAMPLERS", "CFG_PP_SAMPLERS", "SDE_NOISE_SAMPLERS",
           "ACCEPTS_NOISE_SAMPLER", "SELF_STEPPING_SAMPLERS", "BATCH_COUPLED_SAMPLERS", "profile_options",
           "get_sampler"]

SamplerFn = Callable[..., torch.Tensor]

#: name -> sampler, in ComfyUI's combo order (the newest release's; a profile lists the names of its release).
SAMPLERS: dict[str, SamplerFn] = {
    "euler": euler.sample_euler,
    "euler_cfg_pp": euler.sample_euler_cfg_pp,
    "euler_ancestral": euler.sample_euler_ancestral,
    "euler_ancestral_cfg_pp": euler.sample_euler_ancestral_cfg_pp,
    "heun": euler.sample_heun,
    "heunpp2": euler.sample_heunpp2,
    "exp_heun_2_x0": stochastic.sample_exp_heun_2_x0,
    "exp_heun_2_x0_sde": stochastic.sample_exp_heun_2_x0_sde,
    "dpm_2": euler.sample_dpm_2,
    "dpm_2_ancestral": euler.sample_dpm_2_ancestral,
    "lms": euler.sample_lms,
    "dpm_fast": dpm_solver.sample_dpm_fast,
    "dpm_adaptive": dpm_solver.sample_dpm_adaptive,
    "dpmpp_2s_ancestral": dpmpp.sample_dpmpp_2s_ancestral,
    "dpmpp_2s_ancestral_cfg_pp": dpmpp.sample_dpmpp_2s_ancestral_cfg_pp,
    "dpmpp_sde": dpmpp.sample_dpmpp_sde,
    "dpmpp_sde_gpu": dpmpp.sample_dpmpp_sde_gpu,
    "dpmpp_2m": dpmpp.sample_dpmpp_2m,
    "dpmpp_2m_cfg_pp": dpmpp.sample_dpmpp_2m_cfg_pp,
    "dpmpp_2m_sde": dpmpp.sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_gpu": dpmpp.sample_dpmpp_2m_sde_gpu,
    "dpmpp_2m_sde_heun": dpmpp.sample_dpmpp_2m_sde_heun,
    "dpmpp_2m_sde_heun_gpu": dpmpp.sample_dpmpp_2m_sde_heun_gpu,
    "dpmpp_3m_sde": dpmpp.sample_dpmpp_3m_sde,
    "dpmpp_3m_sde_gpu": dpmpp.sample_dpmpp_3m_sde_gpu,
    "ddpm": stochastic.sample_ddpm,
    "lcm": stochastic.sample_lcm,
    "ipndm": multistep.sample_ipndm,
    "ipndm_v": multistep.sample_ipndm_v,
    "deis": multistep.sample_deis,
    "res_multistep": multistep.sample_res_multistep,
    "res_multistep_cfg_pp": multistep.sample_res_multistep_cfg_pp,
    "res_multistep_ancestral": multistep.sample_res_multistep_ancestral,
    "res_multistep_ancestral_cfg_pp": multistep.sample_res_multistep_ancestral_cfg_pp,
    "gradient_estimation": multistep.sample_gradient_estimation,
    "gradient_estimation_cfg_pp": multistep.sample_gradient_estimation_cfg_pp,
    "er_sde": stochastic.sample_er_sde,
    "seeds_2": stochastic.sample_seeds_2,
    "seeds_3": stochastic.sample_seeds_3,
    "sa_solver": stochastic.sample_sa_solver,
    "sa_solver_pece": stochastic.sample_sa_solver_pece,
    # ComfyUI's "ddim" is Euler plus a seeded inpaint noise (see RANDOM_INPAINT_NOISE_SAMPLERS).
    "ddim": euler.sample_euler,
    "uni_pc": unipc.sample_unipc,
    "uni_pc_bh2": unipc.sample_unipc_bh2,
}
SAMPLER_NAMES: list[str] = list(SAMPLERS)

#: Samplers whose k-diffusion function takes a ``noise_sampler`` (so they receive the run's NoiseSource).
ACCEPTS_NOISE_SAMPLER = frozenset(name for name, fn in SAMPLERS.items()
                                  if "noise_sampler" in inspect.signature(fn).parameters)

#: Samplers whose step sizes depend on the whole batch (an error norm over all items): per_item noise runs them
#: item by item so every item equals its batch-1 run.
BATCH_COUPLED_SAMPLERS = frozenset({"dpm_adaptive"})

#: Samplers that choose their own steps (adaptive or fixed-NFE): a schedule cannot be split between nodes.
SELF_STEPPING_SAMPLERS = frozenset({"dpm_fast", "dpm_adaptive"})

#: Options a profile sets per sampler (one named flag each; the samplers never check a version).
def profile_options(name: str, profile) -> dict:
    if name in ("sa_solver", "sa_solver_pece") and profile is not None and profile.sa_solver_returns_prediction:
        return {"return_prediction": True}
    return {}


#: Samplers whose inpainting (noise_mask) noise is a fresh draw seeded with seed+1, not the node noise.
RANDOM_INPAINT_NOISE_SAMPLERS = frozenset({"ddim"})

#: Samplers driven by Brownian-motion noise; they accept ``noise_source`` ("brownian" or "fast").
SDE_NOISE_SAMPLERS = frozenset({"dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun",
                                "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu"})

#: Samplers that read the unconditional prediction (they force the uncond pass even at cfg 1).
CFG_PP_SAMPLERS = frozenset(name for name in SAMPLER_NAMES if name.endswith("_cfg_pp"))


def get_sampler(name: str) -> SamplerFn:
    try:
        return SAMPLERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"sampler_name: unknown sampler {name!r}; allowed: {', '.join(SAMPLER_NAMES)}") from None
