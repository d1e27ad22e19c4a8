"""XY Plot (Stepwise): a SCRIPT for the Efficient nodes that sweeps up to three settings and returns a labelled grid.

The Efficient node samples the cells one by one through the same core (each cell cached on everything that
affects it, so a changed axis re-samples only the new cells), decodes each with its VAE, keeps only a uint8 copy
for the grid, and returns the grid(s) as IMAGE (one per Z value) and every cell's latent as one LATENT batch.
Interrupt stops between cells and within one; progress reads "cell i/N".
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import torch

from ..sampling.noise import NoiseSource
from .bridge import current_observer, is_comfy_model
from .cache import ResultCache
from .noise import StepwiseNoise
from .profile import current_profile
from .script import SCRIPT_HANDLERS, StepwiseScript, check_script
from .sweep import AXES, AXIS_NAMES, MAX_CELLS, GridBuilder, cell_order, format_value, parse_values, replace_term
from .widgets import check_widget, widget_spec

__all__ = ["StepwiseXYPlot", "run_xy_plot", "CELL_CACHE"]

#: finished cells (their latents and recipes), separate from the Efficient nodes' result cache so a big sweep
#: does not evict everything else
CELL_CACHE = ResultCache(max_entries=1024, max_bytes=512 << 20)
N_INPUTS = 4

#: axis -> the sampling key it sets, for the widget axes
_SAMPLING_KEY = {"seed": "seed", "steps": "steps", "cfg": "cfg", "sampler_name": "sampler_name",
                 "scheduler": "scheduler", "denoise": "denoise", "start_at_step": "start_step",
                 "end_at_step": "last_step", "split_mode": "split_mode"}
_ADVANCED_ONLY = {"start_at_step", "end_at_step", "add_noise", "return_with_leftover_noise", "split_mode"}


def _xy_error(*_args):
    raise ValueError("script: the XY Plot runs in the Efficient sampler nodes only")


SCRIPT_HANDLERS["xy_plot"] = _xy_error  # the Efficient nodes run it themselves (it returns a grid, not a latent)


class StepwiseXYPlot:
    """Sweep sampler settings, prompts, models or latents over X, Y (and Z = separate grids)."""

    @classmethod
    def INPUT_TYPES(cls):
        values_tip = ("A list: 'euler, dpmpp_2m'; a range '10:30:5'; from the node's own value '+1 x4'; '*' for "
                      "every choice. New lines separate values that hold commas.")
        optional: dict[str, tuple] = {
            "script": ("SCRIPT", {"tooltip": "A script every cell runs (e.g. HiRes-Fix)."}),
            "clip": ("CLIP", {"tooltip": "Re-encodes the prompts of the S/R axes."}),
            "positive_text": ("STRING", {"forceInput": True, "tooltip": "The positive prompt the 'positive S/R' "
                                                                        "axis searches and replaces in."}),
            "negative_text": ("STRING", {"forceInput": True}),
        }
        for kind, socket in (("model", "MODEL"), ("latent", "LATENT")):
            for i in range(1, N_INPUTS + 1):
                optional[f"{kind}_{i}"] = (socket, {"tooltip": f"Value {i} of the '{kind}' axis."})
        return {"required": {
            "x_axis": (AXIS_NAMES[1:], {"default": "sampler_name"}),
            "x_values": ("STRING", {"default": "euler, dpmpp_2m", "multiline": False, "tooltip": values_tip}),
            "y_axis": (AXIS_NAMES, {"default": "steps"}),
            "y_values": ("STRING", {"default": "8, 16", "multiline": False, "tooltip": values_tip}),
            "z_axis": (AXIS_NAMES, {"default": "none", "tooltip": "A third axis: one grid per value."}),
            "z_values": ("STRING", {"default": "", "multiline": False, "tooltip": values_tip}),
        }, "optional": optional}

    RETURN_TYPES = ("SCRIPT",)
    FUNCTION = "script"
    CATEGORY = "stepwise/scripts"
    DESCRIPTION = ("A SCRIPT for the Efficient samplers: one labelled grid over up to three settings, sampled cell "
                   "by cell in bounded memory; the cells also come out as a LATENT batch.")

    def script(self, x_axis, x_values, y_axis, y_values, z_axis="none", z_values="", script=None, clip=None,
               positive_text=None, negative_text=None, **inputs):
        from .widgets import check_widgets

        check_widgets(type(self), {"x_axis": x_axis, "y_axis": y_axis, "z_axis": z_axis})
        unknown = sorted(set(inputs) - {f"{k}_{i}" for k in ("model", "latent") for i in range(1, N_INPUTS + 1)})
        if unknown:
            raise ValueError(f"XY Plot: unknown input {unknown[0]!r}")
        axes = [(slot, name, text) for slot, name, text in (("x", x_axis, x_values), ("y", y_axis, y_values),
                                                              ("z", z_axis, z_values)) if name != "none"]
        names = [name for _, name, _ in axes]
        if len(set(names)) != len(names):
            raise ValueError(f"XY Plot: the axes must differ (got {', '.join(names)})")
        inner = check_script(script)
        if inner is not None and inner.kind == "xy_plot":
            raise ValueError("script: an XY Plot cannot run inside another XY Plot")
        texts = {"positive S/R": positive_text, "negative S/R": negative_text}
        for slot, name, text in axes:
            spec = AXES[name]
            values = parse_values(name, text, base=0)  # syntax now; relative values again against the node's own
            if spec.kind == "prompt":
                source = texts[name]
                if clip is None or not isinstance(source, str):
                    which = "positive_text" if name.startswith("positive") else "negative_text"
                    raise ValueError(f"{slot}_axis: {name!r} needs the clip and {which} inputs connected")
                replace_term(source, values[0], values[0], name)
            if spec.kind == "input":
                missing = [v for v in values if inputs.get(f"{name}_{v}") is None]
                if missing:
                    raise ValueError(f"{slot}_values: {name}_{missing[0]} is not connected")
        return (StepwiseScript.make("xy_plot", axes=tuple((slot, name, text) for slot, name, text in axes),
                                    script=inner, clip=clip, positive_text=positive_text, negative_text=negative_text,
                                    models=tuple(inputs.get(f"model_{i}") for i in range(1, N_INPUTS + 1)),
                                    latents=tuple(inputs.get(f"latent_{i}") for i in range(1, N_INPUTS + 1))),)


# --- running the sweep inside an Efficient node ------------------------------------------------------------------------
def _widget_name(axis: str, node: str) -> str:
    return "noise_seed" if axis == "seed" and node == "KSamplerAdvanced" else axis


def _resolve_axis(slot: str, axis: str, text: str, node: str, node_cls: type, sampling: dict) -> list:
    spec = AXES[axis]
    if spec.kind == "widget":
        def applies(a: str) -> bool:
            return not ((node != "KSamplerAdvanced" and a in _ADVANCED_ONLY) or
                        (node == "KSamplerAdvanced" and a == "denoise"))

        if not applies(axis):
            raise ValueError(f"{slot}_axis: {axis!r} is not a setting of this sampler node; allowed here: "
                             f"{', '.join(a for a in AXES if applies(a))}")
        widget = _widget_name(axis, node)
        wspec = widget_spec(node_cls, widget)
        allowed = None
        if wspec is not None and isinstance(wspec[0], (list, tuple)):
            allowed = list(wspec[0])
        elif wspec is not None and wspec[0] == "COMBO":
            allowed = list(wspec[1].get("options", []))
        base = sampling.get(_SAMPLING_KEY.get(axis, axis))
        values = parse_values(axis, text, allowed=allowed, base=base)
        for v in values:
            check_widget(node_cls, widget, v)
        return values
    if spec.kind == "noise":
        wspec = widget_spec(StepwiseNoise, axis)
        allowed = list(wspec[0]) if wspec is not None and isinstance(wspec[0], (list, tuple)) else None
        source = sampling.get("noise")
        base = getattr(source, axis, None) if isinstance(source, NoiseSource) else None
        values = parse_values(axis, text, allowed=allowed, base=base)
        for v in values:
            check_widget(StepwiseNoise, axis, v)
        if source is not None and not isinstance(source, NoiseSource):
            raise ValueError(f"{slot}_axis: {axis!r} needs Noise (Stepwise) (or nothing) on the sampler's noise input")
        return values
    return parse_values(axis, text)


def _apply(sampling: dict, assignment: dict) -> dict:
    """The sampling arguments of one cell."""
    out = dict(sampling)
    for axis, value in assignment.items():
        if axis in _SAMPLING_KEY and AXES[axis].kind == "widget":
            out[_SAMPLING_KEY[axis]] = value
        elif axis == "add_noise":
            out["disable_noise"] = value == "disable"
        elif axis == "return_with_leftover_noise":
            out["force_full_denoise"] = value != "enable"
    noise_axes = {a: v for a, v in assignment.items() if AXES[a].kind == "noise"}
    source = out.get("noise")
    if noise_axes or ("seed" in assignment and isinstance(source, NoiseSource)):
        if not isinstance(source, NoiseSource):
            source = NoiseSource(out["seed"], current_profile().cpu_noise_seed_offset)
        changes = {("sde" if a == "sde_noise" else a): v for a, v in noise_axes.items()}
        if "seed" in assignment:
            changes["seed"] = assignment["seed"]
        out["noise"] = dataclasses.replace(source, **changes)
    return out


def encode_text(clip: Any, text: str):
    """CONDITIONING for a prompt: ComfyUI's CLIPTextEncode inside ComfyUI, the CLIP's own ``encode`` otherwise."""
    if hasattr(clip, "tokenize") and hasattr(clip, "encode_from_tokens"):
        from .comfy_bridge import comfy_encode_text

        return comfy_encode_text(clip, text)
    if hasattr(clip, "encode"):
        return clip.encode(text)
    raise ValueError(f"clip: expected a CLIP, got {type(clip).__name__}")


def _check_interrupt(model: Any) -> None:
    observer = current_observer()
    if observer is not None:
        observer.check_interrupt()
    elif is_comfy_model(model):
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()


def _progress(text: str, unique_id: Any, model: Any) -> None:
    observer = current_observer()
    if observer is not None:
        if observer.on_progress_text is not None:
            observer.on_progress_text(text)
    elif is_comfy_model(model) and unique_id is not None:
        from .comfy_bridge import comfy_progress_text

        comfy_progress_text(text, unique_id)


def run_xy_plot(node: str, node_cls: type, plot: StepwiseScript, model, positive, negative, latent_image,
                sampling: dict, sample: Callable[..., tuple[dict, list]], decode: Callable[[dict], torch.Tensor],
                unique_id=None) -> dict:
    """Run every cell: ``sample(model, positive, negative, latent, sampling, inner_script) -> (latent, runs)``,
    ``decode(latent) -> IMAGE``. Returns {"grid": IMAGE (one per Z value), "latent": LATENT of all cells,
    "recipes": [...], "runs": [...], "cached": n}."""
    o = plot.options
    resolved = [(slot, axis, _resolve_axis(slot, axis, text, node, node_cls, sampling))
                for slot, axis, text in o["axes"]]
    by_slot = {slot: (axis, values) for slot, axis, values in resolved}
    x = by_slot["x"]
    y, z = by_slot.get("y"), by_slot.get("z")
    grid = GridBuilder((x[0], x[1] if x[1] else []), y, z)
    if grid.count > MAX_CELLS:
        raise ValueError(f"XY Plot: {grid.count} cells; at most {MAX_CELLS} per sweep")
    encoded: dict[tuple[str, str], Any] = {}

    def conditioning(kind: str, base, assignment: dict):
        axis = f"{kind} S/R"
        if axis not in assignment:
            return base
        values = dict((a, v) for _, a, v in resolved)[axis]
        text = replace_term(o[f"{kind}_text"], values[0], assignment[axis], axis)
        if (kind, text) not in encoded:
            encoded[(kind, text)] = encode_text(o["clip"], text)
        return encoded[(kind, text)]

    latents, recipes, first_run, cached = [], [], [], 0
    for n, (ix, iy, iz) in enumerate(cell_order(grid.nx, grid.ny, grid.nz), start=1):
        _check_interrupt(model)
        _progress(f"cell {n}/{grid.count}", unique_id, model)
        assignment = {x[0]: x[1][ix]}
        if y:
            assignment[y[0]] = y[1][iy]
        if z:
            assignment[z[0]] = z[1][iz]
        cell_model = o["models"][assignment["model"] - 1] if "model" in assignment else model
        cell_latent = o["latents"][assignment["latent"] - 1] if "latent" in assignment else latent_image
        pos = conditioning("positive", positive, assignment)
        neg = conditioning("negative", negative, assignment)
        cell_sampling = _apply(sampling, assignment)
        key = ("xy-cell", node, cell_model, pos, neg, cell_latent, cell_sampling, o["script"])
        hit = CELL_CACHE.get(key)
        if hit is not None:
            out, cell_recipes, seconds = hit
            cached += 1
            note = f"{seconds:.2f} s (cached)"
        else:
            started = time.perf_counter()
            out, runs = sample(cell_model, pos, neg, cell_latent, cell_sampling, o["script"])
            seconds = time.perf_counter() - started
            cell_recipes = [dict(r.recipe) for r in runs if getattr(r, "recipe", None)]
            if not first_run and runs:
                first_run = runs[:1]  # for the node's plot; the others' tensors are not kept
            CELL_CACHE.put(key, (out, cell_recipes, seconds))
            note = f"{seconds:.2f} s"
        recipes.extend({**r, "xy_cell": {a: v for a, v in assignment.items()}} for r in cell_recipes)
        images = decode(out)
        grid.add(ix, iy, iz, images, note)
        del images
        latents.append(out["samples"].detach().cpu() if isinstance(out["samples"], torch.Tensor) else out["samples"])
    _progress(f"{grid.count} cells done", unique_id, model)
    pictures = grid.render()
    import numpy

    grid_tensor = torch.from_numpy(numpy.stack([numpy.asarray(p) for p in pictures])).float().div_(255.0)
    shapes = {tuple(t.shape[1:]) for t in latents if isinstance(t, torch.Tensor)}
    if len(shapes) == 1:
        cells = {"samples": torch.cat(latents)}
    else:  # cells of different sizes (a latent axis) cannot form one batch: the last one
        cells = {"samples": latents[-1]}
    del latents
    return {"grid": grid_tensor, "latent": cells, "recipes": recipes, "runs": first_run, "cached": cached,
            "labels": {slot: [axis, [format_value(v) for v in values]] for slot, axis, values in resolved}}
