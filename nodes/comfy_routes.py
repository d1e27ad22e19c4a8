"""Inside ComfyUI: register ``GET /stepwise/sigmas`` and ``POST /stepwise/migrate`` on ComfyUI's server (also
served under /api)."""
from __future__ import annotations

from typing import Any

from .schedule_api import migrate_response, sigmas_response

__all__ = ["register_routes"]


def register_routes(prompt_server: Any) -> None:
    from aiohttp import web

    @prompt_server.routes.get("/stepwise/sigmas")
    async def stepwise_sigmas(request):
        status, body = sigmas_response(request.rel_url.query)
        return web.json_response(body, status=status)

    @prompt_server.routes.post("/stepwise/migrate")
    async def stepwise_migrate(request):
        try:
            body = await request.json()
        except Exception:  # noqa: BLE001 - any unreadable body is the client's error
            return web.json_response({"error": "body: not JSON"}, status=400)
        status, out = migrate_response(body)
        return web.json_response(out, status=status)
