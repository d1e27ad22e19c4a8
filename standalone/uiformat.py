"""Building workflows in the editor's (UI) format, as ComfyUI saves them."""
from __future__ import annotations

from typing import Any

__all__ = ["GraphBuilder"]

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
                "links": self.links, "groups": self.groups, "config": {}, "extra": {"ds": {"scale": 0.8,
                "offset": [0, 0]}}, "version": 0.4}
