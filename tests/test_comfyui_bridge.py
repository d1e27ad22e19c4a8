"""Optional integration test: our nodes inside a real ComfyUI equal ComfyUI's own KSampler.

Runs only when STEPWISE_COMFYUI points at a ComfyUI checkout (with its requirements installed).
CI has no ComfyUI, so there it is skipped with that reason; the golden tests cover the numbers.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import types

import pytest
import torch

COMFY = os.environ.get("STEPWISE_COMFYUI")
pytestmark = pytest.mark.skipif(not COMFY, reason="set STEPWISE_COMFYUI to a ComfyUI checkout to run")


class _Stub(types.ModuleType):
    """A module whose every attribute is a placeholder: enough for ComfyUI's imports on its sampling path."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *a, **k: None})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``torchvision``, ``torchaudio`` and any of their submodules with a :class:`_Stub`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in ("torchvision", "torchaudio"):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Stub(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


@pytest.fixture(scope="module")
def comfy_env():
    sys.path.insert(0, COMFY)
    sys.meta_path.insert(0, _StubFinder())  # torchvision/torchaudio do not load beside the CPU torch
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models
    import nodes

    return nodes, comfy


class _ToyUNet(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.dtype = torch.float32

    def forward(self, x, timesteps=None, context=None, **kwargs):
        return self.net(x, timesteps, context)


def _patcher(comfy, toy_net):
    config = comfy.supported_models.SD15({"disable_unet_model_creation": True})
    base = comfy.model_base.BaseModel(config, device=torch.device("cpu"))
    base.diffusion_model = _ToyUNet(toy_net)
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def _older_than(version: str) -> bool:
    """The ComfyUI under test is older than ``version`` (numerically: 0.33 is newer than 0.8)."""
    def key(v):
        return tuple(int(p) for p in re.findall(r"\d+", v)[:3])
    return key(_installed_version()) < key(version)


def _installed_version() -> str:
    import re
    from pathlib import Path

    text = (Path(COMFY) / "comfyui_version.py").read_text() if COMFY else ""
    m = re.search(r'__version__ = "([^"]+)"', text)
    return m.group(1) if m else "0.8.0"


from stepwise_sampler.sampling.profile import profile_for_version  # noqa: E402

SAMPLER_NAMES = list(profile_for_version(_installed_version()).sampler_names)


def _latent(ret):
    """Inside ComfyUI our plain nodes return {"ui": {"stepwise": sigmas}, "result": (latent,)} so the editor
    can plot the schedule; check that shape and hand back the latent."""
    assert isinstance(ret, dict), type(ret)
    assert set(ret) == {"ui", "result"}
    assert ret["ui"]["stepwise"], ret["ui"]
    (latent,) = ret["result"]
    return latent

CASES = [(name, "karras", 5.0, None) for name in SAMPLER_NAMES] + [
    ("euler", "normal", 7.0, None), ("euler_ancestral", "karras", 7.0, None), ("dpmpp_2m_sde", "karras", 7.0, None),
    ("uni_pc", "normal", 7.0, None), ("dpmpp_2m_cfg_pp", "karras", 1.0, None), ("res_multistep_cfg_pp", "normal", 4.0, None),
    ("sa_solver", "karras", 7.0, None), ("ddim", "normal", 7.0, "mask"), ("lcm", "normal", 7.0, "mask"),
    ("dpm_adaptive", "normal", 7.0, None), ("heunpp2", "beta", 2.0, None),
]


@pytest.mark.parametrize("sampler, scheduler, cfg, mask", CASES)
def test_stepwise_nodes_equal_core_nodes_inside_comfyui(comfy_env, golden_set, sampler, scheduler, cfg, mask):
    nodes, comfy = comfy_env
    from stepwise_sampler.nodes import StepwiseKSampler, StepwiseKSamplerAdvanced

    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    latent = {"samples": golden_set.tensors["latent/img_1x4x8x8"].clone()}
    if mask:
        latent["noise_mask"] = golden_set.tensors["mask/half_1x1x8x8"].clone()
    args = (patcher, 42, 8, cfg, sampler, scheduler, pos, neg, latent, 0.7)
    (core,) = nodes.KSampler().sample(*args)
    ours = _latent(StepwiseKSampler().sample(*args))
    assert torch.allclose(ours["samples"], core["samples"], rtol=1e-5, atol=1e-5)

    adv = (patcher, "enable", 42, 10, cfg, sampler, scheduler, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, 2, 7,
           "enable")
    (core_a,) = nodes.KSamplerAdvanced().sample(*adv)
    ours_a = _latent(StepwiseKSamplerAdvanced().sample(*adv))
    assert torch.allclose(ours_a["samples"], core_a["samples"], rtol=1e-5, atol=1e-5)


FLOW_SAMPLERS = SAMPLER_NAMES


@pytest.mark.parametrize("sampler", FLOW_SAMPLERS)
def test_flow_models_inside_comfyui(comfy_env, golden_set, sampler):
    """Rectified-flow (CONST) models take other ancestral/SNR formulas; they must match core too."""
    nodes, comfy = comfy_env
    from stepwise_sampler.nodes import StepwiseKSampler

    config = comfy.supported_models.SD15({"disable_unet_model_creation": True})
    base = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.FLOW, device=torch.device("cpu"))
    base.diffusion_model = _ToyUNet(golden_set.model.network)
    patcher = comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    args = (patcher, 3, 8, 3.0, sampler, "simple", pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, 1.0)
    (core,) = nodes.KSampler().sample(*args)
    ours = _latent(StepwiseKSampler().sample(*args))
    assert torch.allclose(ours["samples"], core["samples"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m_sde"])
def test_efficient_node_inside_comfyui(comfy_env, golden_set, sampler):
    """Inside ComfyUI: same latent as core KSampler, previews through ComfyUI's progress bar, and the
    global preview setting untouched."""
    nodes, comfy = comfy_env
    import comfy.cli_args
    import comfy.utils
    from stepwise_sampler.nodes import StepwiseKSamplerEfficient
    from stepwise_sampler.nodes.efficient import RESULT_CACHE

    RESULT_CACHE.clear()
    previews = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: previews.append(preview))
    before = comfy.cli_args.args.preview_method
    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (core,) = nodes.KSampler().sample(patcher, 42, 6, 7.0, sampler, "karras", pos, neg, latent, 1.0)
    res = StepwiseKSamplerEfficient().sample(patcher, 42, 6, 7.0, sampler, "karras", pos, neg, latent, 1.0,
                                             "latent2rgb", "false")
    comfy.utils.set_progress_bar_global_hook(None)
    assert torch.allclose(res["result"][3]["samples"], core["samples"], rtol=1e-5, atol=1e-5)
    assert comfy.cli_args.args.preview_method == before
    assert any(p is not None and p[0] == "JPEG" for p in previews)


def test_profile_and_combos_follow_the_installed_comfyui(comfy_env):
    nodes, comfy = comfy_env
    import comfy.samplers
    from stepwise_sampler.nodes import StepwiseKSampler, StepwiseKSamplerAdvanced, StepwiseKSamplerEfficient
    from stepwise_sampler.host.profile import comfy_supports_combo_type, current_profile

    assert current_profile().comfyui_version == _installed_version()
    for cls in (StepwiseKSampler, StepwiseKSamplerAdvanced, StepwiseKSamplerEfficient):
        req = cls.INPUT_TYPES()["required"]
        for name, core in (("sampler_name", comfy.samplers.KSampler.SAMPLERS),
                           ("scheduler", comfy.samplers.KSampler.SCHEDULERS)):
            spec = req[name]
            options = spec[1]["options"] if spec[0] == "COMBO" else spec[0]
            assert list(options) == list(core), name
            assert (spec[0] == "COMBO") == comfy_supports_combo_type()
    # the node ids and widget order of core KSamplerAdvanced come first; our optional widgets follow, then sockets
    core_adv = list(nodes.KSamplerAdvanced.INPUT_TYPES()["required"])
    ours = StepwiseKSamplerAdvanced.INPUT_TYPES()
    assert list(ours["required"]) == core_adv
    assert list(ours["optional"]) == ["split_mode", "start_at_sigma", "end_at_sigma", "noise", "sigmas", "sampler"]


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "dpmpp_2m_sde", "euler_ancestral", "uni_pc", "heun",
                                     "dpmpp_2m_cfg_pp", "sa_solver", "lcm", "res_multistep"])
def test_seamless_chain_inside_comfyui_equals_our_single_run(comfy_env, golden_set, sampler):
    nodes, comfy = comfy_env
    from stepwise_sampler.nodes import StepwiseKSampler, StepwiseKSamplerAdvanced
    from stepwise_sampler.sampling.seamless import STATE_KEY

    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    latent = {"samples": torch.zeros(2, 4, 8, 8)}
    single = _latent(StepwiseKSampler().sample(patcher, 11, 10, 6.0, sampler, "karras", pos, neg, latent, 1.0))
    adv = StepwiseKSamplerAdvanced()
    a = _latent(adv.sample(patcher, "enable", 11, 10, 6.0, sampler, "karras", pos, neg, latent, 0, 3, "enable",
                           split_mode="seamless"))
    assert STATE_KEY in a
    b = _latent(adv.sample(patcher, "disable", 0, 10, 6.0, sampler, "karras", pos, neg, a, 3, 7, "enable",
                           split_mode="seamless"))
    c = _latent(adv.sample(patcher, "disable", 0, 10, 6.0, sampler, "karras", pos, neg, b, 7, 10000, "disable",
                           split_mode="seamless"))
    assert torch.allclose(c["samples"], single["samples"], rtol=1e-5, atol=1e-5)
    assert torch.equal(c["samples"], single["samples"])
    # the same single run as core's KSampler
    (core,) = nodes.KSampler().sample(patcher, 11, 10, 6.0, sampler, "karras", pos, neg, latent, 1.0)
    assert torch.allclose(single["samples"], core["samples"], rtol=1e-5, atol=1e-5)


def test_a_sampler_we_do_not_implement_runs_through_comfyuis_own(comfy_env, golden_set, monkeypatch):
    nodes, comfy = comfy_env
    from stepwise_sampler.nodes import StepwiseKSampler
    from stepwise_sampler.sampling import registry

    monkeypatch.delitem(registry.SAMPLERS, "heunpp2")  # as if ComfyUI listed a sampler Stepwise does not have
    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    args = (patcher, 5, 6, 4.0, "heunpp2", "karras", pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, 1.0)
    (core,) = nodes.KSampler().sample(*args)
    ours = _latent(StepwiseKSampler().sample(*args))
    assert torch.equal(ours["samples"], core["samples"])


class _ElementwiseUNet(torch.nn.Module):
    """A toy 'UNet' that works on any latent shape (ComfyUI packs nested latents to (B, 1, N))."""

    def __init__(self):
        super().__init__()
        self.dtype = torch.float32

    def forward(self, x, timesteps=None, context=None, **kwargs):
        shift = context.mean(dim=(1, 2)).view(-1, *([1] * (x.ndim - 1)))
        return 0.8 * torch.tanh(0.7 * x + 0.001 * timesteps.view(-1, *([1] * (x.ndim - 1))) + shift) + 0.2 * x


@pytest.mark.skipif(not COMFY or _older_than("0.8"), reason="nested latents exist from ComfyUI 0.8.0")
@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m_sde", "euler_ancestral"])
def test_nested_latents_inside_comfyui(comfy_env, golden_set, sampler):
    nodes, comfy = comfy_env
    import comfy.nested_tensor
    from stepwise_sampler.nodes import StepwiseKSampler

    config = comfy.supported_models.SD15({"disable_unet_model_creation": True})
    base = comfy.model_base.BaseModel(config, device=torch.device("cpu"))
    base.diffusion_model = _ElementwiseUNet()
    patcher = comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    nested = comfy.nested_tensor.NestedTensor([torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 2, 4, 4)])
    args = (patcher, 9, 5, 5.0, sampler, "karras", pos, neg, {"samples": nested}, 1.0)
    (core,) = nodes.KSampler().sample(*args)
    ours = _latent(StepwiseKSampler().sample(*args))
    for a, b in zip(ours["samples"].unbind(), core["samples"].unbind()):
        assert torch.equal(a, b)


def _call(node_cls, **kw):
    """A core node's function, classic (FUNCTION) or v3 (classmethod execute)."""
    if hasattr(node_cls, "define_schema"):
        out = node_cls.execute(**kw)
        return tuple(out.result) if hasattr(out, "result") else tuple(out)
    return tuple(getattr(node_cls(), node_cls.FUNCTION)(**kw))


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m_sde"])
@pytest.mark.parametrize("mode", ["comfy", "per_item"])
def test_stepwise_noise_in_cores_sampler_custom_advanced(comfy_env, golden_set, sampler, mode):
    """A Noise (Stepwise) plugged into core's SamplerCustomAdvanced: the same initial noise as in our nodes
    (comfy mode: also core's RandomNoise's, and the same result)."""
    nodes, comfy = comfy_env
    import comfy_extras.nodes_custom_sampler as custom
    from stepwise_sampler.nodes import StepwiseKSampler, StepwiseNoise
    from stepwise_sampler.host import Observer, observe

    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    latent = {"samples": torch.zeros(3, 4, 8, 8)}
    (noise,) = StepwiseNoise().make(21, mode, 0, 0.0)
    (guider,) = _call(custom.CFGGuider, model=patcher, positive=pos, negative=neg, cfg=5.0)
    (ksampler,) = _call(custom.KSamplerSelect, sampler_name=sampler)
    (sigmas,) = _call(custom.BasicScheduler, model=patcher, scheduler="karras", steps=6, denoise=1.0)
    out, _ = _call(custom.SamplerCustomAdvanced, noise=noise, guider=guider, sampler=ksampler, sigmas=sigmas,
                   latent_image=latent)
    assert torch.isfinite(out["samples"]).all()
    from stepwise_sampler.sampling.core import RunInfo  # noqa: F401
    runs = []
    with observe(Observer()) as obs:  # observing runs the standalone host (plain tuples, no UI output)
        (ours,) = StepwiseKSampler().sample(patcher, 5, 6, 5.0, sampler, "karras", pos, neg, latent, 1.0, noise=noise)
        runs = obs.runs
    assert torch.equal(runs[-1].noise, noise.generate_noise({"samples": latent["samples"]}))
    if mode == "comfy":
        (random,) = _call(custom.RandomNoise, noise_seed=21)
        core_out, _ = _call(custom.SamplerCustomAdvanced, noise=random, guider=guider, sampler=ksampler,
                            sigmas=sigmas, latent_image=latent)
        assert torch.equal(out["samples"], core_out["samples"])
        assert torch.allclose(ours["samples"], core_out["samples"], rtol=1e-5, atol=1e-5)


def test_our_schedules_equal_cores_scheduler_nodes(comfy_env, golden_set):
    nodes, comfy = comfy_env
    import comfy_extras.nodes_align_your_steps as ays
    import comfy_extras.nodes_custom_sampler as custom
    from stepwise_sampler.nodes import StepwiseSchedule

    patcher = _patcher(comfy, golden_set.model.network)
    for steps in (10, 4, 23):
        (core,) = _call(ays.AlignYourStepsScheduler, model_type="SD1", steps=steps, denoise=1.0)
        (ours,) = StepwiseSchedule().make(patcher, "ays_sd1", steps, 1.0)["result"]
        assert torch.equal(ours, core.float())
    import importlib
    try:
        gits = importlib.import_module("comfy_extras.nodes_gits")
        (core,) = _call(gits.GITSScheduler, coeff=1.2, steps=10, denoise=1.0)
        assert torch.equal(StepwiseSchedule().make(patcher, "gits", 10, 1.0)["result"][0], core.float())
    except ModuleNotFoundError:
        pass
    (core,) = _call(custom.PolyexponentialScheduler, steps=12, sigma_max=14.614642, sigma_min=0.0291675, rho=1.0)
    assert torch.equal(StepwiseSchedule().make(patcher, "polyexponential", 12, 1.0)["result"][0], core)
    (core,) = _call(custom.VPScheduler, steps=12, beta_d=19.9, beta_min=0.1, eps_s=0.001)
    assert torch.equal(StepwiseSchedule().make(patcher, "vp", 12, 1.0)["result"][0], core)
    (core,) = _call(custom.LaplaceScheduler, steps=12, sigma_max=14.614642, sigma_min=0.0291675, mu=0.0, beta=0.5)
    assert torch.equal(StepwiseSchedule().make(patcher, "laplace", 12, 1.0)["result"][0][:-1], core)
    for name in ("karras", "normal", "beta", "kl_optimal"):
        (core,) = _call(custom.BasicScheduler, model=patcher, scheduler=name, steps=9, denoise=0.8)
        assert torch.equal(StepwiseSchedule().make(patcher, name, 9, 0.8)["result"][0], core.float()), name


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral", "dpmpp_2m_sde"])
def test_sockets_take_cores_sigmas_and_samplers(comfy_env, golden_set, sampler):
    nodes, comfy = comfy_env
    import comfy_extras.nodes_align_your_steps as ays
    import comfy_extras.nodes_custom_sampler as custom
    from stepwise_sampler.nodes import StepwiseKSampler, StepwiseKSamplerAdvanced, StepwiseSchedule

    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (noise,) = _call(custom.RandomNoise, noise_seed=13)
    (guider,) = _call(custom.CFGGuider, model=patcher, positive=pos, negative=neg, cfg=5.0)
    (ksel,) = _call(custom.KSamplerSelect, sampler_name=sampler)
    (ays_sig,) = _call(ays.AlignYourStepsScheduler, model_type="SD1", steps=10, denoise=1.0)
    # core's SIGMAS in our socket == core's SamplerCustomAdvanced
    core_out, _ = _call(custom.SamplerCustomAdvanced, noise=noise, guider=guider, sampler=ksel, sigmas=ays_sig,
                        latent_image=latent)
    ours = _latent(StepwiseKSampler().sample(patcher, 13, 5, 5.0, sampler, "normal", pos, neg, latent, 1.0,
                                             sigmas=ays_sig))
    assert torch.allclose(ours["samples"], core_out["samples"], rtol=1e-5, atol=1e-5)
    # our SIGMAS in core's SamplerCustomAdvanced
    (our_sig,) = StepwiseSchedule().make(patcher, "ays_sd1", 10, 1.0)["result"]
    core_ours, _ = _call(custom.SamplerCustomAdvanced, noise=noise, guider=guider, sampler=ksel, sigmas=our_sig,
                         latent_image=latent)
    assert torch.equal(core_ours["samples"], core_out["samples"])
    # core's SAMPLER object in our sampler socket (runs through ComfyUI's own function)
    via_core_sampler = _latent(StepwiseKSampler().sample(patcher, 13, 5, 5.0, "euler", "normal", pos, neg, latent,
                                                         1.0, sigmas=ays_sig, sampler=ksel))
    assert torch.allclose(via_core_sampler["samples"], core_out["samples"], rtol=1e-5, atol=1e-5)
    # SplitSigmas halves sliced by start/end like our own schedule
    (high, low) = _call(custom.SplitSigmas, sigmas=ays_sig, step=4)
    part = _latent(StepwiseKSamplerAdvanced().sample(patcher, "enable", 13, 5, 5.0, sampler, "normal", pos, neg,
                                                     latent, 0, 10000, "enable", sigmas=high))
    core_part, _ = _call(custom.SamplerCustomAdvanced, noise=noise, guider=guider, sampler=ksel, sigmas=high,
                         latent_image=latent)
    assert torch.allclose(part["samples"], core_part["samples"], rtol=1e-5, atol=1e-5)


def test_recipes_inside_comfyui(comfy_env, golden_set):
    """Inside ComfyUI the sampler nodes' UI output carries the recipe with the sigmas that ran (= core's
    schedule slice); the Efficient node's too."""
    nodes, comfy = comfy_env
    import comfy.samplers
    from stepwise_sampler.nodes import StepwiseKSamplerAdvanced, StepwiseKSamplerEfficient
    from stepwise_sampler.nodes.efficient import RESULT_CACHE

    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    ret = StepwiseKSamplerAdvanced().sample(patcher, "enable", 77, 10, 6.0, "dpmpp_2m", "karras", pos, neg,
                                            {"samples": torch.zeros(1, 4, 8, 8)}, 2, 7, "enable")
    (doc,) = ret["ui"]["stepwise_recipe"]
    (r,) = doc["samplers"]
    full = comfy.samplers.calculate_sigmas(patcher.get_model_object("model_sampling"), "karras", 10)
    assert r["sigmas"] == pytest.approx(full[2:8].tolist(), rel=1e-6)
    assert (r["seed"], r["sampler"], r["start_at_step"], r["end_at_step"]) == (77, "dpmpp_2m", 2, 7)
    assert r["profile"] == _installed_version() or r["profile"] in ("0.3.64", "0.8.0", "0.33.0")
    RESULT_CACHE.clear()
    res = StepwiseKSamplerEfficient().sample(patcher, 5, 4, 7.0, "euler", "normal", pos, neg,
                                             {"samples": torch.zeros(1, 4, 8, 8)}, 1.0, "none", "false")
    (eff,) = res["ui"]["stepwise_recipe"]
    assert eff["samplers"][0]["seed"] == 5 and len(eff["samplers"][0]["sigmas"]) == 5


def test_xy_plot_on_the_efficient_node_inside_comfyui(comfy_env, golden_set):
    """Inside ComfyUI: the XY Plot script on KSampler Efficient (Stepwise) gives, cell by cell, core KSampler's
    latents, and a grid IMAGE; progress text goes through ComfyUI's server when it has one."""
    nodes, comfy = comfy_env
    from stepwise_sampler.nodes import StepwiseKSamplerEfficient, StepwiseXYPlot
    from stepwise_sampler.nodes.scripts import CELL_CACHE
    from stepwise_sampler.models.world import DemoVAE

    CELL_CACHE.clear()
    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    samplers = [s for s in ("euler", "dpmpp_2m", "uni_pc") if s in SAMPLER_NAMES]
    (plot,) = StepwiseXYPlot().script("sampler_name", ", ".join(samplers), "steps", "4, 6")
    res = StepwiseKSamplerEfficient().sample(patcher, 42, 6, 7.0, "euler", "karras", pos, neg, latent, 1.0, "none",
                                             "true", optional_vae=DemoVAE(), script=plot)
    cells = res["result"][3]["samples"]
    assert cells.shape[0] == 2 * len(samplers) and res["result"][5].ndim == 4
    k = 0
    for steps in (4, 6):
        for sampler in samplers:
            (core,) = nodes.KSampler().sample(patcher, 42, steps, 7.0, sampler, "karras", pos, neg, latent, 1.0)
            assert torch.allclose(cells[k:k + 1], core["samples"], rtol=1e-5, atol=1e-5), (sampler, steps)
            k += 1
    import json
    import os

    import folder_paths
    from PIL import Image

    (shown,) = res["ui"]["images"]  # the grid on the node, with the recipe of every cell in its PNG
    png = Image.open(os.path.join(folder_paths.get_temp_directory(), shown["subfolder"], shown["filename"]))
    recipe = json.loads(png.text["stepwise"])
    assert len(recipe["samplers"]) == 2 * len(samplers) and png.size[0] > 3 * 64


def test_fit_schedule_inside_comfyui(comfy_env, golden_set):
    """Inside ComfyUI the fit calls the model through ComfyUI's guider: the same sigmas as the fit on our own run of
    the toy model, within the budget, plotted; core's SamplerCustom runs them as our KSampler's sigmas socket does."""
    nodes, comfy = comfy_env
    import comfy.samplers
    import comfy_extras.nodes_custom_sampler as custom
    from stepwise_sampler.nodes import StepwiseFitSchedule, StepwiseKSampler
    from stepwise_sampler.nodes.fit import FIT_CACHE

    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    FIT_CACHE.clear()
    ret = StepwiseFitSchedule().fit(patcher, pos, neg, latent, 5.0, 6, "uni_pc", 3, 40)
    (sigmas,) = ret["result"]
    (summary,) = ret["ui"]["stepwise"]
    assert sigmas.shape == (7,) and float(sigmas[-1]) == 0.0 and torch.all(sigmas[:-1] > sigmas[1:])
    assert summary["fit"]["calls"] <= 300 and len(summary["points"]) == 7
    FIT_CACHE.clear()
    ours = StepwiseFitSchedule().fit(golden_set.model, pos, neg, latent, 5.0, 6, "uni_pc", 3, 40)
    ours = ours["result"][0] if isinstance(ours, dict) else ours[0]
    assert torch.allclose(sigmas, ours, rtol=1e-4), (sigmas, ours)
    ksel = comfy.samplers.sampler_object("uni_pc")
    core, _ = _call(custom.SamplerCustom, model=patcher, add_noise=True, noise_seed=9, cfg=5.0, positive=pos,
                    negative=neg, sampler=ksel, sigmas=sigmas, latent_image=latent)
    mine = _latent(StepwiseKSampler().sample(patcher, 9, 6, 5.0, "uni_pc", "karras", pos, neg, latent, 1.0,
                                             sigmas=sigmas))
    assert torch.allclose(mine["samples"], core["samples"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral", "res_2s"])
def test_our_sampler_in_cores_sampler_custom(comfy_env, golden_set, sampler):
    """Sampler (Stepwise)'s SAMPLER runs in core's SamplerCustom (it is a KSAMPLER there): the same numbers as core's
    KSamplerSelect for a name both have, and as our KSampler's sampler socket for one only we have."""
    nodes, comfy = comfy_env
    import comfy.samplers
    import comfy_extras.nodes_custom_sampler as custom
    from stepwise_sampler.nodes import StepwiseKSampler, StepwiseSampler

    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (ours,) = StepwiseSampler().make(sampler)
    (sigmas,) = _call(custom.BasicScheduler, model=patcher, scheduler="karras", steps=6, denoise=1.0)
    out, _ = _call(custom.SamplerCustom, model=patcher, add_noise=True, noise_seed=9, cfg=5.0, positive=pos,
                   negative=neg, sampler=ours, sigmas=sigmas, latent_image=latent)
    if sampler in comfy.samplers.KSampler.SAMPLERS:
        core, _ = _call(custom.SamplerCustom, model=patcher, add_noise=True, noise_seed=9, cfg=5.0, positive=pos,
                        negative=neg, sampler=comfy.samplers.sampler_object(sampler), sigmas=sigmas,
                        latent_image=latent)
        assert torch.allclose(out["samples"], core["samples"], rtol=1e-5, atol=1e-5)
    mine = _latent(StepwiseKSampler().sample(patcher, 9, 6, 5.0, "euler", "karras", pos, neg, latent, 1.0,
                                             sigmas=sigmas, sampler=ours))
    assert torch.allclose(mine["samples"], out["samples"], rtol=1e-5, atol=1e-5)


def test_fitted_solver_runs_in_cores_sampler_custom(comfy_env, golden_set):
    nodes, comfy = comfy_env
    import comfy_extras.nodes_custom_sampler as custom
    from stepwise_sampler.nodes import StepwiseFitSolver, StepwiseKSampler

    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    ret = StepwiseFitSolver().fit(patcher, pos, neg, latent, 5.0, 5, "dpmpp_2m", 0, 300)
    sampler, sigmas = ret["result"]
    core, _ = _call(custom.SamplerCustom, model=patcher, add_noise=True, noise_seed=9, cfg=5.0, positive=pos,
                    negative=neg, sampler=sampler, sigmas=sigmas, latent_image=latent)
    mine = _latent(StepwiseKSampler().sample(patcher, 9, 5, 5.0, "euler", "karras", pos, neg, latent, 1.0,
                                             sigmas=sigmas, sampler=sampler))
    assert torch.allclose(mine["samples"], core["samples"], rtol=1e-5, atol=1e-5)
    assert ret["ui"]["stepwise"][0]["fit"]["calls"] <= 300


@pytest.mark.skipif(_older_than("0.18.1"), reason="fp16 intermediates' float32 noise from ComfyUI 0.18.1")
@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral"])
def test_fp16_latents_equal_core(comfy_env, golden_set, sampler):
    """A float16 LATENT (what --fp16-intermediates keeps): our KSampler equals core's (noise drawn in float32, then
    cast, from 0.18.1)."""
    nodes, comfy = comfy_env
    from stepwise_sampler.nodes import StepwiseKSampler

    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8, dtype=torch.float16)}
    (core,) = nodes.KSampler().sample(patcher, 4, 6, 5.0, sampler, "karras", pos, neg, latent, 1.0)
    mine = _latent(StepwiseKSampler().sample(patcher, 4, 6, 5.0, sampler, "karras", pos, neg, latent, 1.0))
    assert mine["samples"].dtype == core["samples"].dtype
    assert torch.allclose(mine["samples"].float(), core["samples"].float(), rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(_older_than("0.22.0"), reason="LATENT downscale keys from ComfyUI 0.22.0")
def test_latent_downscale_keys_like_core(comfy_env, golden_set):
    nodes, comfy = comfy_env
    from stepwise_sampler.nodes import StepwiseKSampler

    patcher = _patcher(comfy, golden_set.model.network)
    pos = [[golden_set.toy_tensors["ctx_pos"], {}]]
    neg = [[golden_set.toy_tensors["ctx_neg"], {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8), "downscale_ratio_spacial": 8}
    (core,) = nodes.KSampler().sample(patcher, 4, 6, 5.0, "euler", "karras", pos, neg, dict(latent), 1.0)
    mine = _latent(StepwiseKSampler().sample(patcher, 4, 6, 5.0, "euler", "karras", pos, neg, dict(latent), 1.0))
    assert set(mine) == set(core) and "downscale_ratio_spacial" not in mine
    assert torch.allclose(mine["samples"], core["samples"], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(_older_than("0.33.0"), reason="node replacements (checked on 0.33.0)")
def test_node_replacements_registered_and_applied_by_comfyui(comfy_env):
    """Our replacements through ComfyUI's own manager; its server-side application turns an API prompt that names
    KSampler (Efficient) (pack absent) into our node."""
    nodes, comfy = comfy_env
    from app.node_replace_manager import NodeReplaceManager

    from stepwise_sampler.host import register_replacements
    from stepwise_sampler.nodes import NODE_CLASS_MAPPINGS

    class Server:
        node_replace_manager = NodeReplaceManager()

    added = {k: v for k, v in NODE_CLASS_MAPPINGS.items() if k not in nodes.NODE_CLASS_MAPPINGS}
    nodes.NODE_CLASS_MAPPINGS.update(added)
    try:
        assert register_replacements(Server) >= 3
        listed = Server.node_replace_manager.as_dict()
        assert listed["KSampler (Efficient)"][0]["new_node_id"] == "StepwiseKSamplerEfficient"
        prompt = {"1": {"class_type": "KSampler (Efficient)", "_meta": {"title": "x"}, "inputs": {
            "model": ["4", 0], "seed": 3, "steps": 6, "cfg": 5.0, "sampler_name": "euler", "scheduler": "karras",
            "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["7", 0], "denoise": 1.0,
            "preview_method": "none", "vae_decode": "false", "optional_vae": ["4", 2], "script": ["8", 0]}},
            "9": {"class_type": "SaveImage", "_meta": {}, "inputs": {"images": ["1", 5]}}}
        Server.node_replace_manager.apply_replacements(prompt)
        assert prompt["1"]["class_type"] == "StepwiseKSamplerEfficient"
        assert prompt["1"]["inputs"]["seed"] == 3 and prompt["1"]["inputs"]["script"] == ["8", 0]
        assert prompt["9"]["inputs"]["images"] == ["1", 5]
    finally:
        for k in added:
            nodes.NODE_CLASS_MAPPINGS.pop(k, None)
