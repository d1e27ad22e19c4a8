"""Efficient nodes: same latents as the plain nodes, previews per node, never-stale cache, decode modes."""
from __future__ import annotations

import importlib
import sys
import threading
import types

import pytest
import torch

from stepwise_sampler.nodes import StepwiseKSampler, StepwiseKSamplerAdvanced
from stepwise_sampler.host import Observer, observe
from stepwise_sampler.nodes.efficient import RESULT_CACHE
from stepwise_sampler.nodes.efficient import (EMPTY_IMAGE, StepwiseKSamplerAdvancedEfficient,
                                              StepwiseKSamplerEfficient)
from stepwise_sampler.nodes.scripts import StepwiseHiResFixScript, StepwiseScript
from stepwise_sampler.preview import PreviewConfig, PreviewHook, Throttle, make_decoder
from stepwise_sampler.models import mixture, world

CLIP = world.DemoCLIP(notice=lambda m: None)
POS, NEG = CLIP.encode("red circle"), CLIP.encode("text")


class CountingModel(mixture.DemoModel):
    calls = 0

    def apply_model(self, x, sigma, context):
        CountingModel.calls += 1
        return super().apply_model(x, sigma, context)


@pytest.fixture(autouse=True)
def fresh_cache():
    RESULT_CACHE.clear()
    CountingModel.calls = 0
    yield
    RESULT_CACHE.clear()


def _latent(size=16, fill=0.0):
    return {"samples": torch.full((1, 4, size, size), fill)}


def eff(model, latent=None, vae_decode="true", preview="none", seed=3, steps=6, cfg=7.0, sampler="euler",
        script=None, optional_vae=None, positive=POS):
    return StepwiseKSamplerEfficient().sample(model, seed, steps, cfg, sampler, "karras", positive, NEG,
                                              latent or _latent(), 1.0, preview, vae_decode, optional_vae, script)


def test_inputs_outputs_follow_the_efficiency_node():
    req = list(StepwiseKSamplerEfficient.INPUT_TYPES()["required"])
    assert req == list(StepwiseKSampler.INPUT_TYPES()["required"]) + ["preview_method", "vae_decode"]
    adv = StepwiseKSamplerAdvancedEfficient.INPUT_TYPES()
    assert list(adv["required"]) == list(StepwiseKSamplerAdvanced.INPUT_TYPES()["required"]) + ["preview_method",
                                                                                                  "vae_decode"]
    assert adv["required"]["preview_method"][0] == ["auto", "latent2rgb", "taesd", "none"]
    assert adv["required"]["vae_decode"][0] == ["true", "true (tiled)", "false", "output only", "output only (tiled)"]
    assert list(adv["optional"]) == ["optional_vae", "script", "split_mode", "start_at_sigma", "end_at_sigma",
                                         "noise", "sigmas", "sampler"]
    assert adv["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"}
    for cls in (StepwiseKSamplerEfficient, StepwiseKSamplerAdvancedEfficient):
        assert cls.RETURN_TYPES == ("MODEL", "CONDITIONING", "CONDITIONING", "LATENT", "VAE", "IMAGE")
        assert cls.RETURN_NAMES == ("MODEL", "CONDITIONING+", "CONDITIONING-", "LATENT", "VAE", "IMAGE")
        assert cls.OUTPUT_NODE is True


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m_sde", "uni_pc", "euler_ancestral_cfg_pp"])
def test_latents_equal_the_plain_nodes_bit_for_bit(sampler):
    model = mixture.DemoModel()
    (plain,) = StepwiseKSampler().sample(model, 3, 6, 7.0, sampler, "karras", POS, NEG, _latent(), 1.0)
    out = eff(model, sampler=sampler, preview="latent2rgb")["result"]
    assert torch.equal(out[3]["samples"], plain["samples"])
    (plain_a,) = StepwiseKSamplerAdvanced().sample(model, "enable", 3, 10, 7.0, sampler, "normal", POS, NEG,
                                                   _latent(), 2, 7, "enable")
    out_a = StepwiseKSamplerAdvancedEfficient().sample(model, "enable", 3, 10, 7.0, sampler, "normal", POS, NEG,
                                                       _latent(), 2, 7, "enable", "auto", "output only")["result"]
    assert torch.equal(out_a[3]["samples"], plain_a["samples"])
    assert out_a[0] is model and out_a[1] is POS and out_a[2] is NEG


def test_cache_hits_and_misses_exactly():
    model = CountingModel()
    first = eff(model)
    per_run = CountingModel.calls
    assert per_run == 6
    for change in ({"vae_decode": "true (tiled)"}, {"vae_decode": "false"}, {"preview": "latent2rgb"}, {}):
        CountingModel.calls = 0
        again = eff(model, **change)
        assert CountingModel.calls == 0, f"{change} must not re-sample"
        assert torch.equal(again["result"][3]["samples"], first["result"][3]["samples"])
    assert torch.equal(eff(model, vae_decode="false")["result"][5], EMPTY_IMAGE)
    latent = _latent()
    for change in ({"seed": 4}, {"steps": 5}, {"cfg": 6.5}, {"sampler": "heun"},
                   {"positive": CLIP.encode("blue circle")}, {"latent": _latent(fill=0.1)},
                   {"latent": {**latent, "noise_mask": torch.ones(1, 16, 16)}},
                   {"latent": {**latent, "batch_index": [3]}}):
        CountingModel.calls = 0
        eff(model, **change)
        assert CountingModel.calls > 0, f"{list(change)} must re-sample"
    styled = CountingModel(mixture.Style(strength=1.0))
    CountingModel.calls = 0
    eff(styled)
    assert CountingModel.calls > 0, "a patched (styled) model must re-sample"


def test_cache_is_never_stale_after_in_place_edits_and_freed_models():
    model = CountingModel()
    latent = _latent()
    eff(model, latent=latent)
    latent["samples"] += 0.25  # same dict, same tensor object, new content
    CountingModel.calls = 0
    eff(model, latent=latent)
    assert CountingModel.calls > 0
    RESULT_CACHE.clear()
    eff(CountingModel())  # a temporary model, freed afterwards
    import gc
    gc.collect()
    CountingModel.calls = 0
    eff(CountingModel())  # may reuse the freed object's address: must not hit
    assert CountingModel.calls > 0


def test_cache_is_bounded():
    model = mixture.DemoModel()
    for seed in range(RESULT_CACHE.max_entries + 3):
        eff(model, seed=seed, steps=2)
    assert len(RESULT_CACHE) == RESULT_CACHE.max_entries


def test_vae_decode_modes_and_images_on_the_node():
    model, vae = mixture.DemoModel(), world.DemoVAE()
    shown = []
    with observe(Observer(show_images=lambda imgs, *meta: shown.append(imgs) or [{"filename": "x.png"}])):
        res = eff(model, vae_decode="true")
        assert res["ui"]["images"] == [{"filename": "x.png"}] and len(shown) == 1
        assert torch.allclose(res["result"][5], vae.decode(res["result"][3]["samples"]))
        tiled = eff(model, vae_decode="true (tiled)")["result"][5]
        assert torch.allclose(tiled, res["result"][5], atol=1e-6)
        only = StepwiseKSamplerAdvancedEfficient().sample(model, "enable", 3, 6, 7.0, "euler", "karras", POS, NEG,
                                                          _latent(), 0, 10000, "disable", "none", "output only")
        assert only["ui"]["images"] == [] and only["result"][5].shape == (1, 128, 128, 3)
    assert len(shown) == 2


def test_bad_inputs():
    class NoVAE(mixture.DemoModel):
        default_vae = None

    with pytest.raises(ValueError) as err:
        eff(NoVAE(), vae_decode="true")
    assert "vae_decode" in str(err.value) and "optional_vae" in str(err.value)
    assert eff(NoVAE(), vae_decode="false")["result"][5] is EMPTY_IMAGE
    with pytest.raises(ValueError, match="preview_method.*auto, latent2rgb, taesd, none"):
        eff(mixture.DemoModel(), preview="fancy")
    with pytest.raises(ValueError, match="cannot tile"):
        eff(mixture.DemoModel(), latent=_latent(size=4), vae_decode="true (tiled)")
    with pytest.raises(ValueError, match="script: expected a Stepwise script"):
        eff(mixture.DemoModel(), script=("hires", 1.5))
    with pytest.raises(ValueError, match="unknown script kind 'tiled_upscale'; allowed: hires_fix, noise, xy_plot"):
        eff(mixture.DemoModel(), script=StepwiseScript.make("tiled_upscale"))
    with pytest.raises(ValueError, match="vae_decode"):
        eff(mixture.DemoModel(), vae_decode="output only")  # an Advanced-only mode


def test_hires_fix_script_runs_a_second_pass_through_the_same_core():
    model = CountingModel()
    (script,) = StepwiseHiResFixScript().script(2.0, "bilinear", 4, 0.5, -1)
    out = eff(model, script=script, vae_decode="false")["result"][3]["samples"]
    assert out.shape == (1, 4, 32, 32)
    assert CountingModel.calls == 6 + 4  # the first pass, then 4 steps at denoise 0.5
    (first,) = StepwiseKSampler().sample(model, 3, 6, 7.0, "euler", "karras", POS, NEG, _latent(), 1.0)
    up = {"samples": torch.nn.functional.interpolate(first["samples"], size=(32, 32), mode="bilinear",
                                                     align_corners=False)}
    (second,) = StepwiseKSampler().sample(model, 3, 4, 7.0, "euler", "karras", POS, NEG, up, 0.5)
    assert torch.equal(out, second["samples"])


def test_previews_are_per_node_and_throttled():
    model = mixture.DemoModel()
    seen = []
    with observe(Observer(on_preview=lambda s, t, img: seen.append((s, tuple(img.shape), img.dtype)))):
        eff(model, preview="latent2rgb", steps=8)
        assert [s for s, _, _ in seen][-1] == 7, "the last step always previews"
        assert all(shape == (16, 16, 3) and dtype == torch.uint8 for _, shape, dtype in seen)
        n = len(seen)
        RESULT_CACHE.clear()
        eff(model, preview="none", steps=8)
        assert len(seen) == n, "'none' produces no previews"

    ticks = iter([0.0, 0.1, 0.2, 0.3, 0.35, 0.6, 0.61, 0.9])
    hook = PreviewHook(make_decoder("latent2rgb", world.DEMO_LATENT_FORMAT), lambda s, t, img: got.append((s, img is None)),
                       PreviewConfig("latent2rgb", min_interval_ms=250), clock=lambda: next(ticks))
    got: list = []
    x0 = torch.zeros(2, 4, 8, 8)
    for step in range(8):
        hook(step, x0, x0, 8)
    assert [s for s, none in got if not none] == [0, 3, 5, 7]
    assert len(got) == 8, "progress is reported every step"


def test_batch_grid_preview():
    hook = PreviewHook(make_decoder("latent2rgb", world.DEMO_LATENT_FORMAT), lambda s, t, img: out.append(img),
                       PreviewConfig("latent2rgb", batch_grid=True))
    out: list = []
    hook(0, torch.zeros(3, 4, 8, 8), None, 1)
    assert out[0].shape == (16, 16, 3)


def test_interrupt_stops_within_one_step():
    model = CountingModel()
    stop = threading.Event()
    steps_seen = []

    def on_step(step, x0, x, total):
        steps_seen.append(step)
        if step == 2:
            stop.set()

    with observe(Observer(on_step=on_step, interrupt=stop)):
        with pytest.raises(InterruptedError):
            eff(model, steps=10)
    assert steps_seen == [0, 1, 2]
    assert CountingModel.calls <= 4
    assert len(RESULT_CACHE) == 0, "an interrupted run is not cached"


def _fake_comfy(monkeypatch, interrupt_after=None):
    """A minimal fake of the two ComfyUI functions the preview path calls (plus modules it imports)."""
    calls = {"updates": [], "checks": 0}

    class ProgressBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            calls["updates"].append((value, total, preview))

    def throw_exception_if_processing_interrupted():
        calls["checks"] += 1
        if interrupt_after is not None and calls["checks"] > interrupt_after:
            raise RuntimeError("processing interrupted")

    comfy = types.ModuleType("comfy")
    mods = {"comfy": comfy}
    for name in ("utils", "model_management", "model_patcher", "model_sampling", "sample", "samplers", "cli_args"):
        mods[f"comfy.{name}"] = types.ModuleType(f"comfy.{name}")
        setattr(comfy, name, mods[f"comfy.{name}"])
    mods["comfy.utils"].ProgressBar = ProgressBar
    mods["comfy.utils"].PROGRESS_BAR_ENABLED = True
    mods["comfy.model_management"].throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    mods["comfy.cli_args"].args = types.SimpleNamespace(preview_method="none")
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delitem(sys.modules, "stepwise_sampler.host.comfy", raising=False)
    bridge = importlib.import_module("stepwise_sampler.host.comfy")
    return bridge, calls, mods


def test_comfyui_preview_path_reports_through_progress_bar_and_leaves_global_setting(monkeypatch):
    bridge, calls, mods = _fake_comfy(monkeypatch)
    patcher = types.SimpleNamespace(model=types.SimpleNamespace(latent_format=world.DEMO_LATENT_FORMAT),
                                    load_device="cpu")
    hook = bridge.comfy_preview_callback(patcher, 5, PreviewConfig("latent2rgb", min_interval_ms=0))
    x0 = torch.zeros(1, 4, 8, 8)
    for step in range(5):
        hook(step, x0, x0, 5)
    assert [u[0] for u in calls["updates"]] == [1, 2, 3, 4, 5] and calls["checks"] == 5
    fmt, image, size = calls["updates"][-1][2]
    assert fmt == "JPEG" and image.size == (8, 8) and size == 512
    assert mods["comfy.cli_args"].args.preview_method == "none", "the global preview setting is untouched"


def test_comfyui_interrupt_is_checked_every_step(monkeypatch):
    bridge, calls, _ = _fake_comfy(monkeypatch, interrupt_after=2)
    patcher = types.SimpleNamespace(model=types.SimpleNamespace(latent_format=world.DEMO_LATENT_FORMAT),
                                    load_device="cpu")
    hook = bridge.comfy_preview_callback(patcher, 5, PreviewConfig("none"))
    x0 = torch.zeros(1, 4, 8, 8)
    with pytest.raises(RuntimeError, match="interrupted"):
        for step in range(5):
            hook(step, x0, x0, 5)
    assert len(calls["updates"]) == 2


def test_noise_script_opts_sde_samplers_into_fast_noise():
    from stepwise_sampler.nodes.scripts import StepwiseNoiseScript

    model = mixture.DemoModel()
    (fast,) = StepwiseNoiseScript().script("fast")
    (brownian,) = StepwiseNoiseScript().script("brownian")
    a = eff(model, sampler="dpmpp_2m_sde", script=fast, vae_decode="false")["result"][3]["samples"]
    b = eff(model, sampler="dpmpp_2m_sde", script=brownian, vae_decode="false")["result"][3]["samples"]
    (plain,) = StepwiseKSampler().sample(model, 3, 6, 7.0, "dpmpp_2m_sde", "karras", POS, NEG, _latent(), 1.0)
    assert torch.equal(b, plain["samples"]), "brownian is the default, ComfyUI-identical source"
    assert not torch.equal(a, b) and torch.isfinite(a).all()
    again = eff(model, sampler="dpmpp_2m_sde", script=fast, vae_decode="false")["result"][3]["samples"]
    assert torch.equal(a, again)


def test_an_expensive_previewer_is_held_to_its_time_budget():
    clock = [0.0]

    def slow_decoder(x):
        clock[0] += 0.5  # every preview costs 0.5 s of (fake) wall time
        return torch.zeros(8, 8, 3)

    import stepwise_sampler.preview.hook as hook_mod

    real = hook_mod.time.perf_counter
    hook_mod.time.perf_counter = lambda: clock[0]
    try:
        got = []
        hook = PreviewHook(slow_decoder, lambda s, t, img: got.append(img is not None),
                           PreviewConfig("taesd", min_interval_ms=0, budget=0.1), clock=lambda: clock[0])
        for step in range(40):
            hook(step, torch.zeros(1, 4, 8, 8), None, 40)
            clock[0] += 0.1  # each step samples for 0.1 s
    finally:
        hook_mod.time.perf_counter = real
    assert got[0] and got[-1], "the first and the last step preview"
    assert sum(got) <= 2 + 40 * 0.1 * 0.1 / 0.5 + 1, "previews stay near 10% of the time"


def test_taesd_without_a_decoder_says_so_once(caplog):
    """No silent fallback: preview_method taesd with no TAESD decoder shows latent2rgb and says it once."""
    import logging

    from stepwise_sampler.host import Observer, observe
    from stepwise_sampler.preview import hook

    hook._TAESD_NOTED.clear()
    seen = []
    model = mixture.DemoModel()
    with caplog.at_level(logging.WARNING, logger="stepwise"), observe(Observer(on_notice=seen.append)):
        for _ in range(2):
            eff(model, preview="taesd", seed=len(seen) + 11)
    assert len(seen) == 1 and "latent2rgb" in seen[0] and "taesd" in seen[0].lower()
    assert sum("TAESD" in r.message for r in caplog.records) == 1
