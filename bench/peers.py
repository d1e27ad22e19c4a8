"""Peers measured in the same run: the k-diffusion package's samplers and diffusers' schedulers.

k-diffusion's package ``__init__`` and ``utils`` import torchvision (which does not load beside the
CPU torch build), so its ``sampling`` module is loaded on its own, with the one helper it needs.
Install it with ``pip install --no-deps k-diffusion==0.1.1.post1`` (its dependencies would replace torch).
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

__all__ = ["load_k_diffusion_sampling", "K_DIFFUSION_SHARED", "diffusers_schedulers"]

#: our sampler name -> k-diffusion function name (same algorithm)
K_DIFFUSION_SHARED = {
    "euler": "sample_euler", "euler_ancestral": "sample_euler_ancestral", "heun": "sample_heun",
    "dpm_2": "sample_dpm_2", "dpm_2_ancestral": "sample_dpm_2_ancestral", "lms": "sample_lms",
    "dpmpp_2s_ancestral": "sample_dpmpp_2s_ancestral", "dpmpp_sde": "sample_dpmpp_sde",
    "dpmpp_2m": "sample_dpmpp_2m", "dpmpp_2m_sde": "sample_dpmpp_2m_sde", "dpmpp_3m_sde": "sample_dpmpp_3m_sde",
}


def load_k_diffusion_sampling():
    spec = importlib.util.find_spec("k_diffusion")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("k-diffusion is not installed: pip install --no-deps k-diffusion==0.1.1.post1 "
                           "(and pip install -e .[bench] for torchdiffeq)")
    root = Path(list(spec.submodule_search_locations)[0])
    pkg = types.ModuleType("kdiff_peer")
    pkg.__path__ = [str(root)]
    utils = types.ModuleType("kdiff_peer.utils")

    def append_dims(x, target_dims):
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims
    sys.modules.setdefault("kdiff_peer", pkg)
    sys.modules.setdefault("kdiff_peer.utils", utils)
    pkg.utils = utils
    sspec = importlib.util.spec_from_file_location("kdiff_peer.sampling", root / "sampling.py")
    module = importlib.util.module_from_spec(sspec)
    sys.modules["kdiff_peer.sampling"] = module
    sspec.loader.exec_module(module)
    return module


def diffusers_schedulers():
    """Our sampler name -> a configured diffusers scheduler with the equivalent algorithm."""
    import diffusers

    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    return {
        "euler": diffusers.EulerDiscreteScheduler(**common),
        "euler_ancestral": diffusers.EulerAncestralDiscreteScheduler(**common),
        "heun": diffusers.HeunDiscreteScheduler(**common),
        "dpm_2": diffusers.KDPM2DiscreteScheduler(**common),
        "lms": diffusers.LMSDiscreteScheduler(**common),
        "dpmpp_2m": diffusers.DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++"),
        "dpmpp_2m_sde": diffusers.DPMSolverMultistepScheduler(**common, algorithm_type="sde-dpmsolver++"),
        "uni_pc": diffusers.UniPCMultistepScheduler(**common),
        "deis": diffusers.DEISMultistepScheduler(**common),
        "ddim": diffusers.DDIMScheduler(**common),
    }
