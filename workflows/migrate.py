"""``stepwise migrate``: move saved workflows onto Stepwise nodes, keeping everything else.

Core ``KSampler``/``KSamplerAdvanced`` become ``StepwiseKSampler``/``StepwiseKSamplerAdvanced`` (same widgets, same
numbers); efficiency-nodes' ``KSampler (Efficient)``/``KSampler Adv. (Efficient)`` become our Efficient nodes (the
legacy ``sampler_state`` widget dropped), ``HighRes-Fix Script`` our HiRes-Fix script, ``Noise Control Script`` a
Noise (Stepwise) node wired into the sampler's ``noise`` input, ``XY Plot`` with its ``XY Input`` nodes (seeds,
steps, CFG, sampler/scheduler, denoise, add/return noise) XY Plot (Stepwise). ``Tiled Upscaler Script`` has no Stepwise
equivalent: it is bypassed (the sampler runs without it) and reported. Links, widget values (with
``control_after_generate``), titles, colours, positions and groups are kept; each migrated node records what it
replaced in ``properties["stepwise_migrated_from"]``. Migrating twice changes nothing. Both the editor's format and
the API format are handled. Pure functions on JSON data: the CLI (``standalone/migrate.py``), ``stepwise serve``
and the ComfyUI route (the editor's "Migrate samplers to Stepwise" entries) share them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

from ..preview import PREVIEW_METHODS
from .subgraphs import definitions

__all__ = ["migrate_workflow", "MigrationReport", "SAMPLER_TYPES", "RULES"]

MIGRATED_FROM = "stepwise_migrated_from"
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic")
LEGACY_STATES = ("Sample", "Hold", "Script")
#: the sampler node types that migration replaces (none of them is left afterwards)
SAMPLER_TYPES = ("KSampler", "KSamplerAdvanced", "KSampler (Efficient)", "KSampler Adv. (Efficient)")


@dataclass
class MigrationReport:
    changed: list[dict] = field(default_factory=list)
    not_migrated: list[dict] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for c in self.changed:
            title = f" '{c['title']}'" if c.get("title") else ""
            notes = "".join(f"; {n}" for n in c.get("notes", []))
            where = f" in subgraph '{c['subgraph']}'" if c.get("subgraph") else ""
            out.append(f"node {c['node']}{where}{title}: {c['from']} -> {c['to']}{notes}")
        for n in self.not_migrated:
            out.append(f"node {n['node']}: {n['type']} not migrated: {n['reason']}")
        return out or ["nothing to migrate"]

    def as_dict(self) -> dict:
        return {"changed": self.changed, "not_migrated": self.not_migrated}


# --- widget translations (UI format: widgets_values lists) -----------------------------------------------------
def _strip_state(values: list) -> list:
    return values[1:] if values and values[0] in LEGACY_STATES else values


def _preview(value: Any, notes: list) -> str:
    if value in PREVIEW_METHODS:
        return value
    notes.append(f"preview_method {value!r} -> 'auto'")
    return "auto"


def _efficient_values(values: list, n_sampling: int, notes: list) -> list:
    """Efficiency KSampler widgets -> ours: sampling widgets, preview_method, vae_decode (same order)."""
    values = _strip_state(list(values or []))
    head = values[:n_sampling]
    rest = values[n_sampling:]
    preview = _preview(rest[0], notes) if rest else "auto"
    decode = rest[1] if len(rest) > 1 else "true"
    return head + [preview, decode]


def _hires_values(values: list, notes: list) -> list:
    v = list(values or [])
    get = lambda i, d: v[i] if i < len(v) else d  # noqa: E731
    upscale_type, ckpt, latent_upscaler = get(0, "latent"), get(1, "(use same)"), get(2, "nearest-exact")
    upscale_by, same_seed, seed = get(4, 1.25), get(5, True), get(6, 0)
    hires_steps, denoise, iterations, use_cn = get(8, 12), get(9, 0.56), get(10, 1), get(11, False)
    if upscale_type != "latent":
        notes.append(f"upscale_type {upscale_type!r} (pixel upscaler) is done as a latent upscale")
    if ckpt not in ("(use same)", None):
        notes.append(f"hires_ckpt_name {ckpt!r} not migrated: the second pass uses the same model")
    method = latent_upscaler if latent_upscaler in UPSCALE_METHODS else "bilinear"
    if method != latent_upscaler:
        notes.append(f"latent_upscaler {latent_upscaler!r} -> 'bilinear'")
    scale = float(upscale_by) if isinstance(upscale_by, (int, float)) else 1.25
    if not 1.0 <= scale <= 4.0:
        notes.append(f"upscale_by {scale} clamped to 1.0..4.0")
        scale = min(4.0, max(1.0, scale))
    if iterations not in (1, None):
        notes.append(f"iterations {iterations} -> 1 (one second pass)")
    if use_cn:
        notes.append("use_controlnet not migrated (no ControlNet in the second pass)")
    hires_seed = -1 if same_seed else int(seed)
    return [scale, method, int(hires_steps), float(denoise), hires_seed]


def _noise_values(values: list, notes: list) -> list:
    v = list(values or [])
    get = lambda i, d: v[i] if i < len(v) else d  # noqa: E731
    rng, cfg_denoiser, add_seed, seed, weight = get(0, "cpu"), get(1, False), get(2, False), get(3, 0), get(4, 0.015)
    if len(v) >= 6 and not isinstance(v[4], (int, float)):  # a control_after_generate slot after the seed
        weight = get(5, 0.015)
    if rng != "cpu":
        notes.append(f"rng_source {rng!r}: the noise is ComfyUI's CPU noise (device-independent)")
    if cfg_denoiser:
        notes.append("cfg_denoiser (A1111-style) not migrated")
    strength = float(weight) if add_seed else 0.0
    return [0, "fixed", "comfy", int(seed) if add_seed else 0, strength]


@dataclass(frozen=True)
class Rule:
    to: str
    widgets: Callable[[list, list], list] | None = None  # (values, notes) -> values; None keeps them
    api_inputs: Callable[[dict, list], dict] | None = None


def _api_efficient(inputs: dict, notes: list) -> dict:
    out = {k: v for k, v in inputs.items() if k != "sampler_state"}
    if "preview_method" in out and not isinstance(out["preview_method"], list):
        out["preview_method"] = _preview(out["preview_method"], notes)
    return out


def _api_hires(inputs: dict, notes: list) -> dict:
    values = [inputs.get(k) for k in ("upscale_type", "hires_ckpt_name", "latent_upscaler", "pixel_upscaler",
                                      "upscale_by", "use_same_seed", "seed")] + [None] + \
        [inputs.get(k) for k in ("hires_steps", "denoise", "iterations", "use_controlnet")]
    scale, method, steps, denoise, seed = _hires_values(values, notes)
    return {"upscale_by": scale, "upscale_method": method, "hires_steps": steps, "denoise": denoise,
            "hires_seed": seed}


def _api_noise(inputs: dict, notes: list) -> dict:
    values = [inputs.get(k) for k in ("rng_source", "cfg_denoiser", "add_seed_noise", "seed", "weight")]
    seed, _, mode, vseed, strength = _noise_values(values, notes)
    return {"noise_seed": seed, "batch_mode": mode, "variation_seed": vseed, "variation_strength": strength}


RULES: dict[str, Rule] = {
    "KSampler": Rule("StepwiseKSampler"),
    "KSamplerAdvanced": Rule("StepwiseKSamplerAdvanced"),
    "KSampler (Efficient)": Rule("StepwiseKSamplerEfficient", lambda v, n: _efficient_values(v, 7, n), _api_efficient),
    "KSampler Adv. (Efficient)": Rule("StepwiseKSamplerAdvancedEfficient", lambda v, n: _efficient_values(v, 10, n),
                                      _api_efficient),
    "HighRes-Fix Script": Rule("StepwiseHiResFixScript", _hires_values, _api_hires),
    "Noise Control Script": Rule("StepwiseNoise", _noise_values, _api_noise),
}
BYPASSED = {"Tiled Upscaler Script": "no Stepwise equivalent (tiled ControlNet upscaling is outside this pack); the "
                                     "node is bypassed, so the sampler runs without it"}


# --- efficiency-nodes' XY Plot and its XY Input nodes -> XY Plot (Stepwise) -------------------------------------------
XY_PLOT = "XY Plot"
_XY_WIDGETS = {
    "XY Input: Seeds++ Batch": ["batch_count"],
    "XY Input: Add/Return Noise": ["XY_type"],
    "XY Input: Steps": ["target_parameter", "batch_count", "first_step", "last_step", "first_start_step",
                        "last_start_step", "first_end_step", "last_end_step", "first_refine_step", "last_refine_step"],
    "XY Input: CFG Scale": ["batch_count", "first_cfg", "last_cfg"],
    "XY Input: Sampler/Scheduler": ["target_parameter", "input_count"] + [f"{k}_{i}" for i in range(1, 51)
                                                                          for k in ("sampler", "scheduler")],
    "XY Input: Denoise": ["batch_count", "first_denoise", "last_denoise"],
}


class NotMigrated(ValueError):
    """A part of a workflow that has no Stepwise equivalent (the reason is the message)."""


def _ints(count: int, first: int, last: int) -> list[int]:
    """efficiency-nodes' evenly spaced integers (truncated, de-duplicated, sorted)."""
    if count > 1:
        return sorted({int(first + i * (last - first) / (count - 1)) for i in range(count)})
    return [first] if count == 1 else []


def _floats(count: int, first: float, last: float) -> list[float]:
    if count > 1:
        return [round(first + i * (last - first) / (count - 1), 3) for i in range(count)]
    return [first] if count == 1 else []


def _join(values) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _xy_axis(kind: str, v: dict) -> tuple[str, str]:
    """(axis, values text) of an efficiency XY Input node's settings."""
    if kind == "XY Input: Seeds++ Batch":
        return "seed", f"+1 x{int(v['batch_count'])}"
    if kind == "XY Input: Add/Return Noise":
        return str(v["XY_type"]), "enable, disable"
    if kind == "XY Input: Steps":
        target = v["target_parameter"]
        if target == "refine_at_step":
            raise NotMigrated("refine_at_step (SDXL refiner) has no Stepwise equivalent")
        first, last = {"steps": ("first_step", "last_step"), "start_at_step": ("first_start_step", "last_start_step"),
                       "end_at_step": ("first_end_step", "last_end_step")}[target]
        return target, _join(_ints(int(v["batch_count"]), int(v[first]), int(v[last])))
    if kind == "XY Input: CFG Scale":
        return "cfg", _join(_floats(int(v["batch_count"]), float(v["first_cfg"]), float(v["last_cfg"])))
    if kind == "XY Input: Denoise":
        return "denoise", _join(_floats(int(v["batch_count"]), float(v["first_denoise"]), float(v["last_denoise"])))
    if kind == "XY Input: Sampler/Scheduler":
        n, target = int(v["input_count"]), v["target_parameter"]
        samplers = [v.get(f"sampler_{i}") for i in range(1, n + 1)]
        schedulers = [v.get(f"scheduler_{i}") for i in range(1, n + 1)]
        if target == "scheduler":
            return "scheduler", _join(s for s in schedulers if s not in (None, "None"))
        pairs = [(a, b) for a, b in zip(samplers, schedulers) if a not in (None, "None")]
        if target == "sampler" or all(b in (None, "None") for _, b in pairs):
            return "sampler_name", _join(a for a, _ in pairs)
        raise NotMigrated("sampler & scheduler pairs: use a sampler_name axis and a scheduler axis instead")
    raise NotMigrated(f"{kind!r} has no Stepwise axis (Stepwise sweeps sampler settings, noise, prompts, models "
                      f"and latents)")


def _xy_values_ui(node: dict) -> dict:
    names = _XY_WIDGETS.get(node.get("type"), [])
    return dict(zip(names, node.get("widgets_values") or []))


def _xy_plot_widgets(axes: dict, flip: bool) -> list:
    x, y = axes.get("X"), axes.get("Y")
    if flip:
        x, y = y, x
    if x is None:
        x, y = y, None
    return [x[0], x[1], y[0] if y else "none", y[1] if y else "", "none", ""]


def _migrate_xy_ui(wf: dict, nodes: dict, node: dict, report: MigrationReport) -> bool:
    """efficiency XY Plot (with its XY Input nodes) -> XY Plot (Stepwise); False (and a report line) when it
    cannot be."""
    links = {_link_fields(l)["id"]: _link_fields(l) for l in _links(wf)}
    axes, sources = {}, []
    try:
        for inp in node.get("inputs") or []:
            if inp.get("name") in ("X", "Y") and inp.get("link") is not None:
                src = nodes.get(links[inp["link"]]["origin_id"]) if inp["link"] in links else None
                if src is None:
                    continue
                axes[inp["name"]] = _xy_axis(src.get("type"), _xy_values_ui(src))
                sources.append(src)
        if not axes:
            raise NotMigrated("no X or Y input connected")
    except NotMigrated as exc:
        report.not_migrated.append({"node": node.get("id"), "type": XY_PLOT, "reason": str(exc)})
        return False
    values = node.get("widgets_values") or []
    props = node.setdefault("properties", {})
    props[MIGRATED_FROM] = {"type": XY_PLOT, "widgets_values": copy.deepcopy(values),
                            "inputs": {s.get("type"): copy.deepcopy(s.get("widgets_values")) for s in sources}}
    flip = len(values) > 1 and str(values[1]) == "True"
    node["widgets_values"] = _xy_plot_widgets(axes, flip)
    # drop the links into X, Y and dependencies, and the XY Input nodes that fed only this plot
    dropped = {i["link"] for i in node.get("inputs") or [] if i.get("name") in ("X", "Y", "dependencies")
               and i.get("link") is not None}
    wf["links"] = [l for l in _links(wf) if _link_fields(l)["id"] not in dropped]
    for other in nodes.values():
        for out in other.get("outputs") or []:
            if out.get("links"):
                out["links"] = [i for i in out["links"] if i not in dropped]
    gone = {s["id"] for s in sources if not any(o.get("links") for o in s.get("outputs") or [])}
    wf["nodes"] = [n for n in wf["nodes"] if n.get("id") not in gone]
    node["inputs"] = []
    node["type"] = "StepwiseXYPlot"
    if props.get("Node name for S&R") in (XY_PLOT, None):
        props["Node name for S&R"] = "StepwiseXYPlot"
    notes = [f"{s.get('type')} -> axis {a[0]}: {a[1]}" for s, a in zip(sources, axes.values())]
    if values[:1] and values[0] not in (0, None):
        notes.append("grid_spacing dropped (the grid has its own spacing)")
    report.changed.append({"node": node.get("id"), "title": node.get("title"), "from": XY_PLOT,
                           "to": "StepwiseXYPlot", "notes": notes})
    return True


# --- the editor's format ------------------------------------------------------------------------------------------
def _links(wf: dict) -> list:
    return wf.setdefault("links", []) or []


def _link_fields(link) -> dict:
    if isinstance(link, dict):
        return link
    keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
    return dict(zip(keys, link))


def _set_link(wf: dict, link_id, **changes) -> None:
    links = _links(wf)
    for k, link in enumerate(links):
        if _link_fields(link)["id"] == link_id:
            if isinstance(link, dict):
                link.update(changes)
            else:
                order = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
                for key, value in changes.items():
                    link[order.index(key)] = value
            return


def _rewire_noise_script(wf: dict, nodes: dict, node: dict, notes: list) -> None:
    """The Noise Control Script fed a sampler's script input: feed its noise input instead, and pass any script
    chained into it on to the sampler's script input."""
    out = (node.get("outputs") or [{}])[0]
    upstream = next((i.get("link") for i in node.get("inputs") or [] if i.get("name") == "script"), None)
    for link_id in list(out.get("links") or []):
        link = next((_link_fields(l) for l in _links(wf) if _link_fields(l)["id"] == link_id), None)
        target = nodes.get(link["target_id"]) if link else None
        if target is None:
            continue
        inputs = target.setdefault("inputs", [])
        slot = next((k for k, i in enumerate(inputs) if i.get("name") == "noise"), None)
        if slot is None:
            inputs.append({"name": "noise", "type": "NOISE", "link": None})
            slot = len(inputs) - 1
        old_slot = link["target_slot"]
        inputs[slot]["link"] = link_id
        _set_link(wf, link_id, target_slot=slot, type="NOISE")
        if 0 <= old_slot < len(inputs) and inputs[old_slot].get("name") == "script":
            inputs[old_slot]["link"] = upstream
            if upstream is not None:
                _set_link(wf, upstream, target_id=target["id"], target_slot=old_slot)
                notes.append(f"the script chained into it now feeds node {target['id']}'s script input")
    out["type"] = out["name"] = "NOISE"
    for i in node.get("inputs") or []:
        if i.get("name") == "script":
            i["link"] = None
    node["inputs"] = [i for i in node.get("inputs") or [] if i.get("name") != "script"]


def _migrate_ui(wf: dict, report: MigrationReport, only: set | None) -> dict:
    """The editor format: the top level, then every subgraph definition (its nodes serve all its instances; they are
    reported as ``subgraph NAME``; ``only`` picks them by execution id ``instance:inner``)."""
    wf = copy.deepcopy(wf)
    _migrate_graph(wf, report, only, None)
    defs = definitions(wf)
    if defs:
        instances: dict[str, list] = {}
        for graph in [wf] + list(defs.values()):
            for n in graph.get("nodes") or []:
                if isinstance(n, dict) and n.get("type") in defs:
                    instances.setdefault(n["type"], []).append(n.get("id"))
        for sub_id, sub in defs.items():
            inner_only = None
            if only is not None:
                inner_only = {str(i).rsplit(":", 1)[1] for i in only if ":" in str(i)
                              and any(str(i).rsplit(":", 1)[0].split(":")[-1] == str(x)
                                      for x in instances.get(sub_id, []))}
            _migrate_graph(sub, report, inner_only, sub.get("name") or sub_id)
    return wf


def _migrate_graph(wf: dict, report: MigrationReport, only: set | None, subgraph: str | None) -> None:
    """Migrate one graph level in place (the workflow itself or one subgraph definition)."""
    nodes = {n.get("id"): n for n in wf.get("nodes") or [] if isinstance(n, dict)}
    for node in list(nodes.values()):
        kind = node.get("type")
        if only is not None and node.get("id") not in only and str(node.get("id")) not in only:
            continue
        title = node.get("title")
        if kind in BYPASSED:
            if node.get("mode") != 4:
                node["mode"] = 4
                report.not_migrated.append({"node": node.get("id"), "type": kind, "reason": BYPASSED[kind]})
            continue
        if kind == XY_PLOT:
            _migrate_xy_ui(wf, nodes, node, report)
            continue
        rule = RULES.get(kind)
        if rule is None:
            continue
        notes: list[str] = []
        values = node.get("widgets_values")
        props = node.setdefault("properties", {})
        props[MIGRATED_FROM] = {"type": kind, "widgets_values": copy.deepcopy(values)}
        if rule.widgets is not None and isinstance(values, list):
            node["widgets_values"] = rule.widgets(values, notes)
        node["type"] = rule.to
        if props.get("Node name for S&R") in (kind, None):
            props["Node name for S&R"] = rule.to
        if kind == "Noise Control Script":
            _rewire_noise_script(wf, nodes, node, notes)
        if kind == "HighRes-Fix Script":
            inputs = node.get("inputs") or []
            if any(i.get("name") == "script" and i.get("link") is not None for i in inputs):
                notes.append("a script chained into it is dropped (Stepwise scripts do not chain)")
            node["inputs"] = [i for i in inputs if i.get("name") != "script"]
        entry = {"node": node.get("id"), "title": title, "from": kind, "to": rule.to, "notes": notes}
        if subgraph is not None:
            entry["subgraph"] = subgraph
        report.changed.append(entry)


# --- the API format -----------------------------------------------------------------------------------------------
def _migrate_api(prompt: dict, report: MigrationReport, only: set | None) -> dict:
    prompt = copy.deepcopy(prompt)
    for nid, node in list(prompt.items()):
        if nid not in prompt:  # an XY Input node a migrated XY Plot absorbed
            continue
        kind = node.get("class_type")
        if only is not None and nid not in only:
            continue
        if kind in BYPASSED:
            report.not_migrated.append({"node": nid, "type": kind, "reason": BYPASSED[kind]})
            continue
        if kind == XY_PLOT:
            _migrate_xy_api(prompt, nid, node, report)
            continue
        rule = RULES.get(kind)
        if rule is None:
            continue
        notes: list[str] = []
        inputs = node.get("inputs") or {}
        meta = node.setdefault("_meta", {})
        meta[MIGRATED_FROM] = {"class_type": kind, "inputs": copy.deepcopy(inputs)}
        if rule.api_inputs is not None:
            kept_links = {k: v for k, v in inputs.items() if isinstance(v, list)}
            node["inputs"] = {**rule.api_inputs(inputs, notes), **{k: v for k, v in kept_links.items()
                                                                    if k not in ("script",) or kind != "Noise Control Script"}}
            if kind == "HighRes-Fix Script":
                node["inputs"].pop("script", None)
        node["class_type"] = rule.to
        if kind == "Noise Control Script":
            upstream = inputs.get("script")
            for other in prompt.values():
                for key, value in list((other.get("inputs") or {}).items()):
                    if key == "script" and isinstance(value, list) and str(value[0]) == str(nid):
                        other["inputs"]["noise"] = value
                        if upstream is not None:
                            other["inputs"]["script"] = upstream
                        else:
                            del other["inputs"]["script"]
        report.changed.append({"node": nid, "title": meta.get("title"), "from": kind, "to": rule.to, "notes": notes})
    # a bypassed (API: removed) Tiled Upscaler Script: drop links into it
    for nid in [n for n, v in prompt.items() if v.get("class_type") in BYPASSED]:
        del prompt[nid]
        for other in prompt.values():
            for key, value in list((other.get("inputs") or {}).items()):
                if isinstance(value, list) and len(value) == 2 and str(value[0]) == str(nid):
                    del other["inputs"][key]
    return prompt


def _migrate_xy_api(prompt: dict, nid: str, node: dict, report: MigrationReport) -> None:
    inputs = node.get("inputs") or {}
    axes, sources = {}, []
    try:
        for slot in ("X", "Y"):
            link = inputs.get(slot)
            if isinstance(link, list) and str(link[0]) in prompt:
                src = prompt[str(link[0])]
                axes[slot] = _xy_axis(src.get("class_type"), src.get("inputs") or {})
                sources.append(str(link[0]))
        if not axes:
            raise NotMigrated("no X or Y input connected")
    except NotMigrated as exc:
        report.not_migrated.append({"node": nid, "type": XY_PLOT, "reason": str(exc)})
        return
    node.setdefault("_meta", {})[MIGRATED_FROM] = {"class_type": XY_PLOT, "inputs": copy.deepcopy(inputs)}
    x_axis, x_values, y_axis, y_values, z_axis, z_values = _xy_plot_widgets(axes, str(inputs.get("XY_flip")) == "True")
    node["class_type"] = "StepwiseXYPlot"
    node["inputs"] = {"x_axis": x_axis, "x_values": x_values, "y_axis": y_axis, "y_values": y_values,
                      "z_axis": z_axis, "z_values": z_values}
    for src in sources:
        used = any(isinstance(v, list) and str(v[0]) == src for other_id, other in prompt.items() if other_id != nid
                   for v in (other.get("inputs") or {}).values())
        if not used:
            del prompt[src]
    report.changed.append({"node": nid, "title": node["_meta"].get("title"), "from": XY_PLOT, "to": "StepwiseXYPlot",
                           "notes": [f"axis {a}: {v}" for a, v in axes.values()]})


def migrate_workflow(data: Any, only: set | None = None, stages: bool = False) -> tuple[Any, MigrationReport]:
    """(migrated copy, report) for a workflow in the editor's format or the API format; ``only`` limits the
    migration to those node ids; ``stages`` also folds split KSampler Advanced chains into Stages nodes."""
    report = MigrationReport()
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        migrated = _migrate_ui(data, report, only)
        if stages:
            from .fold_stages import fold_stages

            migrated, folds = fold_stages(migrated)
            report.changed.extend(folds)
        return migrated, report
    if stages:
        raise ValueError("--stages: folds workflows in the editor's format (nodes/links); this is the API format")
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        return _migrate_api(data, report, {str(i) for i in only} if only else None), report
    raise ValueError("workflow: not a ComfyUI workflow (the editor's format with nodes/links, or the API format)")
