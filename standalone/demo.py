"""``stepwise demo``: run the shipped example workflows on the demo model; write PNGs and a contact sheet."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy
import torch
from PIL import Image, ImageDraw

from ..models.world import BACKGROUNDS, COLOURS, shape_mask
from .images import save_png

__all__ = ["run_demo", "EXAMPLES_DIR", "draw_picture", "DEMO_INPUT", "draw_demo_input", "EXAMPLE_INPUTS",
           "provide_example_inputs"]

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
TILE = 256


def draw_picture(shape: str, colour: str, background: str, position: str, width: int = 512,
                 height: int = 512) -> Image.Image:
    """A procedurally drawn picture of the demo world (used as the img2img input)."""
    m = shape_mask(shape, position, height, width, supersample=4)[..., None]
    rgb = m * numpy.array(COLOURS[colour]) + (1 - m) * numpy.array(BACKGROUNDS[background])
    return Image.fromarray((rgb * 255).round().astype(numpy.uint8))


DEMO_INPUT = "demo_input.png"  # the img2img example's LoadImage file


def draw_demo_input(input_dir: Path) -> Path:
    """Write the img2img example's input picture into ``input_dir``."""
    return save_png(draw_picture("star", "yellow", "black", "left"), Path(input_dir) / DEMO_INPUT)


#: the pictures the shipped examples load, drawn on demand into the input folder
EXAMPLE_INPUTS = {DEMO_INPUT: draw_demo_input}


def provide_example_inputs(input_dir: Path, wanted=None, notice=None) -> list[Path]:
    """Draw the examples' input pictures that are missing from ``input_dir`` (all of them, or the names in
    ``wanted``, e.g. a workflow's LoadImage values): the examples run as written on a fresh clone."""
    drawn = []
    for name, draw in EXAMPLE_INPUTS.items():
        if (wanted is None or name in wanted) and not (Path(input_dir) / name).exists():
            drawn.append(draw(Path(input_dir)))
            if notice is not None:
                notice(f"LoadImage: {name} (an example's input picture) was missing; drew it into {input_dir}")
    return drawn


def _tile(img: Image.Image, caption: str) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE + 22), (24, 24, 28))
    tile.paste(img.convert("RGB").resize((TILE, TILE), Image.LANCZOS), (0, 0))
    ImageDraw.Draw(tile).text((6, TILE + 5), caption, fill=(230, 230, 230))
    return tile


def _sheet(rows: list[list[Image.Image]], title: str) -> Image.Image:
    width = max(len(r) for r in rows) * (TILE + 8) + 8
    height = 40 + len(rows) * (TILE + 30)
    sheet = Image.new("RGB", (width, height), (12, 12, 16))
    ImageDraw.Draw(sheet).text((10, 12), title, fill=(255, 255, 255))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(tile, (8 + c * (TILE + 8), 40 + r * (TILE + 30)))
    return sheet


def _to_image(image: torch.Tensor) -> Image.Image:
    arr = image.detach().cpu().numpy()
    return Image.fromarray((numpy.clip(arr, 0, 1) * 255).round().astype(numpy.uint8))


def _image(results: dict, node_id: str) -> Image.Image:
    return _to_image(results[node_id][0][0])


def _by_title(prompt, text: str) -> str:
    return next(nid for nid, t in prompt.titles.items() if t.startswith(text))


def _decoder_of(prompt, sampler_id: str) -> str:
    return next(nid for nid, n in prompt.nodes.items()
                if n["class_type"] == "VAEDecode" and n["inputs"].get("samples", [None])[0] == sampler_id)


def run_demo(out: Path, examples: Path = EXAMPLES_DIR, say=print) -> Path:
    from ..host import Observer, observe
    from .core_nodes import RunContext, use_context
    from .workflow import execute, load_workflow

    start = time.perf_counter()
    out = Path(out)
    input_dir = out / "input"
    draw_demo_input(input_dir)
    quiet_notices: set[str] = set()

    def notice(msg: str) -> None:
        if msg not in quiet_notices:
            quiet_notices.add(msg)
            say(f"  note: {msg}")

    def run(name: str, edit=None):
        prompt = load_workflow(examples / f"{name}.json")
        if edit is not None:
            edit(prompt)
        ctx = RunContext(output_dir=out, input_dir=input_dir, notice=notice)
        with use_context(ctx), observe(Observer()):
            results = execute(prompt, notice=notice)
        return prompt, results, ctx

    tiles: list[list[Image.Image]] = []

    say("txt2img: 'red circle on white background', dpmpp_2m/karras, 20 steps")
    p, res, ctx = run("txt2img")
    tiles.append([_tile(Image.open(ctx.written[0]), "txt2img")])

    say("split: one KSampler vs two KSampler Advanced nodes (0-10 with leftover noise, then 10-20)")
    p, res, ctx = run("split")
    single, second = _by_title(p, "single run"), _by_title(p, "second half")
    a, b = res[single][0]["samples"], res[second][0]["samples"]
    diff = (a - b).abs().max().item()
    say(f"  max |single - split| = {diff:.3g} on latents up to {a.abs().max().item():.3g} "
        f"(relative {diff / max(1.0, a.abs().max().item()):.2g}; euler: equal up to float rounding)")
    tiles[-1] += [_tile(_image(res, _decoder_of(p, single)), "one node, 20 steps"),
                  _tile(_image(res, _decoder_of(p, second)), f"two nodes (max diff {diff:.1g})")]

    say("seamless split: dpmpp_2m_sde split at step 10 in ComfyUI's way and seamlessly, next to the single run")
    p, res, ctx = run("seamless_split")
    single = res[_by_title(p, "single run")][0]["samples"]
    row = [_tile(_image(res, _decoder_of(p, _by_title(p, "single run"))), "single run, 20 steps")]
    for mode in ("comfy", "seamless"):
        second = res[_by_title(p, f"{mode} split: steps 10")][0]["samples"]
        diff = (second - single).abs().max().item()
        say(f"  {mode} split: max |single - split| = {diff:.3g} on latents up to {single.abs().max().item():.3g}")
        row.append(_tile(_image(res, _decoder_of(p, _by_title(p, f"{mode} split: steps 10"))),
                          f"{mode} split (max diff {diff:.2g})"))
    tiles.append(row)
    save_png(_sheet([row], f"dpmpp_2m_sde, 20 steps, split at step 10: ComfyUI's split restarts the sampler's history and "
                           f"noise; the seamless split continues the run"), out / "seamless_split.png")

    say("per-item noise: a batch of 4 (euler_ancestral, seeds 300..303) next to item 3 re-made alone (seed 303)")
    p, res, ctx = run("per_item_noise")
    batch_id, alone_id = _by_title(p, "batch of 4"), _by_title(p, "item 3 alone")
    batch, alone = res[batch_id][0]["samples"], res[alone_id][0]["samples"]
    diff = (batch[3:4] - alone).abs().max().item()
    say(f"  max |batch item 3 - item 3 alone| = {diff:.3g} on latents up to {alone.abs().max().item():.3g}")
    images = res[_decoder_of(p, batch_id)][0]
    row = [_tile(_to_image(images[i]), f"batch item {i}") for i in range(4)]
    row.append(_tile(_image(res, _decoder_of(p, alone_id)), f"item 3 alone (diff {diff:.1g})"))
    tiles.append(row)

    say("variation: seed 11's noise blended with seed 12's, strength 0 -> 1")
    strip = []
    for strength in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        def edit(prompt, strength=strength):
            noise = next(nid for nid, n in prompt.nodes.items() if n["class_type"] == "StepwiseNoise")
            prompt.nodes[noise]["inputs"]["variation_strength"] = strength
            save = next(nid for nid, n in prompt.nodes.items() if n["class_type"] == "SaveImage")
            prompt.nodes[save]["inputs"]["filename_prefix"] = f"variation/strength_{strength:.1f}"
        p, res, ctx = run("variation", edit)
        strip.append(_tile(Image.open(ctx.written[0]), f"variation {strength:.1f}"))
    tiles.append(strip)
    save_png(_sheet([row, strip], "per-item noise: item 3 of a batch re-made alone; a variation strip (strength 0 -> 1)"),
             out / "noise.png")

    say("schedules: every Stepwise schedule at 10 steps on stepwise-tiny (dpmpp_2m, through the sigmas socket)")
    from ..schedulers.extra import SCHEDULE_NAMES

    sched_tiles = []
    for name in SCHEDULE_NAMES:
        def edit(prompt, name=name):
            sched = next(nid for nid, n in prompt.nodes.items() if n["class_type"] == "StepwiseSchedule")
            prompt.nodes[sched]["inputs"]["schedule"] = name
            sampler = next(nid for nid, n in prompt.nodes.items() if n["class_type"] == "StepwiseSampler")
            prompt.nodes[sampler]["inputs"]["sampler_name"] = "dpmpp_2m"
            save = next(nid for nid, n in prompt.nodes.items() if n["class_type"] == "SaveImage")
            prompt.nodes[save]["inputs"]["filename_prefix"] = f"schedules/{name}"
        p, res, ctx = run("schedules", edit)
        sched_tiles.append(_tile(Image.open(ctx.written[0]), name))
    rows = [sched_tiles[i:i + 6] for i in range(0, len(sched_tiles), 6)]
    save_png(_sheet(rows, "every schedule at 10 steps, dpmpp_2m, 'blue star on white background' (stepwise-tiny)"),
             out / "schedules.png")

    say("few steps on stepwise-tiny: 'red star on white background' (cfg 5) at 6 steps with karras, a fitted schedule "
        "and a fitted solver, next to 50 steps")
    p, res, ctx = run("fitted_schedule")
    ref = res[_by_title(p, "reference: 50 steps")][0]["samples"]
    row = [_tile(_image(res, _decoder_of(p, _by_title(p, "reference: 50 steps"))), "50 steps (reference)")]
    for label in ("karras, 6 steps", "fitted schedule, 6 steps", "fitted solver, 6 steps"):  # node titles
        nid = _by_title(p, label)
        err = (res[nid][0]["samples"] - ref).pow(2).mean().sqrt().item()
        say(f"  {label}: RMSE vs 50 steps {err:.3f} (latent)")
        row.append(_tile(_image(res, _decoder_of(p, nid)), f"{label} (RMSE {err:.2f})"))
    tiles.append(row)

    say("stages: the base model alone, and one run handed to a second expert (the style LoRA) below sigma 1.5")
    p, res, ctx = run("stages")
    stage_row = [_tile(_image(res, _decoder_of(p, _by_title(p, "base model only"))), "base model only"),
                 _tile(_image(res, _decoder_of(p, _by_title(p, "Stages:"))), "Stages: expert 2 below sigma 1.5")]
    tiles.append(stage_row)
    save_png(_sheet([stage_row], "Stages (Stepwise): one run; below sigma 1.5 a second "
                                 "expert (style LoRA)"), out / "stages.png")

    say("img2img: the input picture, noised for step 8 of 20, sampled with 'orange star, black background'")
    p, res, ctx = run("img2img")
    tiles[0] += [_tile(Image.open(input_dir / "demo_input.png"), "img2img input"),
                 _tile(Image.open(ctx.written[0]), "img2img from step 8")]

    say("prompt switch: 'red circle' for steps 0..k, then 'blue square', k = 0, 2, ..., 20")
    strip = []
    for k in range(0, 21, 2):
        def edit(prompt, k=k):
            step = _by_title(prompt, "switch step")
            prompt.nodes[step]["inputs"]["value"] = k
            save = next(nid for nid, n in prompt.nodes.items() if n["class_type"] == "SaveImage")
            prompt.nodes[save]["inputs"]["filename_prefix"] = f"prompt_switch/switch_at_{k:02}"
        p, res, ctx = run("prompt_switch", edit)
        strip.append(_tile(Image.open(ctx.written[0]), f"switch at {k}"))
    strip_img = _sheet([strip], "prompt switch: 'red circle' for steps 0..k, then 'blue square' (euler, 20 steps)")
    save_png(strip_img, out / "prompt_switch_strip.png")
    tiles.append(strip[:6])
    tiles.append(strip[6:])

    say("style: the 'pixel art' LoRA stand-in off, on for all steps, switched on at step 10")
    p, res, ctx = run("style_switch")
    tiles.append([_tile(Image.open(w), w.parent.name + "/" + w.name.split("_0")[0]) for w in ctx.written])

    sheet = _sheet(tiles, "Stepwise demo on the embedded models: txt2img, split, seamless split, per-item noise, "
                          "variations, few steps on stepwise-tiny (karras, fitted schedule, fitted solver), stages, "
                          "img2img, prompt switch, style switch")
    path = save_png(sheet, out / "contact_sheet.png")
    say(f"wrote {path} and {len(list(out.rglob('*.png')))} PNGs under {out} in {time.perf_counter() - start:.1f} s")
    return path
