"""Sweeps: the value syntax, XY Plot (Stepwise) on the Efficient nodes, `stepwise sweep`, and its Ray fan-out."""
from __future__ import annotations

import json
import os
import weakref

import numpy
import pytest
import torch
from PIL import Image

from stepwise_sampler.nodes import (StepwiseKSamplerAdvancedEfficient, StepwiseKSamplerEfficient, StepwiseNoise,
                                    StepwiseXYPlot)
from stepwise_sampler.host import Observer, observe
from stepwise_sampler.preview.grid import GridBuilder
from stepwise_sampler.workflows.sweep import parse_values
from stepwise_sampler.nodes.scripts import CELL_CACHE
from stepwise_sampler.standalone.cli import main as cli_main, remake_from_png
from stepwise_sampler.models.mixture import DemoModel
from stepwise_sampler.models.world import DemoCLIP, DemoVAE
from conftest import REPO

EXAMPLES = REPO / "examples"
PROMPT = "red circle on white background"


@pytest.fixture(scope="module")
def demo():
    clip = DemoCLIP(notice=lambda m: None)
    return DemoModel(), clip, DemoVAE(), clip.encode(PROMPT), clip.encode("text")


def _latent(size: int = 8, batch: int = 1) -> dict:
    return {"samples": torch.zeros(batch, 4, size, size)}


# --- the value syntax ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis, text, kw, want", [
    ("sampler_name", "euler, dpmpp_2m", {}, ["euler", "dpmpp_2m"]),
    ("steps", "10:30:5", {}, [10, 15, 20, 25, 30]),
    ("steps", "30:10:-10", {}, [30, 20, 10]),
    ("steps", "4:6", {}, [4, 5, 6]),
    ("cfg", "1.5:3:0.5, 7", {}, [1.5, 2.0, 2.5, 3.0, 7.0]),
    ("cfg", "0.1:0.3:0.1", {}, [0.1, 0.2, 0.3]),
    ("seed", "+1 x4", {"base": 10}, [10, 11, 12, 13]),
    ("seed", "+5×3", {"base": 0}, [0, 5, 10]),
    ("scheduler", "*", {"allowed": ["normal", "karras"]}, ["normal", "karras"]),
    ("positive S/R", "red, blue, a, b", {}, ["red", "blue", "a", "b"]),
    ("positive S/R", "red\nblue, with a comma", {}, ["red", "blue, with a comma"]),
    ("model", "1:3", {}, [1, 2, 3]),
])
def test_values(axis, text, kw, want):
    assert parse_values(axis, text, **kw) == want


@pytest.mark.parametrize("axis, text, kw, message", [
    ("steps", "ten", {}, "steps: 'ten' is not a number"),
    ("steps", "1.5", {}, "steps: '1.5' is not a whole number"),
    ("steps", "10:30:-5", {}, "never reaches its end"),
    ("steps", "1:100000", {}, "at most 256 per axis"),
    ("seed", "+1 x4", {}, "counts from the node's own value"),
    ("sampler_name", "euler, eulerr", {"allowed": ["euler", "heun"]}, "sampler_name: 'eulerr' is not one of the "
                                                                      "allowed values: euler, heun"),
    ("positive S/R", "red", {}, "give the searched text first"),
    ("model", "5", {}, "model: 5 is not an input number"),
    ("bogus", "1", {}, "axis: unknown axis 'bogus'"),
    ("steps", "  ", {}, "steps: no values"),
])
def test_value_errors_name_the_axis(axis, text, kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_values(axis, text, **kw)


# --- XY Plot (Stepwise) on the Efficient nodes ------------------------------------------------------------------------
def _plot(*args, **kw):
    (script,) = StepwiseXYPlot().script(*args, **kw)
    return script


def _efficient(demo, script, latent=None, **widgets):
    model, clip, vae, pos, neg = demo
    w = {"seed": 1, "steps": 6, "cfg": 7.0, "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0, **widgets}
    return StepwiseKSamplerEfficient().sample(model, w["seed"], w["steps"], w["cfg"], w["sampler_name"],
                                              w["scheduler"], pos, neg, latent or _latent(), w["denoise"], "none",
                                              "true", optional_vae=vae, script=script, noise=w.get("noise"))


def test_xy_cells_equal_single_runs_and_grid_is_labelled(demo):
    CELL_CACHE.clear()
    res = _efficient(demo, _plot("sampler_name", "euler, dpmpp_2m", "steps", "4, 8"))
    model, positive, negative, cells, vae, grid = res["result"]
    assert cells["samples"].shape == (4, 4, 8, 8) and grid.shape[0] == 1 and grid.shape[-1] == 3
    order = [("euler", 4), ("dpmpp_2m", 4), ("euler", 8), ("dpmpp_2m", 8)]  # row by row
    for k, (sampler, steps) in enumerate(order):
        single = _efficient(demo, None, sampler_name=sampler, steps=steps)["result"][3]["samples"]
        assert torch.equal(cells["samples"][k:k + 1], single), (sampler, steps)
    assert res["ui"]["stepwise_xy"][0]["labels"] == {"x": ["sampler_name", ["euler", "dpmpp_2m"]],
                                                   "y": ["steps", ["4", "8"]]}
    (doc,) = res["ui"]["stepwise_recipe"]
    assert [(r["sampler"], r["steps"]) for r in doc["samplers"]] == order
    assert all(len(r["sigmas"]) == r["steps"] + 1 for r in doc["samplers"])
    # the picture: white margins with labels, the cells inside
    arr = grid[0].numpy()
    assert arr.shape[0] > 2 * 64 and arr.shape[1] > 2 * 64 and arr[0, -1].tolist() == [1.0, 1.0, 1.0]


def test_cached_cells_are_reused_only_when_equal(demo):
    CELL_CACHE.clear()
    first = _efficient(demo, _plot("cfg", "5, 7", "none", ""))
    assert first["ui"]["stepwise_xy"][0]["cached"] == 0
    again = _efficient(demo, _plot("cfg", "5, 7", "none", ""))
    assert again["ui"]["stepwise_xy"][0]["cached"] == 2
    assert torch.equal(again["result"][3]["samples"], first["result"][3]["samples"])
    more = _efficient(demo, _plot("cfg", "5, 7, 9", "none", ""))
    assert more["ui"]["stepwise_xy"][0]["cached"] == 2  # only the new value sampled
    other_seed = _efficient(demo, _plot("cfg", "5, 7", "none", ""), seed=2)
    assert other_seed["ui"]["stepwise_xy"][0]["cached"] == 0  # a widget outside the axes changed: nothing stale


def test_relative_seeds_count_from_the_node_seed(demo):
    res = _efficient(demo, _plot("seed", "+1 x3", "none", ""), seed=40)
    assert res["ui"]["stepwise_xy"][0]["labels"]["x"] == ["seed", ["40", "41", "42"]]
    alone = _efficient(demo, None, seed=42)["result"][3]["samples"]
    assert torch.equal(res["result"][3]["samples"][2:3], alone)


def test_prompt_search_and_replace(demo):
    model, clip, vae, pos, neg = demo
    res = _efficient(demo, _plot("positive S/R", "red, blue", "none", "", clip=clip, positive_text=PROMPT))
    blue = clip.encode(PROMPT.replace("red", "blue"))
    (_, _, _, single, _, _) = StepwiseKSamplerEfficient().sample(
        model, 1, 6, 7.0, "euler", "karras", blue, neg, _latent(), 1.0, "none", "true", optional_vae=vae)["result"]
    assert torch.equal(res["result"][3]["samples"][1:2], single["samples"])
    assert not torch.equal(res["result"][3]["samples"][0], res["result"][3]["samples"][1])


def test_noise_axes_equal_noise_stepwise(demo):
    res = _efficient(demo, _plot("variation_strength", "0, 0.5", "batch_mode", "comfy, per_item"), seed=9)
    (noise,) = StepwiseNoise().make(9, "per_item", 0, 0.5)
    single = _efficient(demo, None, noise=noise)["result"][3]["samples"]
    assert torch.equal(res["result"][3]["samples"][3:4], single)


def test_model_and_latent_axes_and_z_grids(demo):
    model, clip, vae, pos, neg = demo
    styled = model.with_style(1.0)
    plot = _plot("model", "1, 2", "latent", "1, 2", "cfg", "4, 8", model_1=model, model_2=styled,
                 latent_1=_latent(8), latent_2=_latent(8, batch=2))
    res = _efficient(demo, plot)
    grid = res["result"][5]
    assert grid.shape[0] == 2  # one grid per Z value, the same size
    assert res["result"][3]["samples"].shape[0] == 2 * 2 * (1 + 2)  # a batch-2 latent gives two images per cell


def test_advanced_node_axes(demo):
    model, clip, vae, pos, neg = demo
    plot = _plot("end_at_step", "4, 8", "split_mode", "comfy, seamless")
    res = StepwiseKSamplerAdvancedEfficient().sample(model, "enable", 3, 8, 7.0, "dpmpp_2m", "karras", pos, neg,
                                                     _latent(), 0, 8, "enable", "none", "true", optional_vae=vae,
                                                     script=plot)
    assert res["result"][3]["samples"].shape[0] == 4
    with pytest.raises(ValueError, match="x_axis: 'denoise' is not a setting of this sampler node; allowed here: "
                                         "seed, steps"):
        StepwiseKSamplerAdvancedEfficient().sample(model, "enable", 3, 8, 7.0, "euler", "karras", pos, neg,
                                                   _latent(), 0, 8, "enable", "none", "true", optional_vae=vae,
                                                   script=_plot("denoise", "0.5, 1", "none", ""))
    with pytest.raises(ValueError, match="x_axis: 'start_at_step' is not a setting"):
        _efficient(demo, _plot("start_at_step", "1, 2", "none", ""))


@pytest.mark.parametrize("args, kw, message", [
    (("steps", "4", "steps", "8"), {}, "the axes must differ"),
    (("positive S/R", "red, blue", "none", ""), {}, "needs the clip and positive_text inputs connected"),
    (("model", "1, 2", "none", ""), {"model_1": object()}, "x_values: model_2 is not connected"),
    (("steps", "4:x", "none", ""), {}, "steps: '4:x' is not a number"),
])
def test_xy_node_errors(demo, args, kw, message):
    with pytest.raises(ValueError, match=message):
        StepwiseXYPlot().script(*args, **kw)


def test_positive_sr_term_must_occur(demo):
    model, clip, *_ = demo
    with pytest.raises(ValueError, match="'green' does not occur in the prompt text"):
        StepwiseXYPlot().script("positive S/R", "green, blue", "none", "", clip=clip, positive_text=PROMPT)


def test_bad_widget_value_is_named_before_sampling(demo):
    calls = []
    with observe(Observer(on_step=lambda *a: calls.append(a))):
        with pytest.raises(ValueError, match="steps: 0 is outside the allowed range 1..10000"):
            _efficient(demo, _plot("steps", "4, 0", "none", ""))
    assert calls == []  # checked before any cell ran


def test_vae_decode_false_is_refused(demo):
    model, clip, vae, pos, neg = demo
    with pytest.raises(ValueError, match="vae_decode: the XY Plot decodes every cell"):
        StepwiseKSamplerEfficient().sample(model, 1, 4, 7.0, "euler", "karras", pos, neg, _latent(), 1.0, "none",
                                           "false", optional_vae=vae, script=_plot("cfg", "5, 7", "none", ""))


def test_progress_and_interrupt_between_cells(demo):
    import threading

    CELL_CACHE.clear()
    texts, flag = [], threading.Event()

    def progress(text):
        texts.append(text)
        if text == "cell 2/4":
            flag.set()  # as if the user pressed cancel while cell 2 runs: its next step stops it

    with observe(Observer(interrupt=flag, on_progress_text=progress)):
        with pytest.raises(InterruptedError):
            _efficient(demo, _plot("cfg", "4, 5, 6, 7", "none", ""))
    assert texts == ["cell 1/4", "cell 2/4"]


def test_memory_does_not_grow_with_the_cells(demo):
    """A 12x12 sweep: at most one decoded cell image is alive at a time; the grid holds uint8 copies."""
    model, clip, vae, pos, neg = demo
    alive, peak = set(), [0]

    class CountingVAE:
        def decode(self, samples):
            img = vae.decode(samples)
            key = id(img)
            alive.add(key)
            peak[0] = max(peak[0], len(alive))
            weakref.finalize(img, alive.discard, key)
            return img

    CELL_CACHE.clear()
    res = StepwiseKSamplerEfficient().sample(model, 1, 2, 7.0, "euler", "karras", pos, neg, _latent(4), 1.0, "none",
                                             "true", optional_vae=CountingVAE(),
                                             script=_plot("seed", "0:11", "cfg", "1:12"))
    assert res["result"][3]["samples"].shape[0] == 144
    assert peak[0] <= 2, f"{peak[0]} decoded cell images alive at once"


def test_big_grids_shrink_their_cells(monkeypatch):
    import stepwise_sampler.preview.grid as sweep

    monkeypatch.setattr(sweep, "MAX_GRID_PIXELS", 4 * 32 * 32)
    g = GridBuilder(("x", [1, 2]), ("y", [1, 2]), None)
    for ix in range(2):
        for iy in range(2):
            g.add(ix, iy, 0, numpy.full((1, 64, 64, 3), 0.5, dtype=numpy.float32), "")
    assert g.scale == pytest.approx(0.5) and g.cells[(0, 0, 0)].image.shape == (32, 32, 3)
    (picture,) = g.render()
    assert picture.size[0] < 4 * 64


# --- `stepwise sweep` ---------------------------------------------------------------------------------------------
def _pixels(path) -> numpy.ndarray:
    return numpy.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep_local")
    code = cli_main(["sweep", str(EXAMPLES / "txt2img.json"), "--node", "5", "--x", "sampler_name=euler,dpmpp_2m",
                     "--y", "steps=4,16", "--out", str(out), "--input-dir", str(out)])
    assert code == 0
    return out


def test_cli_sweep_writes_four_distinct_cells_and_a_grid(local_sweep):
    index = json.loads((local_sweep / "sweep.json").read_text())
    assert index["failed"] == 0 and index["grids"] == ["xy_grid.png"] and len(index["cells"]) == 4
    cells = [_pixels(local_sweep / c["files"][0]) for c in index["cells"]]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not numpy.array_equal(cells[i], cells[j]), (i, j)
    grid = _pixels(local_sweep / "xy_grid.png")
    assert grid.shape[0] > 2 * 512 and grid.shape[1] > 2 * 512
    for cell, entry in zip(cells, index["cells"]):
        recipe = json.loads(Image.open(local_sweep / entry["files"][0]).text["stepwise"])
        (r,) = recipe["samplers"]
        assert (r["sampler"], r["steps"]) == (entry["values"]["sampler_name"], entry["values"]["steps"])
        assert len(r["sigmas"]) == r["steps"] + 1


def test_a_cell_png_remakes_itself(local_sweep, tmp_path):
    index = json.loads((local_sweep / "sweep.json").read_text())
    result = remake_from_png(local_sweep / index["cells"][3]["files"][0], tmp_path, tmp_path)
    assert result["match"]


@pytest.mark.parametrize("args, message", [
    (["--node", "5", "--x", "stepz=4,8"], "--x: 'stepz' is not a widget of node 5 (StepwiseKSampler); its widgets: "
                                          "seed, steps"),
    (["--node", "5", "--x", "steps=4,zero"], "steps: 'zero' is not a number"),
    (["--node", "5", "--x", "sampler_name=euler,nope"], "sampler_name: 'nope' is not one of the allowed values"),
    (["--node", "5", "--x", "steps=4,0"], "--x (node 5): steps"),
    (["--node", "4", "--x", "steps=4"], "--node 4: EmptyLatentImage is not a sampler node; its sampler nodes: 5"),
    (["--node", "99", "--x", "steps=4"], "--node: no node '99' in the workflow"),
    (["--node", "5", "--x", "steps"], "--x: expected NAME=VALUES"),
    (["--node", "5", "--x", "steps=4", "--workers", "2"], "--workers: applies to --ray"),
    (["--node", "5", "--x", "positive=green,blue"], "'green' does not occur"),
])
def test_cli_sweep_errors_exit_2_and_name_the_axis(args, message, tmp_path, capsys):
    code = cli_main(["sweep", str(EXAMPLES / "txt2img.json"), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "o" / "xy_grid.png").exists()


def test_cli_prompt_axis_and_failed_cells(tmp_path, capsys):
    """positive S/R through the text encoder; a cell that fails at run time (dpm_fast split seamlessly) is retried,
    drawn as failed, and the exit code is 1."""
    out = tmp_path / "o"
    code = cli_main(["sweep", str(EXAMPLES / "split.json"), "--node", "8", "--x", "split_mode=comfy,seamless",
                     "--y", "sampler_name=euler,dpm_fast", "--out", str(out)])
    index = json.loads((out / "sweep.json").read_text())
    assert code == 1 and index["failed"] == 1
    (bad,) = [c for c in index["cells"] if "error" in c]
    assert bad["values"] == {"split_mode": "seamless", "sampler_name": "dpm_fast"} and "dpm_fast" in bad["error"]
    assert (out / "xy_grid.png").exists()
    out2 = tmp_path / "p"
    assert cli_main(["sweep", str(EXAMPLES / "txt2img.json"), "--node", "5", "--x", "positive=red,blue",
                     "--out", str(out2)]) == 0
    a, b = (_pixels(out2 / c["files"][0]) for c in json.loads((out2 / "sweep.json").read_text())["cells"])
    assert a[256, 256, 0] > a[256, 256, 2] and b[..., 2].mean() > a[..., 2].mean()  # red, then blue


def _have_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def needs_ray(fn):
    """A Ray test: slow (a local Ray cluster starts), skipped without the extra unless CI requires it."""
    return pytest.mark.slow(pytest.mark.skipif(not _have_ray() and not os.environ.get("STEPWISE_REQUIRE_RAY"),
                                               reason="ray is not installed (pip install -e '.[ray]')")(fn))


@needs_ray
def test_ray_sweep_equals_local_sweep(local_sweep, tmp_path):
    out = tmp_path / "ray"
    code = cli_main(["sweep", str(EXAMPLES / "txt2img.json"), "--node", "5", "--x", "sampler_name=euler,dpmpp_2m",
                     "--y", "steps=4,16", "--out", str(out), "--input-dir", str(out), "--ray", "local",
                     "--workers", "2"])
    assert code == 0
    assert (out / "xy_grid.png").read_bytes() == (local_sweep / "xy_grid.png").read_bytes()
    index = json.loads((out / "sweep.json").read_text())
    assert index["ray"] == "local"
    for entry in index["cells"]:
        assert (out / entry["files"][0]).read_bytes() == (local_sweep / entry["files"][0]).read_bytes()
    import ray

    assert not ray.is_initialized()  # the local cluster is torn down


@needs_ray
def test_ray_failed_cell_is_retried_then_drawn_as_failed(tmp_path):
    args = [str(EXAMPLES / "split.json"), "--node", "8", "--x", "split_mode=comfy,seamless", "--y",
            "sampler_name=euler,dpm_fast"]
    assert cli_main(["sweep", *args, "--out", str(tmp_path / "local")]) == 1
    assert cli_main(["sweep", *args, "--out", str(tmp_path / "ray"), "--ray", "local", "--workers", "2"]) == 1
    local = json.loads((tmp_path / "local" / "sweep.json").read_text())
    remote = json.loads((tmp_path / "ray" / "sweep.json").read_text())
    assert [c.get("error") for c in local["cells"]] == [c.get("error") for c in remote["cells"]]
    assert [c["attempts"] for c in remote["cells"]] == [1, 1, 1, 2]  # the failed cell was tried twice
    assert (tmp_path / "ray" / "xy_grid.png").read_bytes() == (tmp_path / "local" / "xy_grid.png").read_bytes()
