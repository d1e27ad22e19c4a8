"""Recipes: what a sampler node actually ran (the seed after "randomize", the sigmas, the noise mode, the split
mode, the profile, the pack version), for PNG metadata and the nodes' UI output.

A PNG's ``stepwise`` text chunk holds :func:`recipe_document`: ``{"format": "stepwise-recipe", "version": 1,
"stepwise": <pack version>, "saved_by": <save node id>, "image": <index in its batch>, "samplers": [<recipe>...]}``,
each recipe as :func:`run_recipe` describes.
"""
from __future__ import annotations

from typing import Any

__all__ = ["run_recipe", "recipe_document", "RECIPE_FORMAT", "upstream_models"]

RECIPE_FORMAT = "stepwise-recipe"


def _pack_version() -> str:
    from .. import __version__

    return __version__


def run_recipe(info, node_id, sampler_name: str, scheduler: str, steps: int, cfg: float, kw: dict,
               profile, model: Any) -> dict:
    """One sampler run: everything that decided its numbers."""
    source = info.noise_source
    sigmas = None if info.sigmas is None else [float(v) for v in info.sigmas.tolist()]
    recipe = {
        "node_id": None if node_id is None else str(node_id),
        "profile": profile.comfyui_version,
        "seed": None if source is None else source.seed,
        "sampler": sampler_name,
        "sampler_options": {k: v for k, v in (kw.get("sampler_extra") or {}).items()},
        "scheduler": "sigmas socket" if kw.get("sigmas") is not None else scheduler,
        "steps": steps,
        "cfg": float(cfg),
        "denoise": kw.get("denoise", 1.0),
        "start_at_step": kw.get("start_step"),
        "end_at_step": kw.get("last_step"),
        "add_noise": not kw.get("disable_noise", False),
        "return_with_leftover_noise": not kw.get("force_full_denoise", False) if kw.get("last_step") is not None
        else None,
        "split_mode": kw.get("split_mode", "comfy"),
        "seamless": info.seamless,
        "noise": None if source is None else source.describe(),
        "sigmas": sigmas,
        "sampled": bool(info.sampled),
        "model": getattr(model, "name", None) or type(getattr(model, "model", model)).__name__,
    }
    if kw.get("native_sampler") is not None:
        recipe["sampler"] = f"{sampler_name} (ComfyUI's own)"
    return recipe


def upstream_models(prompt: dict, node_id: str) -> list[dict]:
    """The loaders (checkpoint, VAE, LoRA) upstream of a node in an API-format prompt, with their file names and
    strengths: the model/LoRA names a recipe records."""
    out, seen, todo = [], set(), [str(node_id)]
    keys = ("ckpt_name", "vae_name", "lora_name", "strength_model", "strength_clip", "unet_name", "lora_model_strength")
    while todo:
        nid = todo.pop()
        if nid in seen or nid not in prompt:
            continue
        seen.add(nid)
        node = prompt[nid]
        inputs = node.get("inputs") or {}
        found = {k: v for k, v in inputs.items() if k in keys and not isinstance(v, list)}
        if found and nid != str(node_id):
            out.append({"node_id": nid, "class_type": node.get("class_type"), **found})
        for value in inputs.values():
            if isinstance(value, list) and len(value) == 2:
                todo.append(str(value[0]))
    return sorted(out, key=lambda d: d["node_id"])


def recipe_document(recipes: list[dict], saved_by: str | None = None, image: int | None = None,
                    prompt: dict | None = None) -> dict:
    doc = {"format": RECIPE_FORMAT, "version": 1, "stepwise": _pack_version(), "saved_by": saved_by, "image": image,
           "samplers": recipes}
    if prompt is not None:
        for r in recipes:
            if r.get("node_id") in prompt:
                r.setdefault("models", upstream_models(prompt, r["node_id"]))
    return doc
