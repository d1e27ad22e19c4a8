"""``stepwise sweep``: an XY(Z) sweep over any sampler node of a saved workflow, in this process or fanned out on Ray.

Every cell is the workflow (the part the swept node's image needs) with the node's widgets set to the cell's
values; it runs through the same executor as ``stepwise run``, so each cell PNG carries its own ``prompt`` and
``stepwise`` recipe (``stepwise run --from-png`` re-makes it). The grid holds uint8 copies of the cells, shrunk
once if the whole grid would exceed ``MAX_GRID_PIXELS``: memory does not grow with the number of cells beyond
the grid itself. With Ray, cells are tasks on long-lived worker actors (each loads the model once; one GPU per
worker where the cluster has GPUs); results are written as they arrive, a failed cell is retried once and then
drawn as failed, and the grid equals the single-process one pixel for pixel (times are in ``sweep.json``, not in
the picture, for that reason).
"""
from __future__ import annotations

import copy
import io
import itertools
import json
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy

from ..preview.grid import GridBuilder, format_value
from ..workflows.sweep import MAX_CELLS, parse_values, replace_term
from ..workflows.widgets import check_widget, is_widget, widget_spec
from .workflow import Prompt, WorkflowError, _is_link

__all__ = ["plan_sweep", "run_sweep", "SweepPlan", "CellRunner", "parse_axis_arg"]

SLOTS = ("x", "y", "z")


@dataclass(frozen=True)
class SweepCell:
    index: tuple[int, int, int]
    nodes: dict
    values: dict
    #: (node id, widget, value) edits of the editor workflow for this cell's ``workflow`` PNG chunk
    ui_edits: tuple = ()


@dataclass
class SweepPlan:
    node_id: str
    class_type: str
    image_node: str
    axes: list[tuple[str, str, list]]  # (slot, name, values)
    cells: list[SweepCell] = field(default_factory=list)
    workflow: dict | None = None  # the editor workflow the sweep came from (cells carry it, edited, as metadata)

    def builder(self) -> GridBuilder:
        by = {slot: (name, values) for slot, name, values in self.axes}
        return GridBuilder(by["x"], by.get("y"), by.get("z"))


def parse_axis_arg(slot: str, arg: str) -> tuple[str, str]:
    name, sep, text = (arg or "").partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--{slot}: expected NAME=VALUES (e.g. sampler_name=euler,dpmpp_2m or steps=10:30:5), "
                         f"got {arg!r}")
    return name.strip(), text


def _ancestors(nodes: dict, nid: str) -> set[str]:
    seen, todo = set(), [nid]
    while todo:
        cur = todo.pop()
        if cur in seen or cur not in nodes:
            continue
        seen.add(cur)
        for value in nodes[cur]["inputs"].values():
            if _is_link(value):
                todo.append(str(value[0]))
    return seen


def _is_sampler(cls: type | None) -> bool:
    if cls is None:
        return False
    req = cls.INPUT_TYPES().get("required", {})
    return "sampler_name" in req and "steps" in req and "model" in req


def _image_node(nodes: dict, node_id: str, registry: dict) -> str:
    """The output node whose images show the swept node's result: a SaveImage downstream of it, else a
    PreviewImage, else the node itself when it shows images (the Efficient nodes)."""
    downstream = [nid for nid in nodes if nid != node_id and node_id in _ancestors(nodes, nid)
                  and getattr(registry.get(nodes[nid]["class_type"]), "OUTPUT_NODE", False)]
    key = lambda nid: (int(nid) if nid.isdigit() else 1 << 60, nid)  # noqa: E731
    for kind in ("SaveImage", "PreviewImage"):
        found = sorted((n for n in downstream if nodes[n]["class_type"] == kind), key=key)
        if found:
            return found[0]
    if getattr(registry.get(nodes[node_id]["class_type"]), "OUTPUT_NODE", False):
        return node_id
    raise ValueError(f"--node {node_id}: no SaveImage or PreviewImage downstream of it; the sweep needs its images")


def _value_type(spec) -> tuple[str, list | None]:
    kind, opts = spec
    if kind == "COMBO":
        return "combo", list(opts.get("options", []))
    if isinstance(kind, (list, tuple)):
        return "combo", list(kind)
    return {"INT": "int", "FLOAT": "float", "STRING": "text", "BOOLEAN": "combo"}.get(kind, "text"), \
        ([True, False] if kind == "BOOLEAN" else None)


def _resolve(slot: str, name: str, text: str, nodes: dict, node_id: str, cls: type) -> tuple[str, list, Callable]:
    """(label, values, apply(nodes, value)) for one axis."""
    inputs = nodes[node_id]["inputs"]
    if name in ("positive", "negative"):
        link = inputs.get(name)
        src = nodes.get(str(link[0])) if _is_link(link) else None
        if src is None or not isinstance(src["inputs"].get("text"), str):
            raise ValueError(f"--{slot} {name}: node {node_id}'s {name} input does not come from a text encoder with "
                             f"a text widget")
        values = parse_values(f"{name} S/R", text)
        original = src["inputs"]["text"]
        replace_term(original, values[0], values[0], f"--{slot} {name}")
        src_id = str(link[0])

        def apply_text(cell_nodes: dict, value: str) -> tuple:
            cell_nodes[src_id]["inputs"]["text"] = original.replace(values[0], value)
            return (src_id, "text", cell_nodes[src_id]["inputs"]["text"])

        return f"{name} S/R", values, apply_text
    widget = name
    if widget_spec(cls, widget) is None and name == "seed" and widget_spec(cls, "noise_seed") is not None:
        widget = "noise_seed"
    spec = widget_spec(cls, widget)
    if spec is None or not is_widget(_full_spec(cls, widget)):
        names = [n for sec in ("required", "optional") for n, s in cls.INPUT_TYPES().get(sec, {}).items()
                 if is_widget(s)]
        raise ValueError(f"--{slot}: {name!r} is not a widget of node {node_id} ({nodes[node_id]['class_type']}); "
                         f"its widgets: {', '.join(names)}, and positive/negative (prompt search and replace)")
    value_type, allowed = _value_type(spec)
    base = inputs.get(widget)
    try:
        values = parse_values(name, text, allowed=allowed, base=None if _is_link(base) else base,
                              value_type=value_type)
    except ValueError as exc:
        raise ValueError(f"--{slot} (node {node_id}): {exc}") from None
    for v in values:
        try:
            check_widget(cls, widget, v)
        except ValueError as exc:
            raise ValueError(f"--{slot} (node {node_id}): {exc}") from None

    def apply_widget(cell_nodes: dict, value: Any) -> tuple:
        cell_nodes[node_id]["inputs"][widget] = value
        return (node_id, widget, value)

    return name, values, apply_widget


def _full_spec(cls: type, name: str):
    types = cls.INPUT_TYPES()
    for section in ("required", "optional"):
        if name in types.get(section, {}):
            return types[section][name]
    return None


def plan_sweep(prompt: Prompt, node_id: str, axes: dict[str, str]) -> SweepPlan:
    """The cells of a sweep over node ``node_id``; ``axes``: slot (x, y, z) -> "NAME=VALUES". Everything is checked
    before anything runs; every error names the node or the axis."""
    from .registry import node_registry

    registry = node_registry()
    nodes = prompt.nodes
    node_id = str(node_id)
    samplers = sorted(nid for nid, n in nodes.items() if _is_sampler(registry.get(n["class_type"])))
    if node_id not in nodes:
        raise ValueError(f"--node: no node {node_id!r} in the workflow; its sampler nodes: {', '.join(samplers) or '-'}")
    class_type = nodes[node_id]["class_type"]
    cls = registry.get(class_type)
    if not _is_sampler(cls):
        raise ValueError(f"--node {node_id}: {class_type} is not a sampler node; its sampler nodes: "
                         f"{', '.join(samplers) or '-'}")
    if "x" not in axes:
        raise ValueError("--x: a sweep needs at least the X axis (--x NAME=VALUES)")
    image_node = _image_node(nodes, node_id, registry)
    keep = _ancestors(nodes, image_node)
    resolved, appliers = [], []
    for slot in SLOTS:
        if slot not in axes:
            continue
        name, text = parse_axis_arg(slot, axes[slot])
        label, values, apply = _resolve(slot, name, text, nodes, node_id, cls)
        if any(label == other for _, other, _ in resolved):
            raise ValueError(f"--{slot}: {label!r} is already an axis")
        resolved.append((slot, label, values))
        appliers.append(apply)
    plan = SweepPlan(node_id, class_type, image_node, resolved,
                     workflow=prompt.workflow if isinstance(prompt.workflow, dict) else None)
    grid = plan.builder()
    if grid.count > MAX_CELLS:
        raise ValueError(f"sweep: {grid.count} cells; at most {MAX_CELLS}")
    base = {nid: node for nid, node in nodes.items() if nid in keep}  # the workflow's order: same bytes anywhere
    ranges = [range(len(values)) for _, _, values in resolved]
    for combo in itertools.product(*reversed(ranges)):  # z outermost, then y, then x
        idx = list(reversed(combo))
        cell_nodes = copy.deepcopy(base)
        values, edits = {}, []
        for (slot, label, vals), apply, i in zip(resolved, appliers, idx):
            edits.append(apply(cell_nodes, vals[i]))
            values[label] = vals[i]
        full = tuple(idx + [0] * (3 - len(idx)))
        plan.cells.append(SweepCell(full, cell_nodes, values, tuple(edits)))
    return plan


class CellRunner:
    """Runs cells in one process; the checkpoint (the demo model) is loaded once and kept."""

    def __init__(self, input_dir: str | Path) -> None:
        self.input_dir = Path(input_dir)
        self._checkpoints = (None, None)

    def run(self, nodes: dict, image_node: str, workflow: dict | None = None, ui_edits: tuple = ()) -> dict:
        """{"pngs": [bytes per image of the cell], "seconds": float}. ``workflow`` with ``ui_edits`` applied is the
        cell's ``workflow`` PNG chunk (the editor graph that re-makes it)."""
        from ..host import Observer, observe
        from .core_nodes import RunContext, show_on_node, use_context
        from .workflow import execute, set_widget_value

        ctx = RunContext(output_dir=Path("cell"), input_dir=self.input_dir, temp_dir=Path("cell-temp"),
                         defer_writes=True, notice=lambda m: None)
        ctx._checkpoint, ctx._tiny = self._checkpoints
        shown: dict[str, list] = {}
        started = time.perf_counter()
        with use_context(ctx), observe(Observer(show_images=show_on_node)):
            cell_workflow = None
            if workflow is not None:
                cell_workflow = copy.deepcopy(workflow)
                for nid, name, value in ui_edits:
                    set_widget_value(cell_workflow, nid, name, value)
            execute(Prompt(copy.deepcopy(nodes), cell_workflow),
                    on_output=lambda nid, ui: shown.__setitem__(nid, ui.get("images")))
        seconds = time.perf_counter() - started
        self._checkpoints = (ctx._checkpoint, ctx._tiny)
        wanted = [(e.get("subfolder", ""), e["filename"]) for e in shown.get(image_node) or []]
        by_name = {}
        for path, data in ctx.pending:
            for root in (ctx.output_dir, ctx.temp_dir):
                try:
                    rel = path.relative_to(root)
                except ValueError:
                    continue
                by_name[("" if str(rel.parent) == "." else rel.parent.as_posix(), rel.name)] = data
        pngs = [by_name[w] for w in wanted if w in by_name]
        if not pngs:
            raise RuntimeError(f"node {image_node} produced no image")
        return {"pngs": pngs, "seconds": seconds}


class _RayWorker:
    """A Ray actor: one CellRunner (the model loaded once) under the driver's behaviour profile."""

    def __init__(self, input_dir: str, profile: str) -> None:
        from ..host.profile import set_standalone_profile

        set_standalone_profile(profile)
        self.runner = CellRunner(input_dir)

    def run(self, nodes: dict, image_node: str, workflow: dict | None = None, ui_edits: tuple = ()) -> dict:
        return self.runner.run(nodes, image_node, workflow, ui_edits)


def _local_results(plan: SweepPlan, input_dir: Path):
    runner = CellRunner(input_dir)
    for cell in plan.cells:
        error = None
        for attempt in range(2):
            try:
                yield cell, runner.run(cell.nodes, plan.image_node, plan.workflow, cell.ui_edits), None, attempt + 1
                break
            except (WorkflowError, ValueError, RuntimeError, MemoryError, OSError) as exc:
                error = _error_line(exc)
        else:
            yield cell, None, error, 2


def _ray_results(plan: SweepPlan, input_dir: Path, address: str, workers: int | None, notice: Callable):
    try:
        import ray
    except ImportError:
        raise ValueError("--ray: Ray is not installed; pip install -e \".[ray]\" (an optional extra)") from None
    from ..host.profile import current_profile

    started_here = address == "local"
    if started_here:
        ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        n = workers or max(1, int(resources.get("CPU", 1)))
        if gpus:
            n = min(n, gpus)
        n = max(1, min(n, len(plan.cells)))
        notice(f"ray: {n} worker(s) on {address} ({int(resources.get('CPU', 0))} CPUs, {gpus} GPUs)")
        actor_cls = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_restarts=0)(_RayWorker)
        profile = current_profile().comfyui_version

        def spawn():
            return actor_cls.remote(str(Path(input_dir).resolve()), profile)

        idle = deque(spawn() for _ in range(n))
        queue = deque((cell, 0) for cell in plan.cells)
        running: dict[Any, tuple] = {}
        while queue or running:
            while idle and queue:
                actor = idle.popleft()
                cell, attempt = queue.popleft()
                running[actor.run.remote(cell.nodes, plan.image_node, plan.workflow, cell.ui_edits)] = \
                    (actor, cell, attempt)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                actor, cell, attempt = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as exc:  # the worker died: replace it
                    idle.append(spawn())
                    error = f"worker lost: {str(exc).splitlines()[0]}"
                except ray.exceptions.RayTaskError as exc:
                    idle.append(actor)
                    error = _error_line(exc.cause if getattr(exc, "cause", None) is not None else exc)
                else:
                    idle.append(actor)
                    yield cell, result, None, attempt + 1
                    continue
                if attempt == 0:
                    queue.appendleft((cell, 1))
                else:
                    yield cell, None, error, 2
    finally:
        ray.shutdown()  # stops the cluster this sweep started; only disconnects from a joined one


def _error_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def _cell_name(cell: SweepCell, plan: SweepPlan) -> str:
    ix, iy, iz = cell.index
    parts = [f"x{ix + 1:02d}"]
    if len(plan.axes) > 1:
        parts.append(f"y{iy + 1:02d}")
    if len(plan.axes) > 2:
        parts.append(f"z{iz + 1:02d}")
    return "cell_" + "_".join(parts)


def run_sweep(plan: SweepPlan, out: str | Path, input_dir: str | Path, ray: str | None = None,
              workers: int | None = None, notice: Callable[[str], None] | None = None) -> dict:
    """Run every cell, write ``cells/cell_*.png`` as they finish, then ``xy_grid.png`` (``xy_grid_zK.png`` per Z
    value) and ``sweep.json``. Returns the index written to ``sweep.json``."""
    from PIL import Image, PngImagePlugin

    from .images import encode_png, write_bytes_atomic

    notice = notice or (lambda m: print(m, file=sys.stderr))
    if workers is not None and workers < 1:
        raise ValueError("--workers: expected 1 or more")
    if workers is not None and ray is None:
        raise ValueError("--workers: applies to --ray (the workers of a Ray sweep); without --ray cells run here, "
                         "one after another")
    out = Path(out)
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    grid = plan.builder()
    results = _ray_results(plan, Path(input_dir), ray, workers, notice) if ray else _local_results(plan,
                                                                                                   Path(input_dir))
    index = {"node": plan.node_id, "class_type": plan.class_type, "image_node": plan.image_node,
             "axes": [{"slot": s, "name": n, "values": v} for s, n, v in plan.axes], "ray": ray, "cells": []}
    failed = 0
    for done, (cell, result, error, attempts) in enumerate(results, start=1):
        ix, iy, iz = cell.index
        entry = {"index": [ix, iy, iz], "values": cell.values, "attempts": attempts}
        if result is None:
            failed += 1
            grid.fail(ix, iy, iz, f"failed: {error}")
            entry["error"] = error
            notice(f"cell {done}/{len(plan.cells)} {_describe(cell)}: failed ({error})")
        else:
            name = _cell_name(cell, plan)
            files, arrays = [], []
            for k, data in enumerate(result["pngs"]):
                path = cells_dir / (f"{name}.png" if len(result["pngs"]) == 1 else f"{name}_b{k + 1}.png")
                write_bytes_atomic(path, data)
                files.append(str(path.relative_to(out)))
                arrays.append(numpy.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
            grid.add(ix, iy, iz, numpy.stack(arrays), "")
            entry.update(files=files, seconds=round(result["seconds"], 4))
            notice(f"cell {done}/{len(plan.cells)} {_describe(cell)}: {result['seconds']:.2f} s")
        index["cells"].append(entry)
    index["cells"].sort(key=lambda e: (e["index"][2], e["index"][1], e["index"][0]))
    meta = {k: v for k, v in index.items() if k not in ("cells", "ray")}  # the grid is the same with or without Ray
    grids = []
    for k, picture in enumerate(grid.render()):
        info = PngImagePlugin.PngInfo()
        info.add_text("stepwise_sweep", json.dumps(meta, default=str))
        path = out / ("xy_grid.png" if grid.nz == 1 else f"xy_grid_z{k + 1}.png")
        write_bytes_atomic(path, encode_png(picture, info))
        grids.append(str(path.relative_to(out)))
    index["grids"] = grids
    index["failed"] = failed
    write_bytes_atomic(out / "sweep.json", (json.dumps(index, indent=1, default=str) + "\n").encode())
    return index


def _describe(cell: SweepCell) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in cell.values.items())

