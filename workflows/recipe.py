"""Recipes: what a sampler node actually ran (its :class:`~..sampling.SamplingRequest` in the widget vocabulary, the
seed after "randomize", the sigmas, the noise mode, the seamless hand-off, the pack version), for PNG metadata and
the nodes' UI output; :meth:`SamplingRequest.from_recipe` reads one back.

A PNG's ``stepwise`` text chunk holds :func:`recipe_document`: ``{"format": "stepwise-recipe", "version": 1,
"stepwise": <pack version>, "saved_by": <save node id>, "image": <index in its batch>, "samplers": [<recipe>...]}``,
each recipe as :func:`run_recipe` describes.
"""
from __future__ import annotations

from typing import Any

__all__ = ["run_recipe", "recipe_document", "RECIPE_FORMAT", "upstream_models", "validate_recipe", "RecipeError"]

RECIPE_FORMAT = "stepwise-recipe"


def _pack_version() -> str:
    from ..version import __version__

    return __version__


def run_recipe(info, node_id, request, model: Any) -> dict:
    """One sampler run: its request's settings (the widget vocabulary) and what the run decided: the seed that
    actually ran, the noise, the seamless hand-off and the sigmas."""
    source = info.noise_source
    settings = request.to_recipe()
    recipe = {"node_id": None if node_id is None else str(node_id), **settings,
              "seed": None if source is None else source.seed,
              "seamless": info.seamless,
              "noise": None if source is None else source.describe(),
              "sigmas": None if info.sigmas is None else [float(v) for v in info.sigmas.tolist()],
              "sampled": bool(info.sampled),
              "latent_shape": None if info.shape is None else list(info.shape),
              "model": getattr(model, "name", None) or type(getattr(model, "model", model)).__name__}
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


class RecipeError(ValueError):
    """A recipe that cannot be used: ``cannot re-make: <field> <problem>``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"cannot re-make: {field} {problem}")
        self.field = field


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def validate_recipe(doc: Any) -> dict:
    """A ``stepwise`` PNG chunk checked against its schema before anything reads it (types and ranges of every
    field a re-make uses); a :class:`RecipeError` naming the field otherwise."""
    from ..sampling.profile import parse_version

    if not isinstance(doc, dict):
        raise RecipeError("stepwise", f"must be an object, got {_kind(doc)}")
    if doc.get("format", RECIPE_FORMAT) != RECIPE_FORMAT:
        raise RecipeError("format", f"must be {RECIPE_FORMAT!r}, got {str(doc.get('format'))[:40]!r}")
    version = doc.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version != 1:
        raise RecipeError("version", f"must be 1 (this pack reads recipe version 1), got {str(version)[:20]}")
    saved_by = doc.get("saved_by")
    if saved_by is not None and not isinstance(saved_by, str):
        raise RecipeError("saved_by", f"must be a node id (text), got {_kind(saved_by)}")
    image = doc.get("image")
    if image is not None and (isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < 1_000_000):
        raise RecipeError("image", f"must be an image index 0..999999, got {str(image)[:20]}")
    samplers = doc.get("samplers", [])
    if not isinstance(samplers, list):
        raise RecipeError("samplers", f"must be a list, got {_kind(samplers)}")
    for k, entry in enumerate(samplers):
        where = f"samplers[{k}]"
        if not isinstance(entry, dict):
            raise RecipeError(where, f"must be an object, got {_kind(entry)}")
        for key in ("profile", "node_id", "sampler", "scheduler", "split_mode"):
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                raise RecipeError(f"{where}.{key}", f"must be text, got {_kind(value)}")
        if entry.get("profile") is not None:
            try:
                parse_version(entry["profile"])
            except ValueError:
                raise RecipeError(f"{where}.profile", f"is not a ComfyUI version like 0.8.0: "
                                                      f"{entry['profile'][:40]!r}") from None
        for key in ("seed", "steps"):
            value = entry.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise RecipeError(f"{where}.{key}", f"must be a non-negative whole number, got {str(value)[:40]}")
        sigmas = entry.get("sigmas")
        if sigmas is not None and (not isinstance(sigmas, list) or
                                   not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sigmas)):
            raise RecipeError(f"{where}.sigmas", "must be a list of numbers")
    return doc
