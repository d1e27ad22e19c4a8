"""``stepwise import PNG|TXT OUT.json``: an AUTOMATIC1111 / Forge / Civitai recipe (a PNG's ``parameters`` chunk, or
the text itself) as a Stepwise workflow, with a report of what could not be carried over.

The graph: the checkpoint by name, the prompts (A1111's emphasis ``(word:1.2)`` kept as text), the size, a KSampler
(Stepwise) with the sampler and schedule mapped, cfg and denoise, and a Noise (Stepwise) in ``a1111_gpu`` mode (or
``a1111_cpu`` for files made with the CPU source) carrying the seed, the variation seed and strength, resize seed from
and the eta noise seed delta, so the noise is A1111's; a hires fix becomes the Efficient sampler's HiRes-Fix Script.
A1111's prompt editing ``[from:to:when]`` becomes a seamless split: two KSampler Advanced (Stepwise) with the prompt
switching at that step (``when`` below 1: a fraction of the steps).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..workflows.a1111 import A1111Settings, parse_parameters
from .registry import node_registry
from .uiformat import GraphBuilder

__all__ = ["import_parameters", "read_parameters", "EDIT"]

EDIT = re.compile(r"\[([^\[\]:]*):([^\[\]:]*):\s*([\d.]+)\s*\]")  # A1111's prompt editing [from:to:when]
COLUMN = 420


def read_parameters(path: str | Path) -> str:
    """The ``parameters`` text of a PNG (its chunk) or of a text file; a ValueError naming the file otherwise."""
    path = Path(path)
    if path.suffix.lower() in (".png", ".webp", ".jpg", ".jpeg"):
        from PIL import Image

        try:
            with Image.open(path) as img:
                info = dict(getattr(img, "text", {}) or {}) | {k: v for k, v in img.info.items() if isinstance(v, str)}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path.name}: cannot read ({exc})") from None
        text = info.get("parameters")
        if not text:
            raise ValueError(f"{path.name}: holds no 'parameters' text (not an AUTOMATIC1111/Forge/Civitai image)")
        return text
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _edit_split(prompt: str, steps: int) -> tuple[str, str, int] | None:
    """(prompt before, prompt after, switch step) for the first prompt-editing bracket, or None."""
    m = EDIT.search(prompt)
    if m is None:
        return None
    when = float(m.group(3))
    step = int(round(when * steps)) if when < 1 else int(when)
    step = max(0, min(steps, step))
    before = prompt[:m.start()] + m.group(1) + prompt[m.end():]
    after = prompt[:m.start()] + m.group(2) + prompt[m.end():]
    return EDIT.sub(lambda k: k.group(1), before), EDIT.sub(lambda k: k.group(2), after), step


def _wire(g, node, ckpt, positive, negative, noise) -> None:
    """A sampler node's model, prompts and noise."""
    g.link(ckpt, 0, node, "model")
    g.link(positive, 0, node, "positive")
    g.link(negative, 0, node, "negative")
    g.link(noise, 0, node, "noise")


def import_parameters(text: str) -> tuple[dict, list[str]]:
    """(the editor-format workflow, report lines) for an A1111 ``parameters`` text."""
    s: A1111Settings = parse_parameters(text)
    report = list(s.notes)
    g = GraphBuilder(node_registry())
    ckpt_name = (s.model or "model") + ".safetensors"
    ckpt = g.node("CheckpointLoaderSimple", [ckpt_name], pos=(0, 0), title="Load Checkpoint")
    report.append(f"model: {ckpt_name} (pick your copy of it; A1111's hash {s.model_hash or 'unknown'})")
    if re.search(r"\([^()]*:[\d.]+\)|\(\(|\[[^\]:]*\]", s.prompt):
        report.append("prompt: A1111's emphasis ((word), (word:1.2), [word]) is kept as text; ComfyUI's text encoder "
                      "weighs it differently, so the picture will not be identical")
    if s.loras:
        report.append("loras: " + ", ".join(f"<lora:{n}:{w:g}>" for n, w in s.loras) + " are kept in the prompt "
                      "text only; add LoraLoader nodes for them")
    split = _edit_split(s.prompt, s.steps)
    mode = "a1111_cpu" if s.rng.upper() == "CPU" else "a1111_gpu"
    if s.rng.upper() not in ("GPU", "NV", "CPU"):
        report.append(f"RNG: {s.rng!r} is not one Stepwise knows; the GPU/NV source instead")
    resize = s.seed_resize_from or (0, 0)
    noise = g.node("StepwiseNoise", [s.seed, "fixed", mode, s.variation_seed, s.variation_strength, "brownian", s.ensd,
                                     resize[0], resize[1]], pos=(0, 260), title="Noise (A1111)")
    neg = g.node("CLIPTextEncode", [s.negative_prompt], pos=(COLUMN, 260), title="negative")
    g.link(ckpt, 1, neg, "clip")
    latent = g.node("EmptyLatentImage", [s.width, s.height, 1], pos=(COLUMN, 520))
    if s.denoise is not None and not s.hires_upscale:
        report.append(f"Denoising strength {s.denoise:g}: an img2img recipe; the input picture is not in the file, "
                      f"so the workflow starts from noise (connect a LoadImage + VAEEncode to the sampler's latent)")
    if split is not None:
        before, after, step = split
        report.append(f"prompt editing: '{before}' for steps 0..{step}, then '{after}' (a seamless split of two "
                      f"KSampler Advanced nodes)")
        pos_a = g.node("CLIPTextEncode", [before], pos=(COLUMN, 0), title="positive (before the edit)")
        pos_b = g.node("CLIPTextEncode", [after], pos=(COLUMN, 130), title="positive (after the edit)")
        for p in (pos_a, pos_b):
            g.link(ckpt, 1, p, "clip")
        first = g.node("StepwiseKSamplerAdvanced", ["enable", s.seed, "fixed", s.steps, s.cfg, s.sampler_name,
                                                    s.scheduler, 0, step, "enable", "seamless"],
                       pos=(2 * COLUMN, 0), title=f"steps 0..{step}")
        second = g.node("StepwiseKSamplerAdvanced", ["disable", s.seed, "fixed", s.steps, s.cfg, s.sampler_name,
                                                     s.scheduler, step, 10000, "disable", "seamless"],
                        pos=(2 * COLUMN, 420), title=f"steps {step}..{s.steps}")
        for node, pos_c in ((first, pos_a), (second, pos_b)):
            _wire(g, node, ckpt, pos_c, neg, noise)
        g.link(latent, 0, first, "latent_image")
        g.link(first, 0, second, "latent_image")
        last = second
        if s.hires_upscale:
            report.append("hires fix: not combined with prompt editing here; the first pass only")
    else:
        pos = g.node("CLIPTextEncode", [s.prompt], pos=(COLUMN, 0), title="positive")
        g.link(ckpt, 1, pos, "clip")
        if s.hires_upscale:
            script = g.node("StepwiseHiResFixScript", [s.hires_upscale, "nearest-exact", s.hires_steps or s.steps,
                                                       s.denoise if s.denoise is not None else 0.5, -1],
                            pos=(COLUMN, 700), title="Hires fix")
            if not (s.hires_upscaler or "Latent").lower().startswith("latent"):
                report.append(f"Hires upscaler {s.hires_upscaler!r}: a pixel upscaler; the latent is upscaled instead")
            sampler = g.node("StepwiseKSamplerEfficient", [s.seed, "fixed", s.steps, s.cfg, s.sampler_name,
                                                           s.scheduler, 1.0, "auto", "true"],
                             pos=(2 * COLUMN, 0), title="KSampler Efficient (A1111 recipe)")
            g.link(script, 0, sampler, "script")
        else:
            denoise = s.denoise if s.denoise is not None else 1.0
            sampler = g.node("StepwiseKSampler", [s.seed, "fixed", s.steps, s.cfg, s.sampler_name, s.scheduler, 1.0],
                             pos=(2 * COLUMN, 0), title="KSampler (A1111 recipe)")
            if denoise < 1:
                report.append("denoise: kept at 1.0 (no input picture)")
        _wire(g, sampler, ckpt, pos, neg, noise)
        g.link(latent, 0, sampler, "latent_image")
        last = sampler
    dec = g.node("VAEDecode", [], pos=(3 * COLUMN, 0))
    g.link(last, 3 if last["type"] == "StepwiseKSamplerEfficient" else 0, dec, "samples")
    g.link(ckpt, 2, dec, "vae")
    save = g.node("SaveImage", ["a1111_import"], pos=(3 * COLUMN, 150))
    g.link(dec, 0, save, "images")
    report.append(f"noise: {mode} with seed {s.seed}" + (f", ENSD {s.ensd}" if s.ensd else "") +
                  (f", variation seed {s.variation_seed} at {s.variation_strength:g}" if s.variation_strength else ""))
    for key, value in s.extra.items():
        if key not in ("Version", "Lora hashes", "Noise"):
            report.append(f"{key}: {value[:80]} (not carried over)")
    wf = g.to_json()
    wf["extra"]["stepwise_a1111"] = {"parameters": text, "report": report}
    return wf, report


def write_import(src: str | Path, dst: str | Path) -> list[str]:
    from .images import write_bytes_atomic

    wf, report = import_parameters(read_parameters(src))
    write_bytes_atomic(Path(dst), (json.dumps(wf, indent=1) + "\n").encode("utf-8"))
    return report
