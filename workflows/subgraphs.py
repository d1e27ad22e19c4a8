"""Subgraphs in saved workflows (ComfyUI frontend 1.2x+): ``definitions.subgraphs`` holds each subgraph's own nodes,
links, inputs and outputs; a node whose ``type`` is a subgraph's id is an instance of it.

:func:`flatten` turns such a workflow into an equivalent flat one, the way the frontend's ``graphToPrompt`` does:
every inner node gets the execution id ``instance:inner`` (``12:5``; nested: ``12:7:5``), a subgraph input becomes a
pass-through (``Reroute``) to what feeds the instance's input, or a constant (``PrimitiveNode``) holding the instance's
promoted widget value, and a subgraph output becomes a pass-through from the inner node that feeds it. Muted or
bypassed instances stay as one node with the instance's slots, so bypassing works by type as for any node.
"""
from __future__ import annotations

from typing import Any

__all__ = ["flatten", "has_subgraphs", "definitions", "find_node", "SubgraphError", "INPUT_NODE", "OUTPUT_NODE",
           "MAX_DEPTH"]

#: the ids of a subgraph's input and output nodes in its links
INPUT_NODE, OUTPUT_NODE = -10, -20
#: subgraph instances nested deeper than this are refused (the frontend refuses cycles; this bounds the work)
MAX_DEPTH = 32


class SubgraphError(ValueError):
    """A subgraph definition or instance that cannot be read (the message names it)."""


def definitions(wf: dict) -> dict[str, dict]:
    """The workflow's subgraph definitions by id ({} when it has none)."""
    defs = wf.get("definitions") if isinstance(wf, dict) else None
    subs = defs.get("subgraphs") if isinstance(defs, dict) else None
    if subs is None:
        return {}
    if not isinstance(subs, list):
        raise SubgraphError("workflow: 'definitions.subgraphs' must be a list")
    out = {}
    for sub in subs:
        if not isinstance(sub, dict) or not isinstance(sub.get("id"), str) or not isinstance(sub.get("nodes"), list):
            raise SubgraphError(f"workflow: malformed subgraph definition {str(sub)[:80]} (needs an 'id' and 'nodes')")
        out[sub["id"]] = sub
    return out


def has_subgraphs(wf: Any) -> bool:
    return isinstance(wf, dict) and bool(definitions(wf))


def _link_fields(link: Any) -> tuple | None:
    """(id, origin_id, origin_slot, target_id, target_slot, type) of a link in either form."""
    if isinstance(link, dict):
        return tuple(link.get(k) for k in ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"))
    if isinstance(link, list) and len(link) >= 5:
        return tuple(list(link[:6]) + [None] * (6 - len(link[:6])))
    return None


def _promoted_values(instance: dict, sub: dict) -> dict[int, Any]:
    """Instance input index -> the promoted widget value it holds (its ``widgets_values`` follow the inputs that carry
    a widget, in order)."""
    values = instance.get("widgets_values")
    values = values if isinstance(values, list) else []
    out, k = {}, 0
    for i, slot in enumerate(instance.get("inputs") or []):
        if isinstance(slot, dict) and slot.get("widget") is not None:
            if k < len(values) and values[k] is not None:
                out[i] = values[k]
            k += 1
    return out


def _proxy_widgets(instance: dict) -> list[tuple[str, str, Any]]:
    """Older frontends' promoted widgets: ``properties.proxyWidgets`` [[inner node id, widget name], ...] with the
    values in the instance's ``widgets_values``, same order."""
    props = instance.get("properties")
    proxies = props.get("proxyWidgets") if isinstance(props, dict) else None
    values = instance.get("widgets_values")
    if not isinstance(proxies, list) or not isinstance(values, list):
        return []
    out = []
    for entry, value in zip(proxies, values):
        if isinstance(entry, list) and len(entry) == 2 and str(entry[0]) != "-1" and value is not None:
            out.append((str(entry[0]), str(entry[1]), value))
    return out


def flatten(wf: dict, widget_names=None) -> dict:
    """A copy of editor-format ``wf`` with every subgraph instance expanded (see the module docstring); a workflow
    without subgraphs is returned as it is. ``widget_names(node_type)`` lists a node type's widget names in
    ``widgets_values`` order (for older frontends' promoted widgets); without it those are left to the inner node."""
    defs = definitions(wf)
    if not defs:
        return wf
    nodes_out: list[dict] = []
    links_out: list[list] = []

    def emit(graph_nodes: list, graph_links: list, prefix: str, io_in: dict, io_out: str | None,
             chain: tuple) -> None:
        """One graph level. ``prefix`` is the instance path ("" at the top, "12:" inside instance 12); ``io_in[k]``
        is the pass-through that feeds subgraph input k (None: nothing does); ``io_out`` prefixes the output
        pass-throughs of the instance this level belongs to."""
        where = f" in subgraph {chain[-1]!r}" if chain else ""
        if len(chain) > MAX_DEPTH:
            raise SubgraphError(f"subgraph {chain[-1]!r}: instances nested more than {MAX_DEPTH} deep")
        nodes = [n for n in graph_nodes if isinstance(n, dict)]
        active = {n.get("id"): defs[n["type"]] for n in nodes
                  if isinstance(n.get("type"), str) and n["type"] in defs and n.get("mode", 0) not in (2, 4)}
        link_id = (lambda lid: f"{prefix}{lid}") if prefix else (lambda lid: lid)
        dropped = set()
        for link in graph_links or []:
            f = _link_fields(link)
            if f is None:
                raise SubgraphError(f"workflow: malformed link {str(link)[:80]}{where}")
            lid, o_id, o_slot, t_id, t_slot, typ = f
            if o_id == INPUT_NODE:
                if io_in.get(o_slot) is None:
                    dropped.add(lid)  # nothing feeds that subgraph input: the inner widget keeps its own value
                    continue
                origin = (io_in[o_slot], 0)
            elif o_id in active:
                origin = (f"{prefix}{o_id}:out{o_slot}", 0)
            else:
                origin = (f"{prefix}{o_id}" if prefix else o_id, o_slot)
            if t_id == OUTPUT_NODE:
                if io_out is None:
                    continue
                target = (f"{io_out}out{t_slot}", 0)
                nodes_out.append({"id": target[0], "type": "Reroute", "mode": 0,
                                  "inputs": [{"name": "", "type": "*", "link": link_id(lid)}],
                                  "outputs": [{"name": "", "type": typ or "*"}]})
            elif t_id in active:
                target = (f"{prefix}{t_id}:in{t_slot}", 0)
            else:
                target = (f"{prefix}{t_id}" if prefix else t_id, t_slot)
            links_out.append([link_id(lid), origin[0], origin[1], target[0], target[1], typ])
        for node in nodes:
            nid = node.get("id")
            if nid not in active:
                copy = {**node, "id": f"{prefix}{nid}" if prefix else nid}
                copy["inputs"] = [{**i, "link": None if i.get("link") is None or i.get("link") in dropped
                                   else link_id(i["link"])} if isinstance(i, dict) else i
                                  for i in node.get("inputs") or []]
                nodes_out.append(copy)
                continue
            sub = active[nid]
            name = sub.get("name") or sub["id"]
            if sub["id"] in chain:
                raise SubgraphError(f"subgraph {name!r} contains an instance of itself")
            inner = f"{prefix}{nid}:"
            promoted = _promoted_values(node, sub)
            feeds: dict = {}
            for k, slot in enumerate(node.get("inputs") or []):
                if not isinstance(slot, dict):
                    continue
                pid = f"{inner}in{k}"
                if slot.get("link") is not None and slot["link"] not in dropped:
                    nodes_out.append({"id": pid, "type": "Reroute", "mode": 0,
                                      "inputs": [{"name": "", "type": "*", "link": link_id(slot["link"])}],
                                      "outputs": [{"name": "", "type": slot.get("type", "*")}]})
                    feeds[k] = pid
                elif k in promoted:
                    nodes_out.append({"id": pid, "type": "PrimitiveNode", "mode": 0,
                                      "widgets_values": [promoted[k]], "outputs": [{"name": "", "type": "*"}]})
                    feeds[k] = pid
            inner_nodes = []
            proxies = _proxy_widgets(node)
            for n in sub["nodes"]:
                if not isinstance(n, dict):
                    continue
                for target, wname, value in proxies:
                    if str(n.get("id")) == target and widget_names is not None and \
                            isinstance(n.get("widgets_values"), list):
                        names = widget_names(n.get("type")) or []
                        if wname in names and names.index(wname) < len(n["widgets_values"]):
                            n = {**n, "widgets_values": list(n["widgets_values"])}
                            n["widgets_values"][names.index(wname)] = value
                inner_nodes.append(n)
            emit(inner_nodes, sub.get("links") or [], inner, feeds, inner, chain + (sub["id"],))

    emit(wf.get("nodes") or [], wf.get("links") or [], "", {}, None, ())
    flat = {k: v for k, v in wf.items() if k not in ("nodes", "links", "definitions")}
    flat["nodes"], flat["links"] = nodes_out, links_out
    return flat


def find_node(wf: dict, node_id: Any) -> tuple[dict | None, dict | None, dict | None]:
    """(node, its subgraph definition or None, the instance it sits in or None) for an execution id such as ``12:5``
    (nested ids follow instances down); (None, None, None) when there is no such node."""
    parts = str(node_id).split(":")
    defs = definitions(wf) if isinstance(wf, dict) else {}
    graph_nodes = wf.get("nodes") or [] if isinstance(wf, dict) else []
    sub = instance = None
    for depth, part in enumerate(parts):
        node = next((n for n in graph_nodes if isinstance(n, dict) and str(n.get("id")) == part), None)
        if node is None:
            return None, None, None
        if depth == len(parts) - 1:
            return node, sub, instance
        sub = defs.get(node.get("type"))
        if sub is None:
            return None, None, None
        instance, graph_nodes = node, sub.get("nodes") or []
    return None, None, None
