"""Inside ComfyUI: register ``GET /stepwise/sigmas`` on ComfyUI's server (also served under /api)."""
from __future__ import annotations

from typing import Any

from .schedule_api import sigmas_response

__all__ = ["register_routes"]


def register_routes(prompt_server: Any) -> None:
    from aiohttp import web

    @prompt_server.routes.get("/stepwise/sigmas")
    async def stepwise_sigmas(request):
        status, body = sigmas_response(request.rel_url.query)
        return web.json_response(body, status=status)
