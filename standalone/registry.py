"""The node types the standalone runtime can execute: our nodes plus core-node stand-ins."""
from __future__ import annotations

from ..nodes import NODE_CLASS_MAPPINGS
from .core_nodes import CORE_NODES
from .efficiency_nodes import EFFICIENCY_NODES

__all__ = ["node_registry"]


def node_registry() -> dict[str, type]:
    return {**CORE_NODES, **EFFICIENCY_NODES, **NODE_CLASS_MAPPINGS}
