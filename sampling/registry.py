"""The sampler registry: ComfyUI's sampler names -> functions with the k-diffusion signature."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch

from . import dpm_solver, dpmpp, euler, exponential_rk, fitted_solver, multistep, stochastic, unipc

__all__ = ["SAMPLERS", "SAMPLER_NAMES", "TRAITS", "SamplerTraits", "RANDOM_INPAINT_NOISE_SAMPLERS", "CFG_PP_SAMPLERS",
           "ACCEPTS_NOISE_SAMPLER", "SELF_STEPPING_SAMPLERS", "BATCH_COUPLED_SAMPLERS",
           "DISCARD_PENULTIMATE_SIGMA_SAMPLERS", "FITTABLE_SAMPLERS", "NAMED_SAMPLERS", "discards_penultimate",
           "profile_options",
           "get_sampler", "SamplerSpec"]

SamplerFn = Callable[..., torch.Tensor]

#: name -> sampler: ComfyUI's names in its combo order (the newest release's; a profile lists the names of its
#: release), then the ones only Stepwise has.
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
    # ComfyUI's "ddim" is Euler plus a seeded inpaint noise (see SamplerTraits.random_inpaint_noise).
    "ddim": euler.sample_euler,
    "uni_pc": unipc.sample_unipc,
    "uni_pc_bh2": unipc.sample_unipc_bh2,
    # beyond core's list (Sampler (Stepwise) offers them): RES single-step exponential Runge-Kutta
    "res_2s": exponential_rk.sample_res_2s,
    "res_3s": exponential_rk.sample_res_3s,
    # a fitted solver (Fit Solver (Stepwise), sampling.fit_solver): runs only with its fitted sigmas and coefficients
    "fitted": fitted_solver.sample_fitted,
}
SAMPLER_NAMES: list[str] = list(SAMPLERS)


@dataclass(frozen=True)
class SamplerTraits:
    """What the rest of the pack needs to know about a sampler, in one record (exported to the editor by
    ``/stepwise/sigmas``'s ``traits`` answer)."""

    name: str
    #: takes a ``noise_sampler`` (and so receives the run's NoiseSource)
    accepts_noise_sampler: bool
    #: chooses its own steps (adaptive or fixed-NFE): a schedule cannot be split between nodes, nor fitted
    self_stepping: bool
    #: its step sizes depend on the whole batch (an error norm over all items): per_item noise runs it item by item
    batch_coupled: bool
    #: its schedule is computed for steps+1 and loses the penultimate sigma (ComfyUI's rule: the last step would
    #: otherwise be a second-order step to a near-zero sigma)
    discards_penultimate: bool
    #: its inpainting (noise_mask) noise is a fresh draw seeded with seed+1, not the node's noise (ComfyUI's ddim)
    random_inpaint_noise: bool
    #: reads the unconditional prediction (forces the uncond pass even at cfg 1)
    cfg_pp: bool
    #: deterministic with a fixed step list: a schedule (or a solver) can be fitted for it
    fittable: bool
    #: a fitted solver: runs only with the options (sigmas, coefficients) a fit gave it, never chosen by name
    fitted: bool = False

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


_SELF_STEPPING = {"dpm_fast", "dpm_adaptive"}
_DISCARD_PENULTIMATE = {"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"}
_FITTABLE = ("euler", "heun", "heunpp2", "dpm_2", "lms", "dpmpp_2m", "ipndm", "ipndm_v", "deis", "res_multistep",
             "gradient_estimation", "uni_pc", "uni_pc_bh2", "exp_heun_2_x0", "res_2s", "res_3s")

TRAITS: dict[str, SamplerTraits] = {
    name: SamplerTraits(
        name=name,
        accepts_noise_sampler="noise_sampler" in inspect.signature(fn).parameters,
        self_stepping=name in _SELF_STEPPING,
        batch_coupled=name == "dpm_adaptive",
        discards_penultimate=name in _DISCARD_PENULTIMATE,
        random_inpaint_noise=name == "ddim",  # ComfyUI's "ddim" is Euler plus a seeded inpaint noise
        cfg_pp=name.endswith("_cfg_pp"),
        fittable=name in _FITTABLE,
        fitted=name == "fitted",
    ) for name, fn in SAMPLERS.items()}

#: derived views of the traits, for the places that test membership
ACCEPTS_NOISE_SAMPLER = frozenset(n for n, t in TRAITS.items() if t.accepts_noise_sampler)
BATCH_COUPLED_SAMPLERS = frozenset(n for n, t in TRAITS.items() if t.batch_coupled)
SELF_STEPPING_SAMPLERS = frozenset(n for n, t in TRAITS.items() if t.self_stepping)
RANDOM_INPAINT_NOISE_SAMPLERS = frozenset(n for n, t in TRAITS.items() if t.random_inpaint_noise)
CFG_PP_SAMPLERS = frozenset(n for n, t in TRAITS.items() if t.cfg_pp)
DISCARD_PENULTIMATE_SIGMA_SAMPLERS = frozenset(n for n, t in TRAITS.items() if t.discards_penultimate)
FITTABLE_SAMPLERS = tuple(n for n in _FITTABLE if n in TRAITS)
#: the samplers a user can choose by name (Sampler (Stepwise)'s list, the contract tests): all but fitted solvers
NAMED_SAMPLERS = tuple(n for n, t in TRAITS.items() if not t.fitted)


def discards_penultimate(name: str) -> bool:
    """ComfyUI's rule by name (also for a host's own samplers this pack does not implement)."""
    return name in _DISCARD_PENULTIMATE


#: samplers whose ``s_noise`` ComfyUI multiplies by ``model_sampling.noise_scale`` (from 0.21.1) ...
NOISE_SCALED = frozenset({
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "euler_ancestral_cfg_pp", "dpmpp_2s_ancestral_cfg_pp", "res_multistep",
    "res_multistep_cfg_pp", "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece"})
#: ... and these only in their flow-model (``_RF``) branch
NOISE_SCALED_FLOW = frozenset({"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral"})


def profile_options(name: str, profile, noise_scale: float = 1.0, flow: bool = False) -> dict:
    """Options a profile sets per sampler (one named flag each; the samplers never check a version).
    ``noise_scale`` is the model's ``model_sampling.noise_scale`` (1.0 unless a model sets it)."""
    options = {}
    if name in ("sa_solver", "sa_solver_pece") and profile is not None and profile.sa_solver_returns_prediction:
        options["return_prediction"] = True
    if noise_scale != 1.0 and profile is not None and profile.noise_scale_multiplies_s_noise and \
            (name in NOISE_SCALED or flow and name in NOISE_SCALED_FLOW):
        default = inspect.signature(SAMPLERS[name]).parameters["s_noise"].default
        options["s_noise"] = default * noise_scale
    return options


def get_sampler(name: str) -> SamplerFn:
    try:
        return SAMPLERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"sampler_name: unknown sampler {name!r}; allowed: {', '.join(SAMPLER_NAMES)}") from None


@dataclass(frozen=True)
class SamplerSpec:
    """A SAMPLER as plain data (Sampler (Stepwise)'s output): a registered sampler name and the keyword options it
    runs with."""

    name: str
    options: tuple[tuple[str, object], ...] = ()

    def kwargs(self) -> dict:
        return dict(self.options)
