"""Regenerate the example workflows (editor/UI format) and their thumbnails (``NAME.jpg``, the example's own
output): ``python -m stepwise_sampler.examples.build [--no-thumbnails]``.

They use the pack's node ids, so they open in ComfyUI with the pack installed (swap the checkpoint
loader's file for a real SD1.5 model); ``stepwise run`` and ``stepwise demo`` run them on the demo model.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..standalone.registry import node_registry
from ..standalone.uiformat import GraphBuilder

HERE = Path(__file__).resolve().parent
CKPT = "v1-5-pruned-emaonly.safetensors"
TINY = "stepwise-tiny.safetensors"  # the trained demo network: where few-step quality is the point
NEG = "text, watermark"


ROW_GAP = 50
COLUMN = 480  # 1.27's Vue renderer draws nodes at least ~430 px wide
TITLE = 30


def node_height(g: GraphBuilder, class_type: str) -> int:
    """A node's full height (title included) in the editor: the larger of the classic canvas's layout and the
    Vue renderer's (measured on frontend 1.27.10: ~99 px of header and padding, 20 px per slot row, 38 px per
    widget row, 124 px for the schedule plot), so the examples do not overlap in either."""
    cls = g.registry[class_type]
    types = cls.INPUT_TYPES()
    widgets = sockets = text_rows = 0
    for section in ("required", "optional"):
        for name, spec in types.get(section, {}).items():
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            # forceInput scalars count as widgets too: frontend 1.27's Vue renderer gives them a widget row
            if isinstance(kind, (list, tuple)) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                widgets += 1 + (1 if opts.get("control_after_generate") or name in ("seed", "noise_seed") else 0)
                if kind == "STRING" and opts.get("multiline"):
                    text_rows += 3
            else:
                sockets += 1
    rows = max(sockets, len(getattr(cls, "RETURN_TYPES", ())))
    plotted = class_type.startswith("StepwiseKSampler")
    classic = TITLE + 22 * rows + 26 * (widgets + text_rows) + (130 if plotted else 0) + 16
    vue = 99 + 20 * rows + 38 * widgets + (124 if plotted else 0)
    return int(max(classic, vue) * 1.05)


class Layout:
    """Nodes placed in columns, each stacked top-down with a gap: nothing overlaps."""

    def __init__(self, g: GraphBuilder) -> None:
        self.g = g
        self.tops: dict[int, int] = {}

    def add(self, col: int, class_type: str, widgets: list, title: str | None = None, extra_height: int = 0,
            top: int | None = None) -> dict:
        y = self.tops.get(col, 0) if top is None else max(top, self.tops.get(col, 0))
        h = node_height(self.g, class_type) + extra_height
        node = self.g.node(class_type, widgets, pos=(col * COLUMN, y + TITLE), title=title, size=(340, h - TITLE))
        self.tops[col] = y + h + ROW_GAP
        return node

    def align(self, *cols: int) -> int:
        """Start the next nodes of these columns at the same height (a new row)."""
        top = max(self.tops.get(c, 0) for c in cols)
        for c in cols:
            self.tops[c] = top
        return top


def _base(lay: Layout, positive: str, width: int = 512, height: int = 512, ckpt_name: str = CKPT):
    g = lay.g
    ckpt = lay.add(0, "CheckpointLoaderSimple", [ckpt_name], "Load Checkpoint")
    pos = lay.add(1, "CLIPTextEncode", [positive], "positive")
    neg = lay.add(1, "CLIPTextEncode", [NEG], "negative")
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    latent = lay.add(1, "EmptyLatentImage", [width, height, 1])
    return ckpt, pos, neg, latent


def _decode_save(lay: Layout, ckpt, sampler, prefix: str, col: int, title: str | None = None, top: int | None = None):
    g = lay.g
    dec = lay.add(col, "VAEDecode", [], top=top)
    g.link(sampler, 0, dec, "samples")
    g.link(ckpt, 2, dec, "vae")
    save = lay.add(col, "SaveImage", [prefix], title=title, extra_height=260)
    g.link(dec, 0, save, "images")
    return save


def _wire(g: GraphBuilder, node, model_src, pos_c, neg_c, latent, model_slot: int = 0):
    g.link(model_src, model_slot, node, "model")
    g.link(pos_c, 0, node, "positive")
    g.link(neg_c, 0, node, "negative")
    g.link(latent, 0, node, "latent_image")
    return node


def txt2img() -> dict:
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt, pos, neg, latent = _base(lay, "red circle on white background")
    ks = _wire(g, lay.add(2, "StepwiseKSampler", [7, "fixed", 20, 7.0, "dpmpp_2m", "karras", 1.0],
                          "KSampler (Stepwise)"), ckpt, pos, neg, latent)
    _decode_save(lay, ckpt, ks, "txt2img", 3)
    return g.to_json()


def _adv(sampler: str, seed: int, start: int, end: int, leftover: str, add_noise: str = "enable",
         mode: str | None = None, scheduler: str = "normal", steps: int = 20) -> list:
    values = [add_noise, seed, "fixed", steps, 7.0, sampler, scheduler, start, end, leftover]
    return values + ([mode] if mode else [])


def split() -> dict:
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt, pos, neg, latent = _base(lay, "yellow star on sky background")
    single = _wire(g, lay.add(2, "StepwiseKSampler", [1234, "fixed", 20, 7.0, "euler", "normal", 1.0], "single run"),
                   ckpt, pos, neg, latent)
    _decode_save(lay, ckpt, single, "split/single", 3)
    row = lay.align(2, 3, 4)
    first = _wire(g, lay.add(2, "StepwiseKSamplerAdvanced", _adv("euler", 1234, 0, 10, "enable"),
                             "first half (0-10, leftover noise)"), ckpt, pos, neg, latent)
    second = _wire(g, lay.add(3, "StepwiseKSamplerAdvanced", _adv("euler", 0, 10, 10000, "disable", "disable"),
                              "second half (10-20, no new noise)", top=row), ckpt, pos, neg, first)
    _decode_save(lay, ckpt, second, "split/two_nodes", 4, top=row)
    return g.to_json()


def seamless_split(sampler: str = "dpmpp_2m_sde", at: int = 10) -> dict:
    """One run of a stochastic multistep sampler, split at step ``at`` in ComfyUI's way and seamlessly."""
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt, pos, neg, latent = _base(lay, "purple diamond on grey background")
    single = _wire(g, lay.add(2, "StepwiseKSampler", [77, "fixed", 20, 7.0, sampler, "karras", 1.0],
                              f"single run ({sampler}, 20 steps)"), ckpt, pos, neg, latent)
    _decode_save(lay, ckpt, single, "seamless/single", 3, "single run")
    for mode, label in (("comfy", "comfy split"), ("seamless", "seamless split")):
        row = lay.align(2, 3, 4)
        a = _wire(g, lay.add(2, "StepwiseKSamplerAdvanced",
                             _adv(sampler, 77, 0, at, "enable", mode=mode, scheduler="karras"),
                             f"{label}: steps 0-{at}", top=row), ckpt, pos, neg, latent)
        b = _wire(g, lay.add(3, "StepwiseKSamplerAdvanced",
                             _adv(sampler, 0, at, 10000, "disable", "disable", mode=mode, scheduler="karras"),
                             f"{label}: steps {at}-20", top=row), ckpt, pos, neg, a)
        _decode_save(lay, ckpt, b, f"seamless/{mode}_split", 4, label, top=row)
    return g.to_json()


def prompt_switch(switch_at: int = 8) -> dict:
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt, pos_a, neg, latent = _base(lay, "red circle")
    pos_b = lay.add(1, "CLIPTextEncode", ["blue square"], "positive after the switch")
    g.link(ckpt, 1, pos_b, "clip")
    step = lay.add(0, "PrimitiveInt", [switch_at, "fixed"], "switch step")
    a = _wire(g, lay.add(2, "StepwiseKSamplerAdvanced", _adv("euler", 2, 0, switch_at, "enable"),
                         "prompt A: steps 0-k"), ckpt, pos_a, neg, latent)
    g.link(step, 0, a, "end_at_step")
    b = _wire(g, lay.add(3, "StepwiseKSamplerAdvanced", _adv("euler", 0, switch_at, 10000, "disable", "disable"),
                         "prompt B: steps k-20"), ckpt, pos_b, neg, a)
    g.link(step, 0, b, "start_at_step")
    _decode_save(lay, ckpt, b, "prompt_switch/switch", 4)
    return g.to_json()


def img2img() -> dict:
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt = lay.add(0, "CheckpointLoaderSimple", [CKPT], "Load Checkpoint")
    load = lay.add(0, "LoadImage", ["demo_input.png", "image"], "input picture", extra_height=300)
    pos = lay.add(1, "CLIPTextEncode", ["orange star, black background"], "positive")
    neg = lay.add(1, "CLIPTextEncode", [NEG], "negative")
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    enc = lay.add(1, "VAEEncode", [])
    g.link(load, 0, enc, "pixels")
    g.link(ckpt, 2, enc, "vae")
    adv = _wire(g, lay.add(2, "StepwiseKSamplerAdvanced", _adv("euler", 5, 8, 10000, "disable"),
                           "img2img: add noise for step 8, sample 8-20"), ckpt, pos, neg, enc)
    _decode_save(lay, ckpt, adv, "img2img/result", 3)
    return g.to_json()


def _style_lora(lay: Layout, ckpt: dict, title: str) -> dict:
    """The demo's pixel-art style LoRA on the checkpoint's model and clip, in the first column."""
    lora = lay.add(0, "LoraLoader", ["pixel-art-style.safetensors", 1.0, 1.0], title)
    lay.g.link(ckpt, 0, lora, "model")
    lay.g.link(ckpt, 1, lora, "clip")
    return lora


def style_switch(switch_at: int = 10) -> dict:
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt, pos, neg, latent = _base(lay, "red apple on a table")
    lora = _style_lora(lay, ckpt, "style (LoRA)")
    ks = "StepwiseKSamplerAdvanced"
    base = _wire(g, lay.add(2, ks, _adv("euler", 99999, 0, 10000, "disable"), "no style"), ckpt, pos, neg, latent)
    _decode_save(lay, ckpt, base, "style/no_style", 3)
    row = lay.align(2, 3, 4)
    styled = _wire(g, lay.add(2, ks, _adv("euler", 99999, 0, 10000, "disable"), "style on all steps", top=row), lora,
                   pos, neg, latent)
    _decode_save(lay, ckpt, styled, "style/all_steps", 3, top=row)
    row = lay.align(2, 3, 4)
    first = _wire(g, lay.add(2, ks, _adv("euler", 99999, 0, switch_at, "enable"), f"no style: steps 0-{switch_at}",
                             top=row), ckpt, pos, neg, latent)
    second = _wire(g, lay.add(3, ks, _adv("euler", 0, switch_at, 10000, "disable", "disable"),
                              f"style: steps {switch_at}-20", top=row), lora, pos, neg, first)
    _decode_save(lay, ckpt, second, "style/switched_halfway", 4, top=row)
    return g.to_json()


def per_item_noise(seed: int = 300) -> dict:
    """A batch of 4 with per-item noise, next to its item 3 re-made alone (seed + 3, batch 1)."""
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt, pos, neg, latent = _base(lay, "green triangle on sky background")
    g.nodes[-1]["widgets_values"] = [512, 512, 4]
    one = lay.add(1, "EmptyLatentImage", [512, 512, 1], "one image")
    noise4 = lay.add(0, "StepwiseNoise", [seed, "fixed", "per_item", 0, 0.0], "noise: per item, seed 300")
    noise1 = lay.add(0, "StepwiseNoise", [seed + 3, "fixed", "per_item", 0, 0.0], "noise: per item, seed 303")
    batch = _wire(g, lay.add(2, "StepwiseKSampler", [0, "fixed", 20, 7.0, "euler_ancestral", "karras", 1.0],
                             "batch of 4 (items: seeds 300..303)"), ckpt, pos, neg, latent)
    g.link(noise4, 0, batch, "noise")
    _decode_save(lay, ckpt, batch, "per_item/batch", 3, "batch of 4")
    row = lay.align(2, 3)
    alone = _wire(g, lay.add(2, "StepwiseKSampler", [0, "fixed", 20, 7.0, "euler_ancestral", "karras", 1.0],
                             "item 3 alone (seed 303)", top=row), ckpt, pos, neg, one)
    g.link(noise1, 0, alone, "noise")
    _decode_save(lay, ckpt, alone, "per_item/item3_alone", 3, "item 3 alone", top=row)
    return g.to_json()


def variation(strength: float = 0.5) -> dict:
    """A variation of an image: the seed's noise blended with another seed's (slerp at ``strength``)."""
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt, pos, neg, latent = _base(lay, "orange ring on white background")
    noise = lay.add(0, "StepwiseNoise", [11, "fixed", "comfy", 12, strength], "noise with a variation")
    ks = _wire(g, lay.add(2, "StepwiseKSampler", [0, "fixed", 20, 7.0, "dpmpp_2m", "karras", 1.0],
                          "KSampler (Stepwise)"), ckpt, pos, neg, latent)
    g.link(noise, 0, ks, "noise")
    _decode_save(lay, ckpt, ks, "variation/strength", 3)
    return g.to_json()


def schedules(schedule: str = "ays_sd1") -> dict:
    """A schedule core's combo does not list (Align Your Steps) and a sampler with its own node, through the
    sampler node's sigmas and sampler sockets."""
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt, pos, neg, latent = _base(lay, "blue star on white background", 256, 256, TINY)
    sched = lay.add(0, "StepwiseSchedule", [schedule, 10, 1.0], "schedule: Align Your Steps (SD1), 10 steps")
    g.link(ckpt, 0, sched, "model")
    sampler = lay.add(0, "StepwiseSampler", ["dpmpp_2m"], "sampler: dpmpp_2m")
    ks = _wire(g, lay.add(2, "StepwiseKSampler", [5, "fixed", 10, 5.0, "euler", "karras", 1.0],
                          "KSampler (Stepwise): sigmas and sampler from the sockets"), ckpt, pos, neg, latent)
    g.link(sched, 0, ks, "sigmas")
    g.link(sampler, 0, ks, "sampler")
    _decode_save(lay, ckpt, ks, "schedules/ays_sd1", 3)
    return g.to_json()


def xy_plot() -> dict:
    """XY Plot (Stepwise) on KSampler Efficient (Stepwise): samplers across, a colour search-and-replace down."""
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt = lay.add(0, "CheckpointLoaderSimple", [TINY], "Load Checkpoint")
    text = lay.add(0, "PrimitiveString", ["red circle on white background"], "positive text", extra_height=40)
    pos = lay.add(1, "CLIPTextEncode", ["red circle on white background"], "positive")
    neg = lay.add(1, "CLIPTextEncode", [NEG], "negative")
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    g.link(text, 0, pos, "text")
    latent = lay.add(1, "EmptyLatentImage", [256, 256, 1])
    plot = lay.add(1, "StepwiseXYPlot", ["sampler_name", "euler, dpmpp_2m, uni_pc", "positive S/R", "red, blue",
                                         "none", ""], "XY Plot (Stepwise)")
    g.link(ckpt, 1, plot, "clip")
    g.link(text, 0, plot, "positive_text")
    eff = _wire(g, lay.add(2, "StepwiseKSamplerEfficient", [3, "fixed", 10, 5.0, "euler", "karras", 1.0, "none", "true"],
                           "KSampler Efficient (Stepwise): the grid", extra_height=420), ckpt, pos, neg, latent)
    g.link(ckpt, 2, eff, "optional_vae")
    g.link(plot, 0, eff, "script")
    save = lay.add(3, "SaveImage", ["xy_plot/grid"], "grid", extra_height=420)
    g.link(eff, 5, save, "images")
    return g.to_json()


def fitted_schedule(steps: int = 6) -> dict:
    """On stepwise-tiny: the same prompt at 6 steps with karras, with a schedule fitted to the model (Fit Schedule) and
    with a fitted solver (Fit Solver: steps and coefficients), next to a 50-step reference."""
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt, pos, neg, latent = _base(lay, "red star on white background", 256, 256, TINY)
    # the fits draw their calibration batch at 128x128: a fit is about the model, prompt and sampler, not the size,
    # and a quarter of the pixels makes both fits ~40 % faster (the demo's 30 s); the samplers still run at 256x256
    calibration = lay.add(1, "EmptyLatentImage", [128, 128, 1], "calibration size (the fits' draws)")
    fit = lay.add(0, "StepwiseFitSchedule", [5.0, steps, "uni_pc", 0, 80], f"fitted schedule ({steps} steps, uni_pc)",
                  extra_height=100)  # the Vue renderer draws the fit nodes taller than LiteGraph's estimate
    solver = lay.add(0, "StepwiseFitSolver", [5.0, steps, "dpmpp_2m", 0, 400],
                     f"fitted solver ({steps} calls, base dpmpp_2m)")
    for node in (fit, solver):
        for name, src, slot in (("model", ckpt, 0), ("positive", pos, 0), ("negative", neg, 0),
                                ("latent_image", calibration, 0)):
            g.link(src, slot, node, name)
    ref = _wire(g, lay.add(2, "StepwiseKSampler", [9, "fixed", 50, 5.0, "dpmpp_2m", "karras", 1.0],
                           "reference: 50 steps"), ckpt, pos, neg, latent)
    _decode_save(lay, ckpt, ref, "fitted/reference_50", 3, "50 steps")
    row = lay.align(2, 3)
    karras = _wire(g, lay.add(2, "StepwiseKSampler", [9, "fixed", steps, 5.0, "dpmpp_2m", "karras", 1.0],
                              f"karras, {steps} steps", top=row), ckpt, pos, neg, latent)
    _decode_save(lay, ckpt, karras, "fitted/karras_6", 3, f"karras, {steps} steps", top=row)
    row = lay.align(2, 3)
    fitted = _wire(g, lay.add(2, "StepwiseKSampler", [9, "fixed", steps, 5.0, "uni_pc", "karras", 1.0],
                              f"fitted schedule, {steps} steps", top=row), ckpt, pos, neg, latent)
    g.link(fit, 0, fitted, "sigmas")
    _decode_save(lay, ckpt, fitted, "fitted/fitted_schedule_6", 3, f"fitted schedule, {steps} steps", top=row)
    row = lay.align(2, 3)
    solved = _wire(g, lay.add(2, "StepwiseKSampler", [9, "fixed", steps, 5.0, "dpmpp_2m", "karras", 1.0],
                              f"fitted solver, {steps} steps", top=row), ckpt, pos, neg, latent)
    g.link(solver, 0, solved, "sampler")
    g.link(solver, 1, solved, "sigmas")
    _decode_save(lay, ckpt, solved, "fitted/fitted_solver_6", 3, f"fitted solver, {steps} steps", top=row)
    return g.to_json()


def stages(boundary: float = 1.5) -> dict:
    """Stages (Stepwise): one run handed from the base model to a second "expert" (the style LoRA) where the noise
    level drops below ``boundary``, with its own prompt and cfg, next to the base model alone."""
    g = GraphBuilder(node_registry())
    lay = Layout(g)
    ckpt, pos, neg, latent = _base(lay, "orange star on sky background")
    lora = _style_lora(lay, ckpt, "second expert (style LoRA)")
    pos_b = lay.add(1, "CLIPTextEncode", ["orange star on sky background, pixel art"], "positive for stage 2")
    g.link(ckpt, 1, pos_b, "clip")
    base = _wire(g, lay.add(2, "StepwiseKSampler", [11, "fixed", 20, 6.0, "dpmpp_2m", "karras", 1.0],
                            "base model only"), ckpt, pos, neg, latent)
    _decode_save(lay, ckpt, base, "stages/base_only", 3, "base model only")
    row = lay.align(2, 3)
    staged = _wire(g, lay.add(2, "StepwiseStages",
                              [11, "fixed", 20, 6.0, "dpmpp_2m", "karras", 1.0, "sigma", boundary, 4.0, -1.0, -1.0,
                               -1.0, -1.0], f"Stages: base until sigma < {boundary}, then the expert", top=row,
                              extra_height=60),
                   ckpt, pos, neg, latent)
    g.link(lora, 0, staged, "model_2")
    g.link(pos_b, 0, staged, "positive_2")
    _decode_save(lay, ckpt, staged, "stages/two_experts", 3, "two stages", top=row)
    return g.to_json()


def subgraph() -> dict:
    """txt2img with the sampler and the decoder grouped in a subgraph (as current frontends save node groups), its seed
    promoted onto the subgraph node."""
    from ..standalone.uiformat import wrap_in_subgraph

    wf = txt2img()
    sampler = next(n for n in wf["nodes"] if n["type"] == "StepwiseKSampler")
    decoder = next(n for n in wf["nodes"] if n["type"] == "VAEDecode")
    out = wrap_in_subgraph(wf, {sampler["id"], decoder["id"]}, promote=((sampler["id"], "seed"),), instance_id=20,
                           title="sample and decode")
    instance = next(n for n in out["nodes"] if n["id"] == 20)
    instance.update(pos=list(sampler["pos"]), size=[340, 160], title="sample and decode (subgraph)",
                    widgets_values=[7])
    out["last_node_id"] = max(n["id"] for n in out["nodes"])
    return out


EXAMPLES = {"txt2img": txt2img, "split": split, "seamless_split": seamless_split, "prompt_switch": prompt_switch,
            "img2img": img2img, "style_switch": style_switch, "per_item_noise": per_item_noise, "variation": variation,
            "schedules": schedules, "xy_plot": xy_plot,
            "fitted_schedule": fitted_schedule, "stages": stages, "subgraph": subgraph}


THUMBNAIL = 320  # the longest side of an example's thumbnail (the templates dialog's NAME.jpg)


def example_image(name: str, work: Path):
    """Run example ``name`` as ``stepwise run`` does, in ``work``; its picture: the first image it saves, else the
    first one a node shows (the XY Plot's grid)."""
    from PIL import Image

    from ..standalone.cli import run_workflow_file

    results, ctx = run_workflow_file(HERE / f"{name}.json", work / "out", work / "input", quiet=True)
    saved = [p for p in ctx.written if p.parent.name != "temp" and "temp" not in p.parts]
    return Image.open(saved[0] if saved else ctx.written[0]).convert("RGB")


def thumbnails(names=None) -> list[Path]:
    """Write ``NAME.jpg`` beside every ``NAME.json``, made from the example's own output."""
    import tempfile

    written = []
    for name in names or EXAMPLES:
        with tempfile.TemporaryDirectory() as tmp:
            image = example_image(name, Path(tmp))
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        path = HERE / f"{name}.jpg"
        image.save(path, format="JPEG", quality=88)
        written.append(path)
    return written


def main(argv=None) -> None:
    import sys

    args = sys.argv[1:] if argv is None else argv
    for name, build in EXAMPLES.items():
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(build(), indent=1) + "\n")
        print(f"wrote {path}")
    if "--no-thumbnails" not in args:
        for path in thumbnails():
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
