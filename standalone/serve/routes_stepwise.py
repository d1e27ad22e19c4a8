"""Stepwise's own routes in ``stepwise serve`` (inside ComfyUI the same answers come from ComfyUI's server):
``/stepwise/sigmas`` (the plot), ``/stepwise/migrate``, and the example the editor opens."""
from __future__ import annotations

from aiohttp import web

from ...nodes.schedule_api import migrate_response, sigmas_response
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
