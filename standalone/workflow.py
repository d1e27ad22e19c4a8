"""Saved ComfyUI workflows -> an executable prompt, and its execution.

Two formats are accepted:

- API format: ``{node_id: {"class_type": ..., "inputs": {name: value | [src_id, slot]}}}``;
- UI format (saved from the editor): ``{"nodes": [...], "links": [...]}``. ``widgets_values`` map
  onto the node's INPUT_TYPES order, with the extra ``control_after_generate`` value after a seed
  and the upload widget after an image picker; widgets converted to inputs take their link;
  muted nodes (mode 2) are dropped, bypassed ones (mode 4) pass their inputs through by type;
  Reroute and PrimitiveNode (frontend-only) are resolved; notes are ignored.
"""
from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..workflows.subgraphs import INPUT_NODE, SubgraphError, find_node, flatten, has_subgraphs

__all__ = ["WorkflowError", "Prompt", "load_workflow", "ui_to_prompt", "execute", "NodeRegistry"]

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode", "GroupNode"}
SEED_NAMES = {"seed", "noise_seed"}

NodeRegistry = dict[str, type]


class WorkflowError(ValueError):
    """A workflow problem, naming the node (and input) it concerns."""

    def __init__(self, message: str, node_id: str | None = None, input_name: str | None = None,
                 class_type: str | None = None) -> None:
        super().__init__(message)
        self.node_id = None if node_id is None else str(node_id)
        self.input_name = input_name
        self.class_type = class_type


@dataclass
class Prompt:
    """An API-format prompt plus the UI workflow it came from (for PNG metadata)."""

    nodes: dict[str, dict]
    workflow: dict | None = None
    titles: dict[str, str] = field(default_factory=dict)


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and isinstance(value[1], int)


def load_workflow(path: str | Path) -> Prompt:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkflowError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise WorkflowError(f"cannot read {path}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"{path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return parse_workflow(data)


def _unknown_type(nid, ntype: str, registry) -> str:
    """The error for a node type we cannot run; a type ``stepwise migrate`` handles says so."""
    from ..workflows.migrate import BYPASSED, RULES

    if ntype in RULES:
        hint = f"; `stepwise migrate` turns it into {RULES[ntype].to}"
    elif ntype in BYPASSED:
        hint = f"; `stepwise migrate` bypasses it ({BYPASSED[ntype]})"
    else:
        hint = ""
    return f"node {nid}: unknown node type {ntype!r}{hint}; supported types: {', '.join(sorted(registry))}"


def parse_workflow(data: Any) -> Prompt:
    if isinstance(data, dict) and "prompt" in data and isinstance(data["prompt"], dict) and "nodes" not in data:
        data = data["prompt"]
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        return ui_to_prompt(data)
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        nodes, titles = {}, {}
        for k, v in data.items():
            ctype, inputs = v["class_type"], v.get("inputs", {})
            if not isinstance(ctype, str):
                raise WorkflowError(f"node {k}: 'class_type' must be a node type name (text), got "
                                    f"{type(ctype).__name__}", str(k))
            if inputs is None:
                inputs = {}
            if not isinstance(inputs, dict):
                raise WorkflowError(f"node {k} ({ctype}): 'inputs' must be an object {{name: value or link}}, got "
                                    f"{type(inputs).__name__}", str(k), None, ctype)
            nodes[str(k)] = {"class_type": ctype, "inputs": dict(inputs)}
            meta = v.get("_meta")
            titles[str(k)] = str(meta.get("title", "")) if isinstance(meta, dict) else ""
        return Prompt(nodes, None, titles)
    raise WorkflowError("not a ComfyUI workflow: expected the editor's format (nodes/links) or the API format "
                        "(node id -> {class_type, inputs})")


# --- UI format ---------------------------------------------------------------------------------------------
def _widget_names(node_cls: type) -> list[tuple[str, int]]:
    """(input name, number of widgets_values it consumes) in INPUT_TYPES order."""
    out = []
    types = node_cls.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, spec in types.get(section, {}).items():
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES:
                extra = 0
                if opts.get("control_after_generate") or (kind == "INT" and name in SEED_NAMES):
                    extra += 1
                if opts.get("image_upload") or opts.get("video_upload"):
                    extra += 1
                out.append((name, 1 + extra))
    return out


def _widget_slots(node_cls: type) -> list[str]:
    """A node type's ``widgets_values`` slots by name (a seed's control_after_generate slot named after it)."""
    out = []
    for name, width in _widget_names(node_cls):
        out += [name] + [f"{name}:control"] * (width - 1)
    return out


def _is_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value != "")


def _is_slot(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_ui(wf: dict) -> tuple[dict, dict[int, tuple]]:
    """The editor format's structure, checked: nodes by id, links by id. A WorkflowError names what is wrong."""
    nodes: dict = {}
    for n in wf["nodes"]:
        if not isinstance(n, dict) or not _is_id(n.get("id")) or not isinstance(n.get("type"), str):
            raise WorkflowError(f"workflow: malformed node entry {str(n)[:80]} (needs an 'id' and a 'type')")
        nid = n["id"]
        if nid in nodes:
            raise WorkflowError(f"node {nid}: the id is used twice", str(nid))
        mode = n.get("mode", 0)
        if mode is not None and (not isinstance(mode, int) or isinstance(mode, bool)):
            raise WorkflowError(f"node {nid}: 'mode' must be a number, got {mode!r:.40}", str(nid), None, n["type"])
        for key in ("inputs", "outputs"):
            items = n.get(key)
            if items is None:
                continue
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise WorkflowError(f"node {nid}: '{key}' must be a list of objects", str(nid), None, n["type"])
            for i in items:
                if key == "inputs" and (not isinstance(i.get("name"), str) or
                                        (i.get("link") is not None and not _is_id(i.get("link")))):
                    raise WorkflowError(f"node {nid}: malformed input {str(i)[:80]}", str(nid), None, n["type"])
        values = n.get("widgets_values")
        if values is not None and not isinstance(values, (list, dict)):
            raise WorkflowError(f"node {nid}: 'widgets_values' must be a list, got {type(values).__name__}",
                                str(nid), None, n["type"])
        if "title" in n and not isinstance(n["title"], (str, type(None))):
            raise WorkflowError(f"node {nid}: 'title' must be text", str(nid), None, n["type"])
        nodes[nid] = n
    links: dict = {}
    raw_links = wf.get("links", [])
    if raw_links is not None and not isinstance(raw_links, list):
        raise WorkflowError("workflow: 'links' must be a list")
    for link in raw_links or []:
        if isinstance(link, dict):
            fields = [link.get(k) for k in ("id", "origin_id", "origin_slot", "target_id", "target_slot")]
            fields.append(link.get("type"))
        elif isinstance(link, list) and len(link) >= 5:
            fields = list(link[:6]) + [None] * (6 - len(link[:6]))
        else:
            raise WorkflowError(f"workflow: malformed link {str(link)[:80]}")
        if not (_is_id(fields[0]) and _is_id(fields[1]) and _is_slot(fields[2]) and _is_id(fields[3])
                and _is_slot(fields[4])):
            raise WorkflowError(f"workflow: malformed link {str(link)[:80]}")
        links[fields[0]] = tuple(fields[1:6])
    return nodes, links


def ui_to_prompt(wf: dict, registry: NodeRegistry | None = None) -> Prompt:
    from .registry import node_registry

    registry = registry if registry is not None else node_registry()
    original = wf
    if has_subgraphs(wf):
        try:
            wf = flatten(wf, lambda t: _widget_slots(registry[t]) if t in registry else None)
        except SubgraphError as exc:
            raise WorkflowError(str(exc)) from None
    nodes, links = _check_ui(wf)

    def input_types(node: dict) -> list[tuple[str, Any, Any]]:
        return [(i.get("name"), i.get("type"), i.get("link")) for i in node.get("inputs", []) or []]

    def resolve(link_id: int, want_type: Any) -> Any:
        """The final (source id, slot) of a link, or a literal value, through reroutes, primitives, bypasses
        (followed in a loop, so a chain of any length works)."""
        seen: set = set()
        while True:
            if link_id in seen:
                raise WorkflowError(f"workflow: link {link_id} is part of a cycle of reroutes/bypassed nodes")
            seen.add(link_id)
            if link_id not in links:
                return None
            origin_id, origin_slot = links[link_id][0], links[link_id][1]
            src = nodes.get(origin_id)
            if src is None:
                return None
            mode = src.get("mode", 0)
            if src["type"] == "Reroute":
                ins = input_types(src)
                if not ins or ins[0][2] is None:
                    return None
                link_id = ins[0][2]
                continue
            if src["type"] == "PrimitiveNode":
                values = src.get("widgets_values") or []
                return ("value", values[0] if values else None)
            if mode == 2:
                return None
            if mode == 4:
                out_type = None
                outs = src.get("outputs") or []
                if origin_slot < len(outs):
                    out_type = outs[origin_slot].get("type")
                ins = input_types(src)
                candidates = [i for i in ins if i[2] is not None and i[1] == out_type]
                same_slot = ins[origin_slot] if origin_slot < len(ins) and ins[origin_slot][1] == out_type and \
                    ins[origin_slot][2] is not None else None
                chosen = same_slot or (candidates[0] if candidates else None)
                if chosen is None:
                    return None
                link_id = chosen[2]
                continue
            return ("link", [str(origin_id), origin_slot])

    prompt: dict[str, dict] = {}
    titles: dict[str, str] = {}
    for nid, n in nodes.items():
        ntype = n["type"]
        if ntype in FRONTEND_ONLY or n.get("mode", 0) in (2, 4):
            continue
        cls = registry.get(ntype)
        if cls is None:
            raise WorkflowError(_unknown_type(nid, ntype, registry), nid, None, ntype)
        inputs: dict[str, Any] = {}
        values = n.get("widgets_values")
        linked = {name: link for name, _, link in input_types(n) if link is not None}
        declared = {name for name, _, _ in input_types(n)}
        if isinstance(values, dict):
            for name, _ in _widget_names(cls):
                if name in values:
                    inputs[name] = values[name]
        elif values is not None:
            idx = 0
            layout = _widget_names(cls)
            if hasattr(cls, "widget_layout"):
                layout = cls.widget_layout(values, layout)
            for name, width in layout:
                if idx < len(values):
                    inputs[name] = values[idx]
                idx += width
        optional = set(cls.INPUT_TYPES().get("optional", {}))
        for name, link in linked.items():
            r = resolve(link, None)
            if r is None and name in optional:
                inputs.pop(name, None)  # an optional input fed by a bypassed node with nothing to pass on
            elif r is None:
                inputs.pop(name, None)
                inputs[name] = _Missing(link)
            elif r[0] == "value":
                inputs[name] = r[1]
            else:
                inputs[name] = r[1]
        # required connection inputs that have no link at all
        for name, spec in cls.INPUT_TYPES().get("required", {}).items():
            if name not in inputs and name in declared and name not in linked:
                inputs[name] = _Missing(None)
        prompt[str(nid)] = {"class_type": ntype, "inputs": inputs}
        titles[str(nid)] = n.get("title", "") or ""
    return Prompt(prompt, original, titles)


def set_widget_value(workflow: dict, node_id: Any, name: str, value: Any, registry: NodeRegistry | None = None) -> bool:
    """Set widget ``name`` of node ``node_id`` in an editor-format workflow (its ``widgets_values`` slot, found through
    the node's INPUT_TYPES order as :func:`ui_to_prompt` reads it). False when the node or widget is not there."""
    from .registry import node_registry

    registry = registry if registry is not None else node_registry()
    if ":" in str(node_id):  # a node inside a subgraph: its instance's promoted widget, else the definition's node
        node, sub, instance = find_node(workflow, node_id)
        if node is None:
            return False
        if _set_promoted(instance, sub, node, name, value):
            return True
    else:
        node = next((n for n in workflow.get("nodes") or [] if isinstance(n, dict) and str(n.get("id")) == str(node_id)),
                    None)
    cls = registry.get(node.get("type")) if node is not None else None
    if cls is None:
        return False
    values = node.get("widgets_values")
    if isinstance(values, dict):
        values[name] = value
        return True
    if not isinstance(values, list):
        return False
    layout = _widget_names(cls)
    if hasattr(cls, "widget_layout"):
        layout = cls.widget_layout(values, layout)
    idx = 0
    for widget, width in layout:
        if widget == name:
            if idx < len(values):
                values[idx] = value
                return True
            return False
        idx += width
    return False


def _set_promoted(instance: dict, sub: dict, node: dict, name: str, value: Any) -> bool:
    """Set the instance's promoted widget that feeds ``node``'s input ``name`` (False when none does)."""
    slot_of = {i.get("name"): k for k, i in enumerate(node.get("inputs") or []) if isinstance(i, dict)}
    if name not in slot_of:
        return False
    feeding = None
    for link in sub.get("links") or []:
        f = link if isinstance(link, dict) else dict(zip(("id", "origin_id", "origin_slot", "target_id", "target_slot"),
                                                         link))
        if f.get("origin_id") == INPUT_NODE and str(f.get("target_id")) == str(node.get("id")) and \
                f.get("target_slot") == slot_of[name]:
            feeding = f.get("origin_slot")
    inputs = instance.get("inputs") or []
    if feeding is None or feeding >= len(inputs) or inputs[feeding].get("widget") is None or \
            inputs[feeding].get("link") is not None:
        return False
    index = sum(1 for i in inputs[:feeding] if isinstance(i, dict) and i.get("widget") is not None)
    values = instance.get("widgets_values")
    if not isinstance(values, list):
        values = instance["widgets_values"] = []
    values.extend([None] * (index + 1 - len(values)))
    values[index] = value
    return True


@dataclass(frozen=True)
class _Missing:
    link: int | None

    def __repr__(self) -> str:
        return "missing link" if self.link is None else f"broken link {self.link}"


# --- execution ------------------------------------------------------------------------------------------------
def _output_nodes(prompt: Prompt, registry: NodeRegistry) -> list[str]:
    return [nid for nid, n in prompt.nodes.items() if getattr(registry.get(n["class_type"]), "OUTPUT_NODE", False)]


def _order(prompt: Prompt, targets: list[str]) -> list[str]:
    """Dependencies first; raises WorkflowError on a cycle or a link to a missing node. An explicit stack, not
    recursion: a chain of any length is ordered."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def links_of(nid: str):
        for name, value in prompt.nodes[nid]["inputs"].items():
            if _is_link(value):
                src = str(value[0])
                if src not in prompt.nodes:
                    raise WorkflowError(f"node {nid} input {name!r}: linked to node {src}, which is not in the "
                                        f"workflow (missing, muted or bypassed without a pass-through)", nid, name)
                yield src

    for target in targets:
        if state.get(target) == 2:
            continue
        state[target] = 1
        stack = [(target, links_of(target))]
        while stack:
            nid, pending = stack[-1]
            src = next(pending, None)
            if src is None:
                stack.pop()
                state[nid] = 2
                order.append(nid)
            elif state.get(src) == 1:
                path = [n for n, _ in stack]
                cycle = path[path.index(src):] + [src]
                if len(cycle) > 9:
                    cycle = cycle[:4] + [f"... ({len(cycle) - 8} more)"] + cycle[-4:]
                raise WorkflowError(f"node {src}: the workflow has a cycle ({' -> '.join(cycle)})", src)
            elif state.get(src) != 2:
                state[src] = 1
                stack.append((src, links_of(src)))
    return order


_INPUT_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[\d+\])?: ")


def node_error(exc: BaseException, nid: str, class_type: str, declared: set[str]) -> WorkflowError:
    """A WorkflowError naming the node and, when the message starts with one, the input."""
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and
                                        ("alloc" in msg.lower() or "out of memory" in msg.lower())):
        return WorkflowError(f"node {nid} ({class_type}): out of memory ({msg.splitlines()[0][:200]}); use a smaller "
                             f"image or batch", nid, None, class_type)
    if not isinstance(exc, (ValueError, TypeError)):
        msg = f"{type(exc).__name__}: {msg}"
    m = _INPUT_PREFIX.match(msg)
    if m and m.group(1) in declared:
        return WorkflowError(f"node {nid} ({class_type}) input {msg}", nid, m.group(1), class_type)
    return WorkflowError(f"node {nid} ({class_type}): {msg}", nid, None, class_type)


def _link_problem(registry: NodeRegistry, nodes: dict, link: list, spec) -> str | None:
    """Why a link cannot feed an input (slot out of range, types that do not match), or None."""
    src = nodes.get(str(link[0]))
    src_cls = registry.get(src["class_type"]) if src else None
    if src_cls is None or spec is None:
        return None
    returns = tuple(getattr(src_cls, "RETURN_TYPES", ()))
    slot = link[1]
    if not 0 <= slot < len(returns):
        return f"linked to output {slot} of node {link[0]} ({src['class_type']}), which has {len(returns)} outputs"
    have, want = returns[slot], spec[0]
    if isinstance(have, (list, tuple)) or have in ("*", "COMBO"):
        return None
    if isinstance(want, (list, tuple)):
        ok = have in ("STRING",)
        shown = "a list of values"
    else:
        ok = want == "*" or have == want or (want == "FLOAT" and have == "INT") or \
            have in str(want).split(",") or want in str(have).split(",")
        shown = want
    if ok:
        return None
    return (f"linked to node {link[0]} ({src['class_type']}) output {slot}, a {have}, but it takes {shown} "
            f"(return type mismatch)")


def _validate_inputs_hook(cls: type, node: dict, nid: str) -> None:
    """ComfyUI's ``VALIDATE_INPUTS(**values)`` convention: True, or a message naming what is wrong."""
    hook = getattr(cls, "VALIDATE_INPUTS", None)
    if hook is None:
        return
    params = inspect.signature(hook).parameters
    values = {k: v for k, v in node["inputs"].items() if k in params and not _is_link(v) and not isinstance(v, _Missing)}
    if any(p.default is inspect.Parameter.empty and k not in values and p.kind == p.POSITIONAL_OR_KEYWORD
           for k, p in params.items()):
        return  # a linked value: checked when the node runs
    result = hook(**values)
    if result is not True:
        message = str(result)
        m = _INPUT_PREFIX.match(message)
        raise WorkflowError(f"node {nid} ({node['class_type']}) input {message}", nid,
                            m.group(1) if m else None, node["class_type"])


def _declared_inputs(cls: type) -> set[str]:
    types = cls.INPUT_TYPES()
    return set(types.get("required", {})) | set(types.get("optional", {}))


def execute(prompt: Prompt, registry: NodeRegistry | None = None,
            on_node: Callable[[str, str], None] | None = None,
            notice: Callable[[str], None] | None = None,
            on_output: Callable[[str, dict], None] | None = None,
            validate_only: bool = False, on_plan: Callable[[list[str]], None] | None = None) -> dict[str, Any]:
    """Run every output node and what it depends on. Returns node id -> outputs."""
    from ..workflows.widgets import check_widget, widget_spec
    from .registry import node_registry

    registry = registry if registry is not None else node_registry()
    for nid, n in prompt.nodes.items():
        if n["class_type"] not in registry:
            raise WorkflowError(_unknown_type(nid, n["class_type"], registry), nid, None, n["class_type"])
    targets = _output_nodes(prompt, registry)
    if not targets:
        raise WorkflowError("workflow: no output node (SaveImage, PreviewImage, ...): nothing would be produced")
    for nid, n in prompt.nodes.items():
        if not isinstance(n.get("inputs"), dict):
            raise WorkflowError(f"node {nid}: 'inputs' must be an object", nid)
    order = _order(prompt, targets)
    api = {nid: {"class_type": n["class_type"],
                 "inputs": {k: (v if not isinstance(v, _Missing) else None) for k, v in n["inputs"].items()}}
           for nid, n in prompt.nodes.items()}
    # validate everything before running anything: no half-written outputs on bad input
    for nid in order:
        node = prompt.nodes[nid]
        cls = registry[node["class_type"]]
        types = cls.INPUT_TYPES()
        for name, value in node["inputs"].items():
            if isinstance(value, _Missing):
                raise WorkflowError(f"node {nid} ({node['class_type']}) input {name!r}: required input is not "
                                    f"connected ({value!r})", nid, name, node["class_type"])
            if _is_link(value) and name in _declared_inputs(cls):
                problem = _link_problem(registry, prompt.nodes, value, widget_spec(cls, name))
                if problem is not None:
                    raise WorkflowError(f"node {nid} ({node['class_type']}) input {name!r}: {problem}", nid, name,
                                        node["class_type"])
            if not _is_link(value) and name in _declared_inputs(cls):
                try:
                    check_widget(cls, name, value)
                except ValueError as exc:
                    raise WorkflowError(f"node {nid} ({node['class_type']}) input {exc}", nid, name,
                                        node["class_type"]) from None
        _validate_inputs_hook(cls, node, nid)
        for name, spec in types.get("required", {}).items():
            if name not in node["inputs"]:
                kind = spec[0]
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if (isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES) and "default" in opts:
                    node["inputs"][name] = opts["default"]
                elif isinstance(kind, (list, tuple)) and kind:
                    node["inputs"][name] = kind[0]
                else:
                    raise WorkflowError(f"node {nid} ({node['class_type']}) input {name!r}: required input is missing",
                                        nid, name, node["class_type"])
    if validate_only:
        return {}
    if on_plan is not None:
        on_plan(order)
    results: dict[str, Any] = {}
    for nid in order:
        node = prompt.nodes[nid]
        cls = registry[node["class_type"]]
        declared = _declared_inputs(cls)
        ignored = sorted(set(node["inputs"]) - declared)
        if ignored and notice is not None:
            notice(f"node {nid} ({node['class_type']}): ignoring inputs it does not have: {', '.join(ignored)}")
        kwargs = {}
        for name, value in node["inputs"].items():
            if name not in declared:
                continue
            if _is_link(value):
                src, slot = str(value[0]), value[1]
                outs = results[src]
                if not isinstance(outs, (tuple, list)) or slot >= len(outs):
                    raise WorkflowError(f"node {nid} input {name!r}: node {src} has no output {slot}", nid, name)
                value = outs[slot]
                spec = widget_spec(cls, name)
                if spec is not None and (isinstance(spec[0], (list, tuple)) or spec[0] in WIDGET_TYPES):
                    try:
                        check_widget(cls, name, value)
                    except ValueError as exc:
                        raise WorkflowError(f"node {nid} ({node['class_type']}) input {exc}", nid, name,
                                            node["class_type"]) from None
            kwargs[name] = value
        hidden = cls.INPUT_TYPES().get("hidden", {})
        for name, kind in hidden.items():
            if kind == "PROMPT":
                kwargs[name] = api
            elif kind == "EXTRA_PNGINFO":
                kwargs[name] = {"workflow": prompt.workflow} if prompt.workflow is not None else None
            elif kind == "UNIQUE_ID":
                kwargs[name] = nid
        if on_node is not None:
            on_node(nid, node["class_type"])
        try:
            out = getattr(cls(), cls.FUNCTION)(**kwargs)
        except (WorkflowError, InterruptedError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is reported against its node
            raise node_error(exc, nid, node["class_type"], declared) from exc
        if isinstance(out, dict):
            if out.get("ui") and on_output is not None:
                on_output(nid, out["ui"])
            out = out.get("result", ())
        results[nid] = tuple(out) if out is not None else ()
    return results
