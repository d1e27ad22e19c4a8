"""Stepwise's own routes in ``stepwise serve`` (inside ComfyUI the same answers come from ComfyUI's server):
``/stepwise/sigmas`` (the plot), ``/stepwise/migrate``, and the example the editor opens."""
from __future__ import annotations

from aiohttp import web

from ...host.api import migrate_response, sigmas_response
from .hygiene import json_body

__all__ = ["add_stepwise_routes", "DEFAULT_EXAMPLE"]

DEFAULT_EXAMPLE = "seamless_split"  # examples/<name>.json: what a fresh editor opens


def add_stepwise_routes(both) -> None:
    @both("GET", "/stepwise/default_workflow")
    async def default_workflow(request):
        """The graph the editor opens in `stepwise serve` instead of the frontend's stock default."""
        from ...examples import EXAMPLES_DIR

        return web.FileResponse(EXAMPLES_DIR / f"{DEFAULT_EXAMPLE}.json", headers={"Cache-Control": "no-cache"})

    @both("POST", "/stepwise/migrate")
    async def stepwise_migrate(request):
        status, out = migrate_response(await json_body(request, dict, "migrate request"))
        return web.json_response(out, status=status)

    @both("GET", "/stepwise/sigmas")
    async def stepwise_sigmas(request):
        status, body = sigmas_response(request.rel_url.query)
        return web.json_response(body, status=status)

    @both("POST", "/stepwise/flatten")
    async def stepwise_flatten(request):
        """An editor-format graph as the API prompt `stepwise run` executes (subgraphs flattened to ``12:5`` ids):
        the same answer as the frontend's own "queue" conversion, for checking one against the other."""
        from ..workflow import WorkflowError, ui_to_prompt

        graph = await json_body(request, dict, "workflow")
        if not isinstance(graph.get("nodes"), list):
            return web.json_response({"error": "workflow: expected the editor's format (nodes/links)"}, status=400)
        try:
            prompt = ui_to_prompt(graph)
        except WorkflowError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        nodes = {nid: {"class_type": n["class_type"],
                       "inputs": {k: v for k, v in n["inputs"].items() if not type(v).__name__ == "_Missing"}}
                 for nid, n in prompt.nodes.items()}
        return web.json_response({"prompt": nodes})
