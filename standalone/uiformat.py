"""Building workflows in the editor's (UI) format, as ComfyUI saves them."""
from __future__ import annotations

import copy
import uuid
from typing import Any

__all__ = ["GraphBuilder", "wrap_in_subgraph", "fitted_view"]

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


class GraphBuilder:
    """Add nodes (with their widget values) and links; ``to_json()`` gives a loadable workflow."""

    def __init__(self, registry: dict[str, type]) -> None:
        self.registry = registry
        self.nodes: list[dict] = []
        self.links: list[list] = []
        self.groups: list[dict] = []

    def node(self, class_type: str, widgets: list[Any] | None = None, pos=(0, 0), title: str | None = None,
             size=(320, 180)) -> dict:
        cls = self.registry[class_type]
        types = cls.INPUT_TYPES()
        inputs = []
        for section in ("required", "optional"):
            for name, spec in types.get(section, {}).items():
                kind = spec[0]
                if isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES:
                    continue
                inputs.append({"name": name, "type": kind, "link": None})
        outputs = [{"name": n, "type": t, "links": [], "slot_index": i}
                   for i, (t, n) in enumerate(zip(cls.RETURN_TYPES, getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)))]
        node = {"id": len(self.nodes) + 1, "type": class_type, "pos": list(pos), "size": list(size), "flags": {},
                "order": len(self.nodes), "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": class_type}, "widgets_values": list(widgets or [])}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def link(self, src: dict, slot: int, dst: dict, input_name: str) -> None:
        link_id = len(self.links) + 1
        ltype = src["outputs"][slot]["type"]
        target = next((i for i in dst["inputs"] if i["name"] == input_name), None)
        if target is None:  # a widget converted to an input
            target = {"name": input_name, "type": ltype, "link": None, "widget": {"name": input_name}}
            dst["inputs"].append(target)
        target["link"] = link_id
        src["outputs"][slot]["links"].append(link_id)
        slot_index = dst["inputs"].index(target)
        self.links.append([link_id, src["id"], slot, dst["id"], slot_index, ltype])

    def group(self, title: str, bounding: tuple[int, int, int, int], color: str = "#3f789e") -> None:
        self.groups.append({"title": title, "bounding": list(bounding), "color": color, "font_size": 24, "flags": {}})

    def to_json(self) -> dict:
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": self.groups, "config": {}, "extra": {"ds": fitted_view(self.nodes)},
                "version": 0.4}


#: the editor's canvas a saved view is fitted to: a 1500 x 950 window less its toolbar and side bar
VIEW_WIDTH, VIEW_HEIGHT, VIEW_LEFT, VIEW_TOP = 1400, 780, 60, 110


def fitted_view(nodes: list[dict]) -> dict:
    """``extra.ds`` that shows every node (titles included) below the editor's toolbar, at most at scale 1."""
    if not nodes:
        return {"scale": 1.0, "offset": [0, 0]}
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] - 30 for n in nodes)
    x1 = max(n["pos"][0] + n.get("size", [320, 180])[0] for n in nodes)
    y1 = max(n["pos"][1] + n.get("size", [320, 180])[1] for n in nodes)
    scale = round(min(1.0, VIEW_WIDTH / max(1.0, x1 - x0), VIEW_HEIGHT / max(1.0, y1 - y0)), 3)
    return {"scale": scale, "offset": [round(VIEW_LEFT / scale - x0, 1), round(VIEW_TOP / scale - y0, 1)]}


def wrap_in_subgraph(wf: dict, inner_ids: set, promote: tuple = (), instance_id: int = 100,
                     title: str = "Sampler group") -> dict:
    """``wf`` with nodes ``inner_ids`` moved into one subgraph, in the frontend's saved format (``definitions.subgraphs``,
    input/output nodes -10/-20, an instance typed by the subgraph's id): links crossing the boundary become subgraph
    inputs/outputs; ``promote`` lists (inner node id, widget[, type]) shown on the instance as promoted widgets."""
    wf = copy.deepcopy(wf)
    sub_id = str(uuid.UUID(int=instance_id))
    nodes = {n["id"]: n for n in wf["nodes"]}
    inner = [nodes[i] for i in sorted(inner_ids)]
    links = {l[0]: l for l in wf["links"]}
    sub_links, outer_links = [], []
    sub_inputs, sub_outputs = [], []
    inst_inputs, inst_outputs = [], []
    next_link = max(links) + 1
    for l in wf["links"]:
        lid, o, os_, t, ts, typ = l
        if o in inner_ids and t in inner_ids:
            sub_links.append({"id": lid, "origin_id": o, "origin_slot": os_, "target_id": t, "target_slot": ts,
                              "type": typ})
        elif t in inner_ids:  # into the subgraph: a subgraph input fed from outside
            k = len(sub_inputs)
            name = nodes[t]["inputs"][ts]["name"]
            sub_inputs.append({"id": str(uuid.UUID(int=1000 + k)), "name": name, "type": typ, "linkIds": [lid]})
            sub_links.append({"id": lid, "origin_id": -10, "origin_slot": k, "target_id": t, "target_slot": ts,
                              "type": typ})
            outer_links.append([next_link, o, os_, instance_id, k, typ])
            inst_inputs.append({"name": name, "type": typ, "link": next_link})
            for n in wf["nodes"]:
                for out in n.get("outputs") or []:
                    if lid in (out.get("links") or []):
                        out["links"] = [next_link if x == lid else x for x in out["links"]]
            next_link += 1
        elif o in inner_ids:  # out of the subgraph
            k = next((i for i, s in enumerate(sub_outputs) if s["_from"] == (o, os_)), None)
            if k is None:
                k = len(sub_outputs)
                sub_outputs.append({"id": str(uuid.UUID(int=2000 + k)), "name": typ, "type": typ, "linkIds": [],
                                    "_from": (o, os_)})
                sub_links.append({"id": next_link, "origin_id": o, "origin_slot": os_, "target_id": -20,
                                  "target_slot": k, "type": typ})
                sub_outputs[k]["linkIds"].append(next_link)
                inst_outputs.append({"name": typ, "type": typ, "links": []})
                next_link += 1
            outer_links.append([lid, instance_id, k, t, ts, typ])
            inst_outputs[k]["links"].append(lid)
        else:
            outer_links.append(l)
    promoted_values = []
    for node_id, widget, *rest in promote:
        wtype = rest[0] if rest else "INT"
        node = nodes[node_id]
        k = len(sub_inputs)
        slot = len(node.setdefault("inputs", []))
        kind = wtype
        node["inputs"].append({"name": widget, "type": kind, "widget": {"name": widget}, "link": next_link})
        sub_inputs.append({"id": str(uuid.UUID(int=1000 + k)), "name": widget, "type": kind, "linkIds": [next_link]})
        sub_links.append({"id": next_link, "origin_id": -10, "origin_slot": k, "target_id": node_id,
                          "target_slot": slot, "type": kind})
        inst_inputs.append({"name": widget, "type": kind, "widget": {"name": widget}, "link": None})
        promoted_values.append(None)
        next_link += 1
    for s in sub_outputs:
        s.pop("_from")
    instance = {"id": instance_id, "type": sub_id, "pos": [0, 0], "size": [300, 200], "flags": {}, "order": 0,
                "mode": 0, "inputs": inst_inputs, "outputs": inst_outputs, "properties": {},
                "widgets_values": promoted_values}
    wf["nodes"] = [n for n in wf["nodes"] if n["id"] not in inner_ids] + [instance]
    wf["links"] = outer_links
    wf["last_link_id"] = next_link
    wf["definitions"] = {"subgraphs": [{
        "id": sub_id, "version": 1, "revision": 0, "name": title,
        # the frontend's schema requires the subgraph's id counters (1.27 refuses the workflow without them)
        "state": {"lastGroupId": 0, "lastNodeId": max([n["id"] for n in inner] + [0]),
                  "lastLinkId": max([l["id"] for l in sub_links] + [0]), "lastRerouteId": 0},
        "inputNode": {"id": -10, "bounding": [0, 0, 120, 60]}, "outputNode": {"id": -20, "bounding": [0, 0, 120, 60]},
        "inputs": sub_inputs, "outputs": sub_outputs, "widgets": [], "nodes": inner, "links": sub_links,
        "groups": [], "config": {}, "extra": {}}]}
    return wf
