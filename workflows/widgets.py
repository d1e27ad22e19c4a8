"""Widget validation driven by a node's own INPUT_TYPES (ranges, combos, types)."""
from __future__ import annotations

import math
from typing import Any

__all__ = ["check_widget", "check_widgets", "widget_spec", "describe", "is_widget"]

_SCALAR_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def is_widget(spec: tuple | None) -> bool:
    """A widget input (combo or scalar), as opposed to a socket."""
    return spec is not None and (isinstance(spec[0], (list, tuple)) or spec[0] in _SCALAR_TYPES or spec[0] == "COMBO")


def describe(value: Any) -> str:
    """A short description of a value for error messages: literals as themselves, objects by type."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {type(value).__name__} of shape {tuple(shape)}"
    return f"a {type(value).__name__} object"


def widget_spec(node_cls: type, name: str) -> tuple[Any, dict] | None:
    types = node_cls.INPUT_TYPES()
    for section in ("required", "optional"):
        spec = types.get(section, {}).get(name)
        if spec is not None:
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            return kind, opts
    return None


def check_widget(node_cls: type, name: str, value: Any) -> Any:
    """Raise ``ValueError`` naming the input when ``value`` is not allowed by the node's INPUT_TYPES."""
    spec = widget_spec(node_cls, name)
    if spec is None:
        return value
    kind, opts = spec
    if kind == "COMBO":
        kind = list(opts.get("options", []))
    if isinstance(kind, (list, tuple)):
        if not isinstance(value, (str, int, float, bool)) or value not in kind:
            shown = ", ".join(map(str, kind))
            raise ValueError(f"{name}: {describe(value)} is not one of the allowed values: {shown}")
        return value
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: expected an integer, got {describe(value)}")
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number, got {describe(value)}")
    elif kind == "STRING":
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected a string, got {describe(value)}")
        return value
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false, got {describe(value)}")
        return value
    else:
        return value
    lo, hi = opts.get("min"), opts.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name}: {describe(value)} is outside the allowed range {lo}..{hi}")
    return value


def check_widgets(node_cls: type, values: dict) -> None:
    for name, value in values.items():
        spec = widget_spec(node_cls, name)
        if spec is not None and (isinstance(spec[0], (list, tuple)) or spec[0] in _SCALAR_TYPES or spec[0] == "COMBO"):
            check_widget(node_cls, name, value)
