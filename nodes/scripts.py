"""The ``script`` input of the Efficient nodes: typed values that script nodes produce, and one table of what each
kind does.

A script is a :class:`StepwiseScript` (frozen: ``kind``, ``params``, ``version``) whose ``kind`` is a key of
:data:`SCRIPTS`. A script runs the node's sampling, ``sample(latent, request) -> LATENT``, as it needs, deriving
each pass's :class:`~..sampling.SamplingRequest` from the node's with ``replace``. Anything else in the ``script``
socket (e.g. an efficiency-nodes script tuple) is a clear error, never ignored.

- ``hires_fix`` (HiRes-Fix Script): sample, upscale the latent, a second denoising pass through the same core;
- ``noise`` (SDE Noise Script): the SDE samplers' noise source (ComfyUI's Brownian tree or the fast device one);
- ``xy_plot`` (XY Plot): up to three settings swept into a labelled grid; the Efficient node runs it itself, cell by
  cell in bounded memory (each cell cached on everything that affects it), because it returns a grid, not a latent.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..host import current_host
from ..preview.grid import GridBuilder, format_value
from ..sampling import SamplingRequest
from ..sampling.cache import ResultCache
from ..sampling.noise import NoiseSource
from ..workflows.sweep import AXES, AXIS_NAMES, MAX_CELLS, cell_order, parse_values, replace_term
from ..workflows.widgets import check_widget, check_widgets, widget_spec
from .noise import StepwiseNoise

__all__ = ["StepwiseScript", "SCRIPTS", "check_script", "apply_script", "StepwiseHiResFixScript",
           "StepwiseNoiseScript", "StepwiseXYPlot", "UPSCALE_METHODS", "run_xy_plot", "CELL_CACHE"]

SCRIPT_VERSION = 1


@dataclass(frozen=True)
class StepwiseScript:
    kind: str
    params: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    version: int = SCRIPT_VERSION

    @classmethod
    def make(cls, kind: str, **params: Any) -> "StepwiseScript":
        return cls(kind, tuple(sorted(params.items())))

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.params)


Sample = Callable[[dict, SamplingRequest], dict]


def check_script(script: Any) -> StepwiseScript | None:
    if script is None:
        return None
    if not isinstance(script, StepwiseScript):
        raise ValueError(f"script: expected a Stepwise script (from a Stepwise script node), got "
                         f"{type(script).__name__}; efficiency-nodes scripts are not supported")
    if script.kind not in SCRIPTS:
        raise ValueError(f"script: unknown script kind {script.kind!r}; allowed: {', '.join(SCRIPTS)}")
    if script.version != SCRIPT_VERSION:
        raise ValueError(f"script: version {script.version} is not supported (this pack reads {SCRIPT_VERSION})")
    return script


def apply_script(script: StepwiseScript | None, sample: Sample, latent: dict, request: SamplingRequest) -> dict:
    """The node's result with ``script`` applied (no script: one pass)."""
    if script is None:
        return sample(latent, request)
    return SCRIPTS[script.kind](sample, latent, request, script)


# --- HiRes-Fix --------------------------------------------------------------------------------------------------
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic"]


def upscale_latent(latent: dict, scale: float, method: str) -> dict:
    samples = latent["samples"]
    h, w = samples.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    kwargs = {} if method in ("nearest-exact", "area") else {"align_corners": False}
    out = dict(latent)
    out["samples"] = torch.nn.functional.interpolate(samples, size=size, mode=method, **kwargs)
    out.pop("noise_mask", None)
    return out


def _hires_fix(sample: Sample, latent: dict, request: SamplingRequest, script: StepwiseScript) -> dict:
    """Sample, upscale the latent and denoise it again (a latent "hires fix"); the second pass is a plain KSampler
    pass, also after an Advanced node."""
    o = script.options
    up = upscale_latent(sample(latent, request), float(o["upscale_by"]), o["upscale_method"])
    second = request.replace(steps=o["hires_steps"], denoise=o["denoise"], add_noise=True, start_at_step=None,
                             end_at_step=None, return_with_leftover_noise=False, sigmas=None, split_mode="comfy",
                             seed=o["seed"] if o.get("seed", -1) >= 0 else request.seed)
    return sample(up, second)


def _noise(sample: Sample, latent: dict, request: SamplingRequest, script: StepwiseScript) -> dict:
    """Sample with the chosen noise source for the Brownian-motion SDE samplers."""
    return sample(latent, request.replace(sde_noise=script.options["sde_noise"]))


def _xy_plot(sample: Sample, latent: dict, request: SamplingRequest, script: StepwiseScript) -> dict:
    raise ValueError("script: the XY Plot runs in the Efficient sampler nodes only")


#: every script kind and what it does (the XY Plot's own run is :func:`run_xy_plot`)
SCRIPTS: dict[str, Callable[..., dict]] = {"hires_fix": _hires_fix, "noise": _noise, "xy_plot": _xy_plot}


class StepwiseHiResFixScript:
    """SCRIPT for the Efficient nodes: a second pass at higher resolution."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "upscale_by": ("FLOAT", {"default": 1.5, "min": 1.0, "max": 4.0, "step": 0.05,
                                     "tooltip": "How much larger the second pass is."}),
            "upscale_method": (UPSCALE_METHODS, {"tooltip": "How the latent is enlarged before the second pass."}),
            "hires_steps": ("INT", {"default": 12, "min": 1, "max": 10000,
                                    "tooltip": "The second pass's steps."}),
            "denoise": ("FLOAT", {"default": 0.56, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "How much of the schedule the second pass runs."}),
            "hires_seed": ("INT", {"default": -1, "min": -1, "max": 0xFFFFFFFFFFFFFFFF,
                                   "tooltip": "-1 uses the sampler's seed"}),
        }}

    RETURN_TYPES = ("SCRIPT",)
    FUNCTION = "script"
    CATEGORY = "stepwise/scripts"
    DESCRIPTION = "A SCRIPT for the Efficient samplers: sample, enlarge the latent, then a second denoising pass."

    def script(self, upscale_by, upscale_method, hires_steps, denoise, hires_seed=-1):
        check_widgets(type(self), {"upscale_by": upscale_by, "upscale_method": upscale_method,
                                   "hires_steps": hires_steps, "denoise": denoise, "hires_seed": hires_seed})
        return (StepwiseScript.make("hires_fix", upscale_by=float(upscale_by), upscale_method=upscale_method,
                                    hires_steps=int(hires_steps), denoise=float(denoise), seed=int(hires_seed)),)


class StepwiseNoiseScript:
    """SCRIPT for the Efficient nodes: the SDE samplers' noise source. "brownian" gives ComfyUI's
    numbers; "fast" draws the same statistics on the sampling device without a CPU Brownian tree."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sde_noise": (["brownian", "fast"], {"tooltip": "brownian: ComfyUI-identical; "
                                                                            "fast: same statistics, much cheaper"})}}

    RETURN_TYPES = ("SCRIPT",)
    FUNCTION = "script"
    CATEGORY = "stepwise/scripts"
    DESCRIPTION = "A SCRIPT for the Efficient samplers: the noise source of the SDE samplers."

    def script(self, sde_noise):
        check_widget(type(self), "sde_noise", sde_noise)
        return (StepwiseScript.make("noise", sde_noise=sde_noise),)


# --- XY Plot ---------------------------------------------------------------------------------------------------
#: finished cells (their latents and recipes), separate from the Efficient nodes' result cache so a big sweep
#: does not evict everything else
CELL_CACHE = ResultCache(max_entries=1024, max_bytes=512 << 20)
N_INPUTS = 4
_ADVANCED_ONLY = {"start_at_step", "end_at_step", "add_noise", "return_with_leftover_noise", "split_mode"}


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
            "negative_text": ("STRING", {"forceInput": True, "tooltip": "The negative prompt the 'negative S/R' "
                                                                        "axis searches and replaces in."}),
        }
        for kind, socket in (("model", "MODEL"), ("latent", "LATENT")):
            for i in range(1, N_INPUTS + 1):
                optional[f"{kind}_{i}"] = (socket, {"tooltip": f"Value {i} of the '{kind}' axis."})
        return {"required": {
            "x_axis": (AXIS_NAMES[1:], {"default": "sampler_name", "tooltip": "The setting across the grid."}),
            "x_values": ("STRING", {"default": "euler, dpmpp_2m", "multiline": False, "tooltip": values_tip}),
            "y_axis": (AXIS_NAMES, {"default": "steps", "tooltip": "The setting down the grid (none: one row)."}),
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


def _widget_name(axis: str, advanced: bool) -> str:
    return "noise_seed" if axis == "seed" and advanced else axis


def _resolve_axis(slot: str, axis: str, text: str, advanced: bool, node_cls: type, request: SamplingRequest) -> list:
    spec = AXES[axis]
    if spec.kind == "widget":
        def applies(a: str) -> bool:
            return not ((not advanced and a in _ADVANCED_ONLY) or (advanced and a == "denoise"))

        if not applies(axis):
            raise ValueError(f"{slot}_axis: {axis!r} is not a setting of this sampler node; allowed here: "
                             f"{', '.join(a for a in AXES if applies(a))}")
        widget = _widget_name(axis, advanced)
        wspec = widget_spec(node_cls, widget)
        allowed = None
        if wspec is not None and isinstance(wspec[0], (list, tuple)):
            allowed = list(wspec[0])
        elif wspec is not None and wspec[0] == "COMBO":
            allowed = list(wspec[1].get("options", []))
        base = getattr(request, axis)
        if isinstance(base, bool):  # the Advanced nodes' combos, as the node shows them
            base = "enable" if base else "disable"
        values = parse_values(axis, text, allowed=allowed, base=base)
        for v in values:
            check_widget(node_cls, widget, v)
        return values
    if spec.kind == "noise":
        wspec = widget_spec(StepwiseNoise, axis)
        allowed = list(wspec[0]) if wspec is not None and isinstance(wspec[0], (list, tuple)) else None
        source = request.noise
        base = getattr(source, axis, None) if isinstance(source, NoiseSource) else None
        values = parse_values(axis, text, allowed=allowed, base=base)
        for v in values:
            check_widget(StepwiseNoise, axis, v)
        if source is not None and not isinstance(source, NoiseSource):
            raise ValueError(f"{slot}_axis: {axis!r} needs Noise (Stepwise) (or nothing) on the sampler's noise input")
        return values
    return parse_values(axis, text)


def cell_request(request: SamplingRequest, assignment: dict) -> SamplingRequest:
    """The request of one cell: the node's, with the cell's widget and noise values."""
    changes: dict[str, Any] = {}
    for axis, value in assignment.items():
        if AXES[axis].kind == "widget":
            changes[axis] = (value == "enable") if axis in ("add_noise", "return_with_leftover_noise") else value
    noise_axes = {a: v for a, v in assignment.items() if AXES[a].kind == "noise"}
    source = request.noise
    if noise_axes or ("seed" in assignment and isinstance(source, NoiseSource)):
        if not isinstance(source, NoiseSource):
            source = NoiseSource(changes.get("seed", request.seed), request.profile.cpu_noise_seed_offset,
                                 float32_draws=request.profile.noise_drawn_in_float32)
        updates = {("sde" if a == "sde_noise" else a): v for a, v in noise_axes.items()}
        if "seed" in assignment:
            updates["seed"] = assignment["seed"]
        changes["noise"] = dataclasses.replace(source, **updates)
    return request.replace(**changes) if changes else request


def run_xy_plot(advanced: bool, node_cls: type, plot: StepwiseScript, model, positive, negative, latent_image,
                request: SamplingRequest, sample: Callable[..., tuple[dict, list]],
                decode: Callable[[dict], torch.Tensor], cache_tag: Any, unique_id=None) -> dict:
    """Run every cell: ``sample(model, positive, negative, latent, request, inner_script) -> (latent, runs)``,
    ``decode(latent) -> IMAGE``. Returns {"grid": IMAGE (one per Z value), "latent": LATENT of all cells,
    "recipes": [...], "runs": [...], "cached": n, "labels": {...}}."""
    host = current_host()
    o = plot.options
    resolved = [(slot, axis, _resolve_axis(slot, axis, text, advanced, node_cls, request))
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
            encoded[(kind, text)] = host.encode_text(o["clip"], text)
        return encoded[(kind, text)]

    latents, recipes, first_run, cached = [], [], [], 0
    for n, (ix, iy, iz) in enumerate(cell_order(grid.nx, grid.ny, grid.nz), start=1):
        host.check_interrupt()
        host.progress_text(f"cell {n}/{grid.count}", unique_id)
        assignment = {x[0]: x[1][ix]}
        if y:
            assignment[y[0]] = y[1][iy]
        if z:
            assignment[z[0]] = z[1][iz]
        cell_model = o["models"][assignment["model"] - 1] if "model" in assignment else model
        cell_latent = o["latents"][assignment["latent"] - 1] if "latent" in assignment else latent_image
        pos = conditioning("positive", positive, assignment)
        neg = conditioning("negative", negative, assignment)
        cell = cell_request(request, assignment)
        key = ("xy-cell", cache_tag, cell_model, pos, neg, cell_latent, cell, o["script"])
        hit = CELL_CACHE.get(key)
        if hit is not None:
            out, cell_recipes, seconds = hit
            cached += 1
            note = f"{seconds:.2f} s (cached)"
        else:
            started = time.perf_counter()
            out, runs = sample(cell_model, pos, neg, cell_latent, cell, o["script"])
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
    host.progress_text(f"{grid.count} cells done", unique_id)
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
