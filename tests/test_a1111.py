"""AUTOMATIC1111 / Forge / Civitai: their noise (CUDA's Philox numbers on any device, torch's CPU draws, seed + i per
image, variation seeds, resize seed from, the eta noise seed delta), their ``parameters`` text written into every
saved image and read back, and their recipes imported as workflows that run."""
from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image, PngImagePlugin

from conftest import REPO
from stepwise_sampler.sampling.noise import NoiseSource, a1111_image_noise, a1111_slerp
from stepwise_sampler.sampling.philox import PhiloxGenerator, philox_randn
from stepwise_sampler.standalone.cli import main as cli_main
from stepwise_sampler.workflows.a1111 import format_parameters, parse_parameters

# torch.randn(3, 4, device="cuda") after torch.manual_seed(0) (the published values)
CUDA_SEED0 = [-0.92466259, -0.42534415, -2.6438457, 0.14518388]


# --- an independent reference: Philox 4x32-10 and Box-Muller with Python integers, one element at a time -------------
def _mulhilo(a: int, b: int) -> tuple[int, int]:
    p = a * b
    return p >> 32, p & 0xFFFFFFFF


def _philox_scalar(counter: list[int], key: list[int]) -> list[int]:
    c, k = list(counter), list(key)
    for _ in range(10):
        hi0, lo0 = _mulhilo(0xD2511F53, c[0])
        hi1, lo1 = _mulhilo(0xCD9E8D57, c[2])
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0]
        k = [(k[0] + 0x9E3779B9) & 0xFFFFFFFF, (k[1] + 0xBB67AE85) & 0xFFFFFFFF]
    return c


def _reference(seed: int, n: int, offset: int = 0) -> list[float]:
    out = []
    for i in range(n):
        a, b, _, _ = _philox_scalar([offset, 0, i, 0], [seed & 0xFFFFFFFF, seed >> 32])
        u = (a + 0.5) / 2 ** 32
        v = (b + 0.5) / 2 ** 32 * 2 * math.pi
        out.append(math.sqrt(-2 * math.log(u)) * math.sin(v))
    return out


def test_a1111_gpu_equals_cudas_published_numbers():
    got = philox_randn(0, (3, 4))
    assert got.shape == (3, 4)
    for a, b in zip(got.flatten()[:4].tolist(), CUDA_SEED0):
        assert abs(a - b) < 2e-6, (a, b)


@pytest.mark.parametrize("seed,shape,offset", [(0, (3, 4), 0), (1234, (4, 8, 8), 0), (2 ** 40 + 7, (2, 5), 0),
                                               (31337, (4, 3, 3), 3), (2 ** 64 - 1, (7,), 0)])
def test_a1111_gpu_equals_an_independent_scalar_reference(seed, shape, offset):
    got = philox_randn(seed, shape, offset).flatten().tolist()
    want = _reference(seed, math.prod(shape), offset)
    assert max(abs(a - b) for a, b in zip(got, want)) < 5e-6


def test_a1111_cpu_is_torchs_cpu_generator():
    source = NoiseSource(42, batch_mode="a1111_cpu")
    latent = torch.zeros(1, 4, 8, 8)
    torch.manual_seed(42)
    assert torch.equal(source.initial(latent), torch.randn(1, 4, 8, 8))


@pytest.mark.parametrize("mode", ["a1111_gpu", "a1111_cpu"])
def test_image_i_of_a_batch_uses_seed_plus_i(mode):
    source = NoiseSource(100, batch_mode=mode)
    batch = source.initial(torch.zeros(3, 4, 8, 8))
    for i in range(3):
        alone = NoiseSource(100 + i, batch_mode=mode).initial(torch.zeros(1, 4, 8, 8))
        assert torch.equal(batch[i:i + 1], alone)
    if mode == "a1111_gpu":
        assert torch.equal(batch[2], philox_randn(102, (4, 8, 8)))


def test_variation_seed_is_a1111s_slerp_with_one_subseed_for_the_batch():
    low, high = philox_randn(7, (4, 8, 8)), philox_randn(9, (4, 8, 8))
    assert torch.equal(a1111_image_noise("a1111_gpu", 7, (4, 8, 8), 9, 0.0), low)
    assert torch.allclose(a1111_image_noise("a1111_gpu", 7, (4, 8, 8), 9, 1.0), high, atol=1e-5)
    mid = a1111_image_noise("a1111_gpu", 7, (4, 8, 8), 9, 0.3)
    # independently: per column of dim 1, the angle between the two and the sines
    ln, hn = low / low.norm(dim=1, keepdim=True), high / high.norm(dim=1, keepdim=True)
    omega = torch.acos((ln * hn).sum(1))
    want = (torch.sin(0.7 * omega) / torch.sin(omega)).unsqueeze(1) * low + \
        (torch.sin(0.3 * omega) / torch.sin(omega)).unsqueeze(1) * high
    assert torch.allclose(mid, want, atol=1e-6)
    batch = NoiseSource(7, batch_mode="a1111_gpu", variation_seed=9, variation_strength=0.3).initial(
        torch.zeros(2, 4, 8, 8))
    assert torch.equal(batch[0], mid)
    assert torch.equal(batch[1], a1111_image_noise("a1111_gpu", 8, (4, 8, 8), 9, 0.3))  # seed + 1, the same subseed
    assert torch.equal(a1111_slerp(0.0, low, high), low)


def test_resize_seed_from_pastes_the_smaller_draw_centred():
    out = a1111_image_noise("a1111_gpu", 5, (4, 12, 16), resize_from=(8, 8))
    small, big = philox_randn(5, (4, 8, 8)), philox_randn(5, (4, 12, 16))
    assert torch.equal(out[:, 2:10, 4:12], small)
    assert torch.equal(out[:, :2], big[:, :2]) and torch.equal(out[:, :, :4], big[:, :, :4])


def test_per_step_noise_continues_each_image_stream_or_restarts_with_ensd():
    x = torch.zeros(2, 4, 4, 4)
    plain = NoiseSource(10, batch_mode="a1111_gpu").default(x)
    first = plain(torch.tensor(1.0), torch.tensor(0.5))
    assert torch.equal(first[1], philox_randn(11, (4, 4, 4), offset=1))
    ensd = NoiseSource(10, batch_mode="a1111_gpu", ensd=31337).default(x)
    draw = ensd(torch.tensor(1.0), torch.tensor(0.5))
    assert torch.equal(draw[0], philox_randn(10 + 31337, (4, 4, 4)))
    gen = PhiloxGenerator(10 + 31337)
    gen.randn((4, 4, 4))
    assert torch.equal(ensd(torch.tensor(0.5), torch.tensor(0.2))[0], gen.randn((4, 4, 4)))
    with pytest.raises(ValueError, match="a1111"):
        NoiseSource(1, ensd=5)


def test_an_ancestral_run_with_a1111_noise_is_image_by_image():
    from stepwise_sampler.models.mixture import DemoModel
    from stepwise_sampler.models.world import DemoCLIP
    from stepwise_sampler.nodes import StepwiseKSampler, StepwiseNoise

    model, clip = DemoModel(), DemoCLIP(notice=lambda m: None)
    pos, neg = clip.encode("blue square"), clip.encode("")
    (noise,) = StepwiseNoise().make(50, "a1111_gpu", 0, 0.0, eta_noise_seed_delta=31337)
    (batch,) = StepwiseKSampler().sample(model, 0, 6, 5.0, "euler_ancestral", "karras", pos, neg,
                                         {"samples": torch.zeros(2, 4, 8, 8)}, noise=noise)
    (noise1,) = StepwiseNoise().make(51, "a1111_gpu", 0, 0.0, eta_noise_seed_delta=31337)
    (alone,) = StepwiseKSampler().sample(model, 0, 6, 5.0, "euler_ancestral", "karras", pos, neg,
                                         {"samples": torch.zeros(1, 4, 8, 8)}, noise=noise1)
    assert torch.equal(batch["samples"][1:], alone["samples"])


# --- the parameters text ---------------------------------------------------------------------------------------------
A1111_TEXT = ("a (red:1.2) circle, [white:black:0.5] background <lora:pixel:0.8>\n"
              "Negative prompt: blurry, text\n"
              "Steps: 12, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 256x192, "
              "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Variation seed: 99, Variation seed strength: 0.25, "
              "ENSD: 31337, Lora hashes: \"pixel: abcdef, other: 123\", Version: v1.10.1")


def test_parameters_are_read_into_our_names():
    s = parse_parameters(A1111_TEXT)
    assert (s.steps, s.sampler_name, s.scheduler, s.cfg, s.seed, s.width, s.height) == \
        (12, "dpmpp_2m", "karras", 6.5, 1234, 256, 192)
    assert s.negative_prompt == "blurry, text" and s.model == "v1-5-pruned-emaonly" and s.model_hash == "6ce0161689"
    assert (s.variation_seed, s.variation_strength, s.ensd) == (99, 0.25, 31337)
    assert s.loras == [("pixel", 0.8)] and s.extra["Lora hashes"] == "pixel: abcdef, other: 123"
    old = parse_parameters("x\nSteps: 5, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 64x64")
    assert (old.sampler_name, old.scheduler) == ("dpmpp_2m", "karras")
    again = parse_parameters(format_parameters(s, "stepwise"))
    assert (again.steps, again.sampler_name, again.scheduler, again.cfg, again.seed, again.width, again.ensd,
            again.variation_strength, again.extra["Lora hashes"]) == \
        (12, "dpmpp_2m", "karras", 6.5, 1234, 256, 31337, 0.25, "pixel: abcdef, other: 123")


def test_not_a_recipe_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("just words")
    assert cli_main(["import", str(tmp_path / "x.txt"), str(tmp_path / "o.json")]) == 2
    assert "not an AUTOMATIC1111 recipe" in capsys.readouterr().err


def test_every_saved_image_carries_parameters_that_read_back_to_the_settings(tmp_path):
    from stepwise_sampler.standalone.a1111_import import read_parameters

    wf = REPO / "examples" / "txt2img.json"
    assert cli_main(["run", str(wf), "--out", str(tmp_path / "o")]) == 0
    png = next((tmp_path / "o").glob("*.png"))
    recipe = json.loads(Image.open(png).text["stepwise"])["samplers"][0]
    s = parse_parameters(read_parameters(png))
    assert (s.steps, s.sampler_name, s.scheduler, s.cfg, s.seed) == \
        (recipe["steps"], recipe["sampler"], recipe["scheduler"], recipe["cfg"], recipe["seed"])
    assert s.prompt == "red circle on white background" and (s.width, s.height) == Image.open(png).size
    assert cli_main(["run", str(wf), "--out", str(tmp_path / "off"), "--no-parameters"]) == 0
    assert "parameters" not in Image.open(next((tmp_path / "off").glob("*.png"))).text
    # the flag lasts for its own command: the next in-process run writes the text again (it once leaked into every
    # later run of the test process, so a Ray sweep's cells differed from the local sweep's by this chunk)
    assert cli_main(["run", str(wf), "--out", str(tmp_path / "on")]) == 0
    assert "parameters" in Image.open(next((tmp_path / "on").glob("*.png"))).text


def test_an_a1111_png_imports_to_a_workflow_that_runs(tmp_path, capsys):
    img = Image.new("RGB", (64, 64))
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_TEXT)
    img.save(tmp_path / "a1111.png", pnginfo=info)
    assert cli_main(["import", str(tmp_path / "a1111.png"), str(tmp_path / "flow.json")]) == 0
    out = capsys.readouterr().out
    assert "prompt editing" in out and "emphasis" in out and "lora" in out
    flow = json.loads((tmp_path / "flow.json").read_text())
    types = [n["type"] for n in flow["nodes"]]
    assert types.count("StepwiseKSamplerAdvanced") == 2 and "StepwiseNoise" in types
    noise = next(n for n in flow["nodes"] if n["type"] == "StepwiseNoise")
    assert noise["widgets_values"][:3] == [1234, "fixed", "a1111_gpu"] and noise["widgets_values"][6] == 31337
    assert cli_main(["run", str(tmp_path / "flow.json"), "--out", str(tmp_path / "o")]) == 0
    # run --from-png on a PNG holding only parameters imports and runs it
    assert cli_main(["run", "--from-png", str(tmp_path / "a1111.png"), "--out", str(tmp_path / "o2")]) == 0
    assert "re-made from AUTOMATIC1111 settings" in capsys.readouterr().out


def test_a_hires_recipe_imports_to_the_hires_fix_script(tmp_path):
    from stepwise_sampler.standalone.a1111_import import import_parameters

    text = ("blue star\nSteps: 8, Sampler: Euler a, CFG scale: 5, Seed: 3, Size: 128x128, Denoising strength: 0.5, "
            "Hires upscale: 1.5, Hires steps: 4, Hires upscaler: Latent, Version: v1.9.0")
    wf, report = import_parameters(text)
    script = next(n for n in wf["nodes"] if n["type"] == "StepwiseHiResFixScript")
    assert script["widgets_values"][:4] == [1.5, "nearest-exact", 4, 0.5]
    (tmp_path / "h.json").write_text(json.dumps(wf))
    assert cli_main(["run", str(tmp_path / "h.json"), "--out", str(tmp_path / "o")]) == 0
