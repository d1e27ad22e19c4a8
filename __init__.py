"""Stepwise: a ComfyUI sampler pack with an exact, fast, shared sampling core.

Dropped into ``ComfyUI/custom_nodes/`` this package registers its nodes; installed with pip it is
importable as ``stepwise_sampler``. Only relative imports inside: ComfyUI has its own ``nodes``.
"""
from __future__ import annotations

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__version__ = "0.1.0"
WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY", "__version__"]
