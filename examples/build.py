"""Regenerate the example workflows (editor/UI format): ``python -m stepwise_sampler.examples.build``.

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
NEG = "text, watermark"


def _base(g: GraphBuilder, positive: str, x: int = 0, width: int = 512, height: int = 512):
    ckpt = g.node("CheckpointLoaderSimple", [CKPT], pos=(x, 100), title="Load Checkpoint")
    pos = g.node("CLIPTextEncode", [positive], pos=(x + 380, 40), title="positive")
    neg = g.node("CLIPTextEncode", [NEG], pos=(x + 380, 280), title="negative")
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    latent = g.node("EmptyLatentImage", [width, height, 1], pos=(x + 380, 520))
    return ckpt, pos, neg, latent


def _decode_save(g: GraphBuilder, ckpt, sampler, prefix: str, pos, title: str | None = None):
    dec = g.node("VAEDecode", [], pos=pos)
    g.link(sampler, 0, dec, "samples")
    g.link(ckpt, 2, dec, "vae")
    save = g.node("SaveImage", [prefix], pos=(pos[0] + 250, pos[1]), title=title, size=(320, 340))
    g.link(dec, 0, save, "images")
    return save


def _sampler(g: GraphBuilder, kind: str, widgets: list, ckpt_or_model, pos_c, neg_c, latent, pos, title=None,
             model_slot: int = 0):
    node = g.node(kind, widgets, pos=pos, title=title, size=(320, 320))
    g.link(ckpt_or_model, model_slot, node, "model")
    g.link(pos_c, 0, node, "positive")
    g.link(neg_c, 0, node, "negative")
    g.link(latent, 0, node, "latent_image")
    return node


def _continue(g: GraphBuilder, model_src, pos_c, neg_c, previous, widgets: list, pos, title: str):
    """A KSampler Advanced node that continues ``previous``'s latent (a split, a switch)."""
    node = g.node("StepwiseKSamplerAdvanced", widgets, pos=pos, title=title, size=(320, 320))
    g.link(model_src, 0, node, "model")
    g.link(pos_c, 0, node, "positive")
    g.link(neg_c, 0, node, "negative")
    g.link(previous, 0, node, "latent_image")
    return node


def txt2img() -> dict:
    g = GraphBuilder(node_registry())
    ckpt, pos, neg, latent = _base(g, "red circle on white background")
    ks = _sampler(g, "StepwiseKSampler", [7, "fixed", 20, 7.0, "dpmpp_2m", "karras", 1.0], ckpt, pos, neg, latent,
                  (800, 100), "KSampler (Stepwise)")
    _decode_save(g, ckpt, ks, "txt2img", (1160, 100))
    return g.to_json()


def split() -> dict:
    g = GraphBuilder(node_registry())
    ckpt, pos, neg, latent = _base(g, "yellow star on sky background")
    single = _sampler(g, "StepwiseKSampler", [1234, "fixed", 20, 7.0, "euler", "normal", 1.0], ckpt, pos, neg,
                      latent, (800, 0), "single run")
    _decode_save(g, ckpt, single, "split/single", (1160, 0))
    first = _sampler(g, "StepwiseKSamplerAdvanced",
                     ["enable", 1234, "fixed", 20, 7.0, "euler", "normal", 0, 10, "enable"], ckpt, pos, neg, latent,
                     (800, 380), "first half (0-10, leftover noise)")
    second = _continue(g, ckpt, pos, neg, first, ["disable", 0, "fixed", 20, 7.0, "euler", "normal", 10, 10000,
                                                  "disable"], (1160, 380), "second half (10-20, no new noise)")
    _decode_save(g, ckpt, second, "split/two_nodes", (1520, 380))
    return g.to_json()


def prompt_switch(switch_at: int = 8) -> dict:
    g = GraphBuilder(node_registry())
    ckpt, pos_a, neg, latent = _base(g, "red circle")
    pos_b = g.node("CLIPTextEncode", ["blue square"], pos=(380, 760), title="positive after the switch")
    g.link(ckpt, 1, pos_b, "clip")
    step = g.node("PrimitiveInt", [switch_at, "fixed"], pos=(380, 980), title="switch step")
    a = _sampler(g, "StepwiseKSamplerAdvanced", ["enable", 2, "fixed", 20, 7.0, "euler", "normal", 0, switch_at,
                                                 "enable"], ckpt, pos_a, neg, latent, (800, 100), "prompt A: steps 0-k")
    g.link(step, 0, a, "end_at_step")
    b = _continue(g, ckpt, pos_b, neg, a, ["disable", 0, "fixed", 20, 7.0, "euler", "normal", switch_at, 10000,
                                           "disable"], (1160, 100), "prompt B: steps k-20")
    g.link(step, 0, b, "start_at_step")
    _decode_save(g, ckpt, b, "prompt_switch/switch", (1520, 100))
    return g.to_json()


def img2img() -> dict:
    g = GraphBuilder(node_registry())
    ckpt = g.node("CheckpointLoaderSimple", [CKPT], pos=(0, 100), title="Load Checkpoint")
    pos = g.node("CLIPTextEncode", ["orange star, black background"], pos=(380, 40), title="positive")
    neg = g.node("CLIPTextEncode", [NEG], pos=(380, 280), title="negative")
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    load = g.node("LoadImage", ["demo_input.png", "image"], pos=(0, 420), title="input picture", size=(320, 360))
    enc = g.node("VAEEncode", [], pos=(380, 520))
    g.link(load, 0, enc, "pixels")
    g.link(ckpt, 2, enc, "vae")
    adv = _sampler(g, "StepwiseKSamplerAdvanced", ["enable", 5, "fixed", 20, 7.0, "euler", "normal", 8, 10000,
                                                   "disable"], ckpt, pos, neg, enc, (800, 100),
                   "img2img: add noise for step 8, sample 8-20")
    _decode_save(g, ckpt, adv, "img2img/result", (1160, 100))
    return g.to_json()


def style_switch(switch_at: int = 10) -> dict:
    g = GraphBuilder(node_registry())
    ckpt, pos, neg, latent = _base(g, "red apple on a table")
    lora = g.node("LoraLoader", ["pixel-art-style.safetensors", 1.0, 1.0], pos=(0, 420), title="style (LoRA)")
    g.link(ckpt, 0, lora, "model")
    g.link(ckpt, 1, lora, "clip")
    ks = "StepwiseKSamplerAdvanced"
    base = _sampler(g, ks, ["enable", 99999, "fixed", 20, 7.0, "euler", "normal", 0, 10000, "disable"], ckpt, pos,
                    neg, latent, (800, 0), "no style")
    _decode_save(g, ckpt, base, "style/no_style", (1160, 0))
    styled = _sampler(g, ks, ["enable", 99999, "fixed", 20, 7.0, "euler", "normal", 0, 10000, "disable"], lora, pos,
                      neg, latent, (800, 380), "style on all steps")
    _decode_save(g, ckpt, styled, "style/all_steps", (1160, 380))
    first = _sampler(g, ks, ["enable", 99999, "fixed", 20, 7.0, "euler", "normal", 0, switch_at, "enable"], ckpt,
                     pos, neg, latent, (800, 760), f"no style: steps 0-{switch_at}")
    second = _continue(g, lora, pos, neg, first, ["disable", 0, "fixed", 20, 7.0, "euler", "normal", switch_at, 10000,
                                                 "disable"], (1160, 760), f"style: steps {switch_at}-20")
    _decode_save(g, ckpt, second, "style/switched_halfway", (1520, 760))
    return g.to_json()


EXAMPLES = {"txt2img": txt2img, "split": split, "prompt_switch": prompt_switch, "img2img": img2img,
            "style_switch": style_switch}


def main() -> None:
    for name, build in EXAMPLES.items():
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(build(), indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
