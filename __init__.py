"""Stepwise: a ComfyUI sampler pack with an exact, fast, shared sampling core.

Dropped into ``ComfyUI/custom_nodes/`` this package registers its nodes; installed with pip it is
importable as ``stepwise_sampler``. Only relative imports inside: ComfyUI has its own ``nodes``.
"""
from __future__ import annotations

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .version import __version__

WEB_DIRECTORY = "./js"


def _register_comfyui_routes() -> None:
    """Inside ComfyUI (its ``server`` module is loaded and running), add our routes and node replacements."""
    import sys

    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is not None and "comfy" in sys.modules:
        from .host import register_replacements
        from .host.comfy import register_routes

        register_routes(instance)
        register_replacements(instance)


_register_comfyui_routes()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY", "__version__"]
