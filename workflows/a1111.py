"""AUTOMATIC1111 / Forge / Civitai ``parameters``: the text recipe in their PNGs, written from a Stepwise recipe and
read back into settings (and a workflow, ``standalone/a1111_import.py``).

The format: the prompt; a line ``Negative prompt: ...``; a last line of ``Key: value`` pairs separated by commas,
values holding commas in double quotes: ``Steps``, ``Sampler``, ``Schedule type``, ``CFG scale``, ``Seed``, ``Size``,
``Model hash``, ``Model``, ``Denoising strength``, ``Hires upscale``/``Hires steps``/``Hires upscaler``, variation
``Variation seed``/``Variation seed strength``, ``Seed resize from``, ``ENSD``, ``RNG``, ``Lora hashes``,
``Version``. Older files put the schedule in the sampler's name (``DPM++ 2M Karras``).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SAMPLER_NAMES", "SCHEDULE_NAMES", "A1111Settings", "parse_parameters", "format_parameters",
           "short_hash", "settings_from_recipe"]

#: our sampler -> A1111's name (the _gpu twins share their name: the same method)
SAMPLER_NAMES = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive", "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE", "dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun",
    "dpmpp_2m_sde_heun_gpu": "DPM++ 2M SDE Heun", "dpmpp_3m_sde": "DPM++ 3M SDE", "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "ddim": "DDIM", "uni_pc": "UniPC", "lcm": "LCM", "ipndm": "IPNDM", "ipndm_v": "IPNDM_V", "deis": "DEIS",
    "ddpm": "DDPM", "heunpp2": "Heun PP2", "restart": "Restart", "euler_cfg_pp": "Euler CFG++",
    "euler_ancestral_cfg_pp": "Euler a CFG++", "dpmpp_2m_cfg_pp": "DPM++ 2M CFG++",
}
#: our scheduler -> A1111's "Schedule type"
SCHEDULE_NAMES = {"karras": "Karras", "exponential": "Exponential", "sgm_uniform": "SGM Uniform", "simple": "Simple",
                  "normal": "Normal", "ddim_uniform": "DDIM", "beta": "Beta", "kl_optimal": "KL Optimal",
                  "ays_sd1": "Align Your Steps", "polyexponential": "Polyexponential"}
_SAMPLER_BACK = {v.lower(): k for k, v in reversed(list(SAMPLER_NAMES.items()))}
_SCHEDULE_BACK = {v.lower(): k for k, v in SCHEDULE_NAMES.items()} | {"automatic": "normal", "uniform": "normal"}
_PARAM = re.compile(r'\s*([\w][\w \-/+.()]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


@dataclass
class A1111Settings:
    """What a ``parameters`` text says, in our names where they map (``notes``: what did not)."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 20
    sampler_name: str = "euler"
    scheduler: str = "normal"
    cfg: float = 7.0
    seed: int = 0
    width: int = 512
    height: int = 512
    model: str | None = None
    model_hash: str | None = None
    denoise: float | None = None
    hires_upscale: float | None = None
    hires_steps: int | None = None
    hires_upscaler: str | None = None
    variation_seed: int = 0
    variation_strength: float = 0.0
    seed_resize_from: tuple[int, int] | None = None  # pixels (w, h)
    ensd: int = 0
    rng: str = "GPU"
    loras: list[tuple[str, float]] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def short_hash(path: str | Path) -> str:
    """A1111's ``Model hash``: the first 10 hex digits of the file's SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:10]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r'\\(.)', r"\1", value[1:-1])
    return value


def _quote(value: Any) -> str:
    text = str(value)
    if "," in text or ":" in text or '"' in text or "\n" in text:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def parse_parameters(text: str) -> A1111Settings:
    """Settings from a ``parameters`` text; a ValueError naming what is missing when it is not one."""
    if not isinstance(text, str) or "Steps:" not in text:
        raise ValueError("parameters: not an AUTOMATIC1111 recipe (no 'Steps:' line)")
    lines = text.strip().split("\n")
    params_line = lines[-1]
    body = lines[:-1]
    s = A1111Settings()
    prompt, negative, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    s.prompt, s.negative_prompt = "\n".join(prompt).strip(), "\n".join(negative).strip()
    values = {k.strip(): _unquote(v) for k, v in _PARAM.findall(params_line)}
    for key in ("Steps", "Seed", "Size"):
        if key not in values:
            raise ValueError(f"parameters: no {key!r} in the settings line")
    try:
        s.steps = int(values.pop("Steps"))
        s.seed = int(values.pop("Seed"))
        w, h = values.pop("Size").lower().split("x")
        s.width, s.height = int(w), int(h)
        s.cfg = float(values.pop("CFG scale", 7.0))
    except ValueError as exc:
        raise ValueError(f"parameters: a number could not be read ({exc})") from None
    sampler = values.pop("Sampler", "Euler")
    schedule = values.pop("Schedule type", None)
    if schedule is None:  # older files: "DPM++ 2M Karras"
        for suffix in (" Karras", " Exponential", " SGM Uniform"):
            if sampler.endswith(suffix):
                sampler, schedule = sampler[: -len(suffix)], suffix.strip()
    name = _SAMPLER_BACK.get(sampler.lower())
    if name is None:
        s.notes.append(f"Sampler: {sampler!r} has no Stepwise equivalent; euler instead")
        name = "euler"
    s.sampler_name = name
    if schedule is not None:
        sched = _SCHEDULE_BACK.get(schedule.lower())
        if sched is None:
            s.notes.append(f"Schedule type: {schedule!r} has no Stepwise equivalent; normal instead")
        s.scheduler = sched or "normal"
    s.model = values.pop("Model", None)
    s.model_hash = values.pop("Model hash", None)
    if "Denoising strength" in values:
        s.denoise = float(values.pop("Denoising strength"))
    if "Hires upscale" in values:
        s.hires_upscale = float(values.pop("Hires upscale"))
        s.hires_steps = int(values.pop("Hires steps", 0)) or None
        s.hires_upscaler = values.pop("Hires upscaler", None)
    if "Variation seed" in values:
        s.variation_seed = int(values.pop("Variation seed"))
        s.variation_strength = float(values.pop("Variation seed strength", 0.0))
    if "Seed resize from" in values:
        w, h = values.pop("Seed resize from").lower().split("x")
        if int(w) > 0 and int(h) > 0:
            s.seed_resize_from = (int(w), int(h))
    if "ENSD" in values:
        s.ensd = int(values.pop("ENSD"))
    s.rng = values.pop("RNG", "GPU")
    hashes = values.pop("Lora hashes", "")
    s.loras = [(m.group(1), float(m.group(2))) for m in re.finditer(r"<lora:([^:>]+):([-\d.]+)>", s.prompt)]
    if hashes:
        s.extra["Lora hashes"] = hashes
    s.extra.update(values)
    return s


def format_parameters(s: A1111Settings, version: str) -> str:
    """The ``parameters`` text of settings (A1111's key order)."""
    prompt = s.prompt + "".join(f" <lora:{n}:{w:g}>" for n, w in s.loras
                                if f"<lora:{n}:" not in s.prompt)
    pairs: list[tuple[str, Any]] = [("Steps", s.steps), ("Sampler", SAMPLER_NAMES.get(s.sampler_name, s.sampler_name))]
    if s.scheduler:
        pairs.append(("Schedule type", SCHEDULE_NAMES.get(s.scheduler, s.scheduler)))
    pairs += [("CFG scale", f"{s.cfg:g}"), ("Seed", s.seed), ("Size", f"{s.width}x{s.height}")]
    if s.model_hash:
        pairs.append(("Model hash", s.model_hash))
    if s.model:
        pairs.append(("Model", s.model))
    if s.variation_strength:
        pairs += [("Variation seed", s.variation_seed), ("Variation seed strength", f"{s.variation_strength:g}")]
    if s.seed_resize_from:
        pairs.append(("Seed resize from", f"{s.seed_resize_from[0]}x{s.seed_resize_from[1]}"))
    if s.denoise is not None:
        pairs.append(("Denoising strength", f"{s.denoise:g}"))
    if s.hires_upscale:
        pairs += [("Hires upscale", f"{s.hires_upscale:g}"), ("Hires steps", s.hires_steps or s.steps)]
        if s.hires_upscaler:
            pairs.append(("Hires upscaler", s.hires_upscaler))
    if s.ensd:
        pairs.append(("ENSD", s.ensd))
    if s.rng and s.rng != "GPU":
        pairs.append(("RNG", s.rng))
    pairs += list(s.extra.items())
    pairs.append(("Version", version))
    line = ", ".join(f"{k}: {_quote(v)}" for k, v in pairs)
    negative = f"\nNegative prompt: {s.negative_prompt}" if s.negative_prompt else ""
    return f"{prompt}{negative}\n{line}"


def settings_from_recipe(recipe_doc: dict, prompt: dict | None, size: tuple[int, int] | None) -> A1111Settings | None:
    """The A1111 description of a saved image from its Stepwise recipe: the first sampler (the one that made the
    picture from noise) as the main settings; a later one that refined it at a larger size as Hires settings; the
    texts from the encoders feeding the first sampler. None when no sampler ran."""
    samplers = [r for r in recipe_doc.get("samplers", []) if r.get("sampled")]
    if not samplers:
        return None
    first = samplers[0]
    s = A1111Settings()
    s.steps = int(first.get("steps") or 20)
    s.sampler_name = str(first.get("sampler", "euler")).removesuffix(" (ComfyUI's own)")
    s.scheduler = first.get("scheduler") if first.get("scheduler") != "sigmas socket" else ""
    s.cfg = float(first.get("cfg", 7.0))
    noise = first.get("noise") or {}
    s.seed = int(first.get("seed") or 0)
    if float(noise.get("variation_strength") or 0) > 0:
        s.variation_seed, s.variation_strength = int(noise["variation_seed"]), float(noise["variation_strength"])
    if noise.get("eta_noise_seed_delta"):
        s.ensd = int(noise["eta_noise_seed_delta"])
    mode = noise.get("batch_mode", "comfy")
    s.rng = {"a1111_gpu": "NV", "a1111_cpu": "CPU"}.get(mode, "GPU")
    if mode not in ("a1111_gpu", "a1111_cpu"):
        s.extra["Noise"] = f"ComfyUI ({mode})"  # not A1111's noise: the seed alone does not re-make it there
    denoise = first.get("denoise")
    if isinstance(denoise, (int, float)) and denoise < 1:
        s.denoise = float(denoise)
    shape = first.get("latent_shape")
    if isinstance(shape, list) and len(shape) >= 4:
        s.width, s.height = int(shape[-1]) * 8, int(shape[-2]) * 8
    elif size:
        s.width, s.height = size
    models = first.get("models") or []
    for m in models:
        if m.get("ckpt_name") and not s.model:
            s.model = Path(str(m["ckpt_name"])).stem
        if m.get("lora_name") and m.get("strength_model"):
            s.loras.append((Path(str(m["lora_name"])).stem, float(m["strength_model"])))
    if prompt is not None and first.get("node_id") in prompt:
        inputs = prompt[first["node_id"]].get("inputs", {})
        s.prompt = _text_of(prompt, inputs.get("positive")) or ""
        s.negative_prompt = _text_of(prompt, inputs.get("negative")) or ""
    if len(samplers) > 1:
        last = samplers[-1]
        d, shape2 = last.get("denoise"), last.get("latent_shape")
        if isinstance(d, (int, float)) and d < 1 and isinstance(shape2, list) and isinstance(shape, list) and \
                shape2[-1] > shape[-1]:
            s.hires_steps = int(last.get("steps") or 0) or None
            s.denoise = float(d)
            s.hires_upscale = round(shape2[-1] / shape[-1], 4)
            s.hires_upscaler = "Latent"
    return s


def _text_of(prompt: dict, link: Any) -> str | None:
    """The text of the encoder a conditioning input comes from (through conditioning nodes with a text widget)."""
    seen = set()
    while isinstance(link, list) and len(link) == 2 and str(link[0]) in prompt and str(link[0]) not in seen:
        seen.add(str(link[0]))
        inputs = prompt[str(link[0])].get("inputs", {})
        if isinstance(inputs.get("text"), str):
            return inputs["text"]
        link = next((v for k, v in inputs.items() if k in ("conditioning", "conditioning_1", "positive")), None)
    return None
