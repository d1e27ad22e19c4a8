"""What the ComfyUI frontend needs from a server besides prompts and files: the WebSocket, the page, node
definitions, extensions, settings, users, system stats, feature flags, and the empty answers of the services
this server does not have."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

from aiohttp import WSMsgType, web

from .hygiene import json_body
from .state import ServerState

__all__ = ["add_frontend_routes", "node_info", "SERVER_FEATURES", "JS_DIR"]

JS_DIR = Path(__file__).resolve().parent.parent.parent / "js"
SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": 100 * 1024 * 1024, "node_replacements": True}


def node_info(name: str, cls: type) -> dict:
    """One entry of ``/object_info``, in ComfyUI's format."""
    from ...nodes import NODE_DISPLAY_NAME_MAPPINGS

    types = cls.INPUT_TYPES()
    returns = tuple(getattr(cls, "RETURN_TYPES", ()))
    return {
        "input": types, "input_order": {k: list(v.keys()) for k, v in types.items()},
        "output": returns, "output_is_list": [False] * len(returns),
        "output_name": tuple(getattr(cls, "RETURN_NAMES", returns)), "name": name,
        "display_name": NODE_DISPLAY_NAME_MAPPINGS.get(name, name),
        "description": getattr(cls, "DESCRIPTION", "") or "", "python_module": "stepwise_sampler",
        "category": getattr(cls, "CATEGORY", "sd"), "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
        "search_aliases": list(getattr(cls, "SEARCH_ALIASES", [])),
    }


def _constant(value):
    async def handler(request):
        return web.json_response(value)
    return handler


def add_frontend_routes(routes: web.RouteTableDef, both, state: ServerState, root: Path) -> None:
    @routes.get("/ws")
    async def websocket(request):
        ws = web.WebSocketResponse(max_msg_size=1024 * 1024)
        await ws.prepare(request)
        sid = (request.rel_url.query.get("clientId") or uuid.uuid4().hex)[:128]
        state.sockets[sid] = ws
        state.client_features[sid] = {}
        try:
            await ws.send_str(json.dumps({"type": "status", "data": {"status": state.queue_info(), "sid": sid}}))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except (json.JSONDecodeError, RecursionError):
                        continue
                    if isinstance(data, dict) and data.get("type") == "feature_flags":
                        flags = data.get("data")
                        state.client_features[sid] = flags if isinstance(flags, dict) and len(flags) < 256 else {}
                        await ws.send_str(json.dumps({"type": "feature_flags", "data": SERVER_FEATURES}))
        finally:
            state.sockets.pop(sid, None)
            state.client_features.pop(sid, None)
        return ws

    @routes.get("/favicon.ico")
    async def favicon(request):
        return web.Response(status=204)

    @routes.get("/user.css")
    async def user_css(request):
        return web.Response(text="", content_type="text/css")

    @routes.get("/")
    async def index(request):
        return web.FileResponse(root / "index.html", headers={"Cache-Control": "no-cache"})

    @both("GET", "/object_info")
    async def object_info(request):
        return web.json_response({name: node_info(name, cls) for name, cls in state.registry.items()})

    @both("GET", "/object_info/{node_class}")
    async def object_info_one(request):
        name = request.match_info["node_class"]
        cls = state.registry.get(name)
        return web.json_response({name: node_info(name, cls)} if cls else {})

    @both("GET", "/extensions")
    async def extensions(request):
        core = sorted("/" + p.relative_to(root).as_posix() for p in (root / "extensions").rglob("*.js"))
        ours = sorted("/extensions/stepwise/" + p.relative_to(JS_DIR).as_posix() for p in JS_DIR.glob("*.js"))
        return web.json_response(core + ours)

    @both("GET", "/system_stats")
    async def system_stats(request):
        import platform
        import sys

        import torch

        return web.json_response({"system": {"os": platform.system(), "ram_total": 0, "ram_free": 0,
                                             "comfyui_version": "stepwise-serve", "python_version": sys.version,
                                             "pytorch_version": torch.__version__, "embedded_python": False,
                                             "required_frontend_version": state.frontend_version,
                                             "argv": ["stepwise", "--disable-api-nodes"]},
                                  "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 0,
                                               "vram_free": 0, "torch_vram_total": 0, "torch_vram_free": 0}]})

    @both("GET", "/features")
    async def features(request):
        return web.json_response(SERVER_FEATURES)

    @both("GET", "/node_replacements")
    async def node_replacements(request):
        from ...workflows.replacements import node_replacements as entries

        out: dict[str, list] = {}
        for entry in entries():
            out.setdefault(entry["old_node_id"], []).append(entry)
        return web.json_response(out)

    @both("GET", "/users")
    async def users(request):
        return web.json_response({"storage": "server", "migrated": True})

    @both("GET", "/settings")
    async def get_settings(request):
        return web.json_response(state.settings)

    @both("POST", "/settings")
    async def post_settings(request):
        body = await json_body(request, dict, "settings", 1024 * 1024)
        state.update_settings(body)
        return web.Response(status=200)

    @both("GET", "/settings/{id}")
    async def get_setting(request):
        return web.json_response(state.settings.get(request.match_info["id"]))

    @both("POST", "/settings/{id}")
    async def post_setting(request):
        value = await json_body(request, object, "setting", 1024 * 1024)
        state.update_settings({request.match_info["id"][:256]: value})
        return web.Response(status=200)

    @both("GET", "/userdata")
    async def userdata(request):
        return web.json_response([])

    @both("GET", "/v2/userdata")
    async def userdata2(request):
        return web.json_response([])

    @both("GET", "/userdata/{file}")
    async def userdata_file(request):
        name = request.match_info["file"]
        if name.endswith("templates.json"):  # the editor's node templates: a list
            return web.json_response([])
        if name.endswith(".json"):
            return web.json_response({})
        return web.Response(text="", content_type="text/css" if name.endswith(".css") else "text/plain")

    @both("POST", "/userdata/{file}")
    async def userdata_write(request):
        return web.json_response({"path": request.match_info["file"][:256]})

    from ...examples import EXAMPLES_DIR

    def example_names() -> list[str]:
        return sorted(p.stem for p in EXAMPLES_DIR.glob("*.json"))

    @both("GET", "/workflow_templates")
    async def workflow_templates(request):
        """As ComfyUI lists a custom node pack's examples: {pack: [names]} (the templates dialog)."""
        return web.json_response({"stepwise": example_names()})

    @routes.get("/api/workflow_templates/stepwise/{name}")
    async def workflow_template_file(request):
        """An example (NAME.json) or its thumbnail (NAME.jpg), as ComfyUI serves a pack's example folder."""
        name = request.match_info["name"]
        stem, _, ext = name.rpartition(".")
        if ext not in ("json", "jpg") or stem not in example_names():
            return web.json_response({"error": f"{name[:80]}: not an example of this pack"}, status=404)
        path = EXAMPLES_DIR / name
        if not path.is_file():
            return web.json_response({"error": f"{name[:80]}: not found"}, status=404)
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    for path, value in (("/embeddings", []), ("/models", []), ("/experiment/models", []), ("/i18n", {}),
                        ("/node_replacements", {}), ("/global_subgraphs", {})):
        both("GET", path)(_constant(value))
    routes.get("/templates/index.json")(_constant([]))
    routes.get("/internal/logs/raw")(_constant({"entries": [], "size": {"cols": 80, "rows": 24}}))
    routes.get("/internal/folder_paths")(_constant({}))
