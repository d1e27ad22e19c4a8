"""`stepwise run`: the tutorial's saved workflows run unchanged; formats, modes and errors."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from stepwise_sampler.standalone.cli import main as cli_main, run_workflow_file
from stepwise_sampler.standalone.core_nodes import RunContext, use_context
from stepwise_sampler.standalone.demo import draw_picture
from stepwise_sampler.standalone.registry import node_registry
from stepwise_sampler.standalone.uiformat import GraphBuilder
from stepwise_sampler.standalone.workflow import WorkflowError, execute, load_workflow, parse_workflow, ui_to_prompt
from conftest import REPO

TUTORIAL = REPO.parent / "shared" / "workflows" / "tutorial"
TUTORIAL_FILES = sorted(TUTORIAL.glob("*.json"))


@pytest.fixture
def input_dir(tmp_path):
    d = tmp_path / "input"
    d.mkdir()
    draw_picture("star", "yellow", "sky", "center").save(d / "vivi (1).png")  # the tutorial's image is not shipped
    return d


def test_the_six_tutorial_workflows_are_present():
    assert len(TUTORIAL_FILES) == 6


@pytest.mark.parametrize("path", TUTORIAL_FILES, ids=[p.stem for p in TUTORIAL_FILES])
def test_tutorial_workflow_runs_unchanged(path, tmp_path, input_dir):
    before = path.read_bytes()
    results, ctx = run_workflow_file(path, tmp_path / "out", input_dir, quiet=True)
    assert path.read_bytes() == before
    saves = [n for n in json.loads(before)["nodes"] if n["type"] == "SaveImage"]
    assert len(ctx.written) == len(saves) >= 1
    for i, p in enumerate(sorted(ctx.written)):
        assert p.name == f"ComfyUI_{i + 1:05}_.png"
        img = Image.open(p)
        assert img.size == (512, 512) or "image2image" in path.name
        prompt = json.loads(img.text["prompt"])
        assert {n["class_type"] for n in prompt.values()} >= {"CheckpointLoaderSimple", "VAEDecode"}
        assert json.loads(img.text["workflow"])["nodes"]


def test_divide_split_equals_single_run(tmp_path):
    """The tutorial's point: two KSampler Advanced nodes (0-10 + leftover, 10-20) equal one KSampler (euler)."""
    prompt = load_workflow(TUTORIAL / "SD1.5_KSampler_(Advanced)-divide.json")
    with use_context(RunContext(output_dir=tmp_path, notice=lambda m: None)):
        results = execute(prompt)
    single, split = results["3"][0]["samples"], results["13"][0]["samples"]
    scale = single.abs().max().item()
    assert (single - split).abs().max().item() <= 1e-5 * max(1.0, scale)


def test_prompt_editing_uses_the_primitive_for_both_nodes():
    prompt = load_workflow(TUTORIAL / "SD1.5_KSampler_(Advanced)-Prompt_Editing.json")
    assert prompt.nodes["11"]["inputs"]["end_at_step"] == ["19", 0]
    assert prompt.nodes["13"]["inputs"]["start_at_step"] == ["19", 0]
    assert prompt.nodes["11"]["inputs"]["noise_seed"] == 432432432  # control_after_generate value skipped
    assert prompt.nodes["11"]["inputs"]["steps"] == 20


def test_api_format_runs_the_same(tmp_path, input_dir):
    ui = load_workflow(TUTORIAL / "SD1.5_KSampler_(Advanced)-LoRA.json")
    api_file = tmp_path / "api.json"
    api_file.write_text(json.dumps(ui.nodes))
    _, a = run_workflow_file(api_file, tmp_path / "a", input_dir, quiet=True)
    _, b = run_workflow_file(TUTORIAL / "SD1.5_KSampler_(Advanced)-LoRA.json", tmp_path / "b", input_dir, quiet=True)
    assert [Image.open(p).tobytes() for p in a.written] == [Image.open(p).tobytes() for p in b.written]
    assert "workflow" not in Image.open(a.written[0]).text  # API prompts carry no editor workflow


def _small_graph():
    g = GraphBuilder(node_registry())
    ckpt = g.node("CheckpointLoaderSimple", ["x.safetensors"])
    pos = g.node("CLIPTextEncode", ["red circle"])
    neg = g.node("CLIPTextEncode", ["text"])
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    lat = g.node("EmptyLatentImage", [64, 64, 1])
    ks = g.node("KSampler", [5, "randomize", 4, 7.0, "euler", "normal", 1.0])
    for src, slot, name in ((ckpt, 0, "model"), (pos, 0, "positive"), (neg, 0, "negative"), (lat, 0, "latent_image")):
        g.link(src, slot, ks, name)
    dec = g.node("VAEDecode", [])
    g.link(ks, 0, dec, "samples")
    g.link(ckpt, 2, dec, "vae")
    save = g.node("SaveImage", ["t"])
    g.link(dec, 0, save, "images")
    return g, dict(ckpt=ckpt, pos=pos, neg=neg, lat=lat, ks=ks, dec=dec, save=save)


def _run(wf, tmp_path):
    with use_context(RunContext(output_dir=tmp_path, notice=lambda m: None)) as ctx:
        results = execute(parse_workflow(wf))
    return results, ctx


def test_bypassed_node_passes_its_input_through(tmp_path):
    g, n = _small_graph()
    wf = g.to_json()
    ref, _ = _run(copy.deepcopy(wf), tmp_path / "a")
    # insert a bypassed LoraLoader between checkpoint and sampler: the result must not change
    g2 = GraphBuilder(node_registry())
    g2.nodes, g2.links = copy.deepcopy(wf["nodes"]), copy.deepcopy(wf["links"])
    ckpt = g2.nodes[0]
    ks = next(x for x in g2.nodes if x["type"] == "KSampler")
    lora = g2.node("LoraLoader", ["style.safetensors", 1.0, 1.0])
    lora["mode"] = 4
    g2.link(ckpt, 0, lora, "model")
    g2.link(ckpt, 1, lora, "clip")
    g2.link(lora, 0, ks, "model")
    out, _ = _run(g2.to_json(), tmp_path / "b")
    ks_id = str(ks["id"])
    assert torch.equal(out[ks_id][0]["samples"], ref[ks_id][0]["samples"])
    lora["mode"] = 0
    styled, _ = _run(g2.to_json(), tmp_path / "c")
    assert not torch.equal(styled[ks_id][0]["samples"], ref[ks_id][0]["samples"])


def test_muted_nodes_are_dropped_and_reroutes_resolved(tmp_path):
    g, n = _small_graph()
    extra = g.node("SaveImage", ["muted"])
    g.link(n["dec"], 0, extra, "images")
    extra["mode"] = 2
    reroute = {"id": 99, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": None}],
               "outputs": [{"name": "", "type": "VAE", "links": []}], "widgets_values": []}
    wf = g.to_json()
    wf["nodes"].append(reroute)
    # route the VAE through the reroute
    vae_link = next(link for link in wf["links"] if link[3] == n["dec"]["id"] and link[5] == "VAE")
    wf["links"].append([500, vae_link[1], vae_link[2], 99, 0, "VAE"])
    reroute["inputs"][0]["link"] = 500
    vae_link[1], vae_link[2] = 99, 0
    results, ctx = _run(wf, tmp_path)
    assert [p.name for p in ctx.written] == ["t_00001_.png"]
    assert str(extra["id"]) not in results


def test_primitive_node_and_converted_widgets(tmp_path):
    g, n = _small_graph()
    wf = g.to_json()
    prim = {"id": 77, "type": "PrimitiveNode", "mode": 0, "outputs": [{"name": "INT", "type": "INT", "links": [600],
            "widget": {"name": "steps"}}], "widgets_values": [2, "fixed"]}
    wf["nodes"].append(prim)
    wf["links"].append([600, 77, 0, n["ks"]["id"], 4, "INT"])
    n["ks"]["inputs"].append({"name": "steps", "type": "INT", "link": 600, "widget": {"name": "steps"}})
    prompt = parse_workflow(wf)
    assert prompt.nodes[str(n["ks"]["id"])]["inputs"]["steps"] == 2


def _write(tmp_path, wf):
    p = tmp_path / "wf.json"
    p.write_text(json.dumps(wf))
    return p


def test_errors_name_the_node_and_input(tmp_path, capsys):
    g, n = _small_graph()
    wf = g.to_json()
    bad = copy.deepcopy(wf)
    next(x for x in bad["nodes"] if x["type"] == "KSampler")["widgets_values"][2] = 0  # steps = 0
    with pytest.raises(WorkflowError, match=rf"node {n['ks']['id']} \(KSampler\) input steps: 0 is outside"):
        _run(bad, tmp_path / "o1")
    assert not (tmp_path / "o1").exists() or not list((tmp_path / "o1").iterdir()), "nothing half-written"

    bad = copy.deepcopy(wf)
    next(x for x in bad["nodes"] if x["type"] == "KSampler")["widgets_values"][4] = "eulerr"
    with pytest.raises(WorkflowError, match="sampler_name: 'eulerr' is not one of"):
        _run(bad, tmp_path / "o2")

    bad = copy.deepcopy(wf)
    bad["nodes"][0]["type"] = "FancyLoader"
    with pytest.raises(WorkflowError) as err:
        _run(bad, tmp_path / "o3")
    assert "node 1" in str(err.value) and "FancyLoader" in str(err.value) and "KSampler" in str(err.value)

    bad = copy.deepcopy(wf)
    ks = next(x for x in bad["nodes"] if x["type"] == "KSampler")
    next(i for i in ks["inputs"] if i["name"] == "positive")["link"] = None
    with pytest.raises(WorkflowError, match=rf"node {n['ks']['id']} \(KSampler\) input 'positive'"):
        _run(bad, tmp_path / "o4")

    bad = copy.deepcopy(wf)
    next(x for x in bad["nodes"] if x["type"] == "EmptyLatentImage")["widgets_values"][0] = "wide"
    with pytest.raises(WorkflowError, match="input width: expected an integer"):
        _run(bad, tmp_path / "o5")


def test_cycle_and_dangling_links_in_api_format(tmp_path):
    cyc = {"1": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["2", 0]}},
           "2": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["1", 0]}},
           "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    with pytest.raises(WorkflowError, match="cycle"):
        execute(parse_workflow(cyc))
    dangling = {"3": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "x"}}}
    with pytest.raises(WorkflowError, match="node 3 input 'images': linked to node 9"):
        execute(parse_workflow(dangling))


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    notjson = tmp_path / "a.json"
    notjson.write_text("{nope")
    assert cli_main(["run", str(notjson), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not JSON" in err
    assert cli_main(["run", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert cli_main(["run", str(_write(tmp_path, {"hello": 1}))]) == 2
    assert "not a ComfyUI workflow" in capsys.readouterr().err


def test_cli_run_with_previews(tmp_path, capsys):
    g, _ = _small_graph()
    wf = _write(tmp_path, g.to_json())
    assert cli_main(["run", str(wf), "--out", str(tmp_path / "o"), "--preview", str(tmp_path / "p")]) == 0
    assert "wrote" in capsys.readouterr().out
    previews = sorted((tmp_path / "p").glob("*.png"))
    assert [p.name for p in previews] == [f"node5_step{i:03}.png" for i in range(1, 5)]


def test_load_image_stays_inside_the_input_folder(tmp_path, input_dir):
    from stepwise_sampler.standalone.core_nodes import LoadImage

    with use_context(RunContext(input_dir=input_dir)):
        img, mask = LoadImage().load_image("vivi (1).png")
        assert img.shape == (1, 512, 512, 3) and mask.shape == (1, 512, 512)
        with pytest.raises(ValueError, match="outside the input folder"):
            LoadImage().load_image("../secret.png")
        with pytest.raises(ValueError, match="not found"):
            LoadImage().load_image("nope.png")


def test_stepwise_demo_writes_the_contact_sheet(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stepwise_sampler.standalone.cli", "demo", "--out", str(tmp_path)],
                          capture_output=True, text=True, check=True)
    assert "max |single - split|" in proc.stdout
    sheet = Image.open(tmp_path / "contact_sheet.png")
    assert sheet.width > 1000 and (tmp_path / "prompt_switch_strip.png").exists()
    assert len(list(tmp_path.rglob("*.png"))) >= 20


def test_examples_are_up_to_date():
    from stepwise_sampler.examples.build import EXAMPLES, HERE

    for name, build in EXAMPLES.items():
        assert json.loads((HERE / f"{name}.json").read_text()) == json.loads(json.dumps(build())), name


EFFICIENCY = REPO.parent / "shared" / "workflows" / "efficiency"


@pytest.mark.parametrize("name", ["LoRA_Stacking.workflow.json", "LoRA_Stacking.prompt.json",
                                  "HiRes_Fix_LatentUpscale.workflow.json", "HiRes_Fix_LatentUpscale.prompt.json"])
def test_efficiency_workflows_run_through_our_efficient_nodes(name, tmp_path):
    results, ctx = run_workflow_file(EFFICIENCY / name, tmp_path, tmp_path, quiet=True)
    samplers = [v for k, v in results.items() if isinstance(v, tuple) and len(v) == 6]
    assert samplers, "the efficiency sampler nodes ran"
    for out in samplers:
        assert out[3]["samples"].ndim == 4 and out[5].ndim == 4
    assert ctx.written and all(p.exists() for p in ctx.written)
    if "HiRes" in name:
        assert results["107"][3]["samples"].shape[-1] == 896 // 8  # upscaled second pass


@pytest.mark.parametrize("name, node", [("HiResFix_Script.workflow.json", "HighRes-Fix Script"),
                                        ("Tiled_Upscaler_Script.workflow.json", "Tiled Upscaler Script")])
def test_efficiency_scripts_are_reported_as_unsupported(name, node, tmp_path):
    with pytest.raises(WorkflowError) as err:
        run_workflow_file(EFFICIENCY / name, tmp_path, tmp_path, quiet=True)
    assert repr(node) in str(err.value) and "supported types" in str(err.value)
    assert "`stepwise migrate`" in str(err.value)  # points at the way onto our nodes
    assert not list(tmp_path.rglob("*.png"))


def test_legacy_sampler_state_widget_is_recognised():
    prompt = load_workflow(EFFICIENCY / "HiRes_Fix_LatentUpscale.workflow.json")
    inputs = prompt.nodes["55"]["inputs"]
    assert inputs["sampler_state"] == "Sample" and inputs["seed"] == 799948350888541 and inputs["steps"] == 20
    assert inputs["preview_method"] == "auto" and inputs["vae_decode"] == "true"
    loader = prompt.nodes["110"]["inputs"]  # an 11-widget Efficient Loader save
    assert loader["empty_latent_width"] == 768 and "token_normalization" not in loader
