"""``stepwise serve``: the real ComfyUI frontend, our js/ extension and the demo model.

A way to try and test the pack in the editor, not a ComfyUI replacement: it implements the part of
ComfyUI's HTTP and WebSocket API that the frontend needs to load, list our nodes and the core-node
stand-ins (``/object_info``), queue a prompt, report progress and previews over ``/ws`` and show
results (``/view``, ``/history``). Prompts run one at a time with ``stepwise run``'s executor.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import struct
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from ..nodes.bridge import Observer, observe
from ..nodes.schedule_api import sigmas_response
from ..preview import PreviewConfig
from .core_nodes import RunContext, use_context
from .registry import node_registry
from .workflow import Prompt, WorkflowError, execute, parse_workflow

__all__ = ["make_app", "serve", "node_info", "FRONTEND_VERSION"]

FRONTEND_VERSION = "1.27.10"
PREVIEW_IMAGE = 1  # ComfyUI's binary event type for a preview, followed by a format id (1 = JPEG)
JS_DIR = Path(__file__).resolve().parent.parent / "js"
log = logging.getLogger("stepwise.serve")


def frontend_root() -> Path:
    try:
        import comfyui_frontend_package
    except ImportError as exc:
        raise RuntimeError("the ComfyUI frontend is not installed: pip install -e .[serve]") from exc
    return Path(comfyui_frontend_package.__file__).resolve().parent / "static"


def node_info(name: str, cls: type) -> dict:
    """One entry of ``/object_info``, in ComfyUI's format."""
    from ..nodes import NODE_DISPLAY_NAME_MAPPINGS

    types = cls.INPUT_TYPES()
    returns = tuple(getattr(cls, "RETURN_TYPES", ()))
    return {
        "input": types, "input_order": {k: list(v.keys()) for k, v in types.items()},
        "output": returns, "output_is_list": [False] * len(returns),
        "output_name": tuple(getattr(cls, "RETURN_NAMES", returns)), "name": name,
        "display_name": NODE_DISPLAY_NAME_MAPPINGS.get(name, name),
        "description": getattr(cls, "DESCRIPTION", "") or "", "python_module": "stepwise_sampler",
        "category": getattr(cls, "CATEGORY", "sd"), "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }


class Server:
    def __init__(self, out_dir: Path, input_dir: Path) -> None:
        self.out_dir = Path(out_dir).resolve()
        self.input_dir = Path(input_dir).resolve()
        self.temp_dir = self.out_dir / "temp"
        for d in (self.out_dir, self.input_dir, self.temp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.registry = node_registry()
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.queue: list[tuple] = []  # (number, prompt_id, prompt_json, extra, outputs)
        self.running: tuple | None = None
        self.history: "OrderedDict[str, dict]" = OrderedDict()
        self.number = 0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.interrupt = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        # an offline, single-user editor: no release checks, no first-run tutorial
        self.settings: dict[str, Any] = {"Comfy.Notification.ShowVersionUpdates": False,
                                         "Comfy.TutorialCompleted": True, "Comfy.InstalledVersion": FRONTEND_VERSION,
                                         "Comfy.Canvas.NavigationMode": "legacy",
                                         "Comfy.Canvas.LeftMouseClickBehavior": "panning",
                                         "Comfy.Canvas.MouseWheelScroll": "zoom"}
        self.worker = threading.Thread(target=self._work, name="stepwise-executor", daemon=True)

    # --- events to the browser ---------------------------------------------------------------------------
    def queue_info(self) -> dict:
        with self.lock:
            return {"exec_info": {"queue_remaining": len(self.queue) + (1 if self.running else 0)}}

    async def _send(self, message: Any, sid: str | None = None) -> None:
        targets = [self.sockets[sid]] if sid in self.sockets else list(self.sockets.values())
        for ws in targets:
            try:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_str(message)
            except (ConnectionError, RuntimeError):
                pass

    def send(self, event: str, data: dict, sid: str | None = None) -> None:
        if self.loop is not None:
            msg = json.dumps({"type": event, "data": data})
            asyncio.run_coroutine_threadsafe(self._send(msg, sid), self.loop)

    def send_preview(self, jpeg: bytes, sid: str | None = None) -> None:
        if self.loop is not None:
            asyncio.run_coroutine_threadsafe(self._send(struct.pack(">II", PREVIEW_IMAGE, 1) + jpeg, sid), self.loop)

    # --- execution ----------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            self.wake.wait()
            with self.lock:
                if not self.queue:
                    self.wake.clear()
                    continue
                self.queue.sort(key=lambda item: item[0])
                item = self.queue.pop(0)
                self.running = item
            try:
                self._run(item)
            finally:
                with self.lock:
                    self.running = None
                self.send("status", {"status": self.queue_info()})

    def _run(self, item: tuple) -> None:
        number, prompt_id, prompt_json, extra, _ = item
        sid = extra.get("client_id")
        workflow = (extra.get("extra_pnginfo") or {}).get("workflow")
        prompt = parse_workflow(prompt_json)
        prompt.workflow = workflow
        outputs: dict[str, dict] = {}
        current = {"node": None}
        self.interrupt.clear()
        started = time.time()
        self.send("execution_start", {"prompt_id": prompt_id, "timestamp": int(started * 1000)}, sid)

        def on_node(nid: str, class_type: str) -> None:
            current["node"] = nid
            self.send("executing", {"node": nid, "display_node": nid, "prompt_id": prompt_id}, sid)

        def on_step(step, x0, x, total) -> None:
            self.send("progress", {"value": step + 1, "max": total, "prompt_id": prompt_id,
                                   "node": current["node"]}, sid)

        def on_preview(step, total, image) -> None:
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(image.numpy()).save(buf, format="JPEG", quality=90)
            self.send_preview(buf.getvalue(), sid)

        def on_output(nid: str, ui: dict) -> None:
            outputs[nid] = ui
            self.send("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": prompt_id}, sid)

        def show(images) -> list[dict]:
            from .core_nodes import show_on_node

            return show_on_node(images)

        ctx = RunContext(output_dir=self.out_dir, input_dir=self.input_dir, temp_dir=self.temp_dir,
                         notice=lambda m: log.info(m))
        observer = Observer(on_step=on_step, on_preview=on_preview, show_images=show, interrupt=self.interrupt,
                            want_ui=True, default_preview=PreviewConfig("latent2rgb", min_interval_ms=100))
        status, messages = "success", []
        try:
            with use_context(ctx), observe(observer):
                execute(prompt, self.registry, on_node=on_node, on_output=on_output, notice=ctx.notice)
            self.send("execution_success", {"prompt_id": prompt_id, "timestamp": int(time.time() * 1000)}, sid)
        except InterruptedError:
            status = "error"
            self.send("execution_interrupted", {"prompt_id": prompt_id, "node_id": current["node"],
                                                "node_type": "", "executed": list(outputs)}, sid)
        except Exception as exc:  # noqa: BLE001 - reported to the browser, the server keeps running
            status = "error"
            log.error("prompt %s failed: %s", prompt_id, exc)
            self.send("execution_error", {"prompt_id": prompt_id, "node_id": getattr(exc, "node_id", current["node"]),
                                          "node_type": getattr(exc, "class_type", "") or "",
                                          "exception_message": str(exc), "exception_type": type(exc).__name__,
                                          "traceback": traceback.format_exc().splitlines()[-5:],
                                          "executed": list(outputs)}, sid)
            messages.append(["execution_error", {"exception_message": str(exc)}])
        self.send("executing", {"node": None, "prompt_id": prompt_id}, sid)
        self.history[prompt_id] = {
            "prompt": [number, prompt_id, prompt_json, extra, list(outputs)],
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
            "meta": {nid: {"node_id": nid, "display_node": nid} for nid in outputs},
        }
        while len(self.history) > 200:
            self.history.popitem(last=False)

    # --- validation ---------------------------------------------------------------------------------------
    def validate(self, prompt_json: Any) -> tuple[Prompt | None, dict | None]:
        try:
            if not isinstance(prompt_json, dict) or not prompt_json:
                raise WorkflowError("prompt: expected an object of nodes {id: {class_type, inputs}}")
            for nid, node in prompt_json.items():
                if not isinstance(node, dict) or "class_type" not in node:
                    raise WorkflowError(f"node {nid}: missing class_type", nid)
            prompt = parse_workflow(prompt_json)
            execute(prompt, self.registry, validate_only=True)
            return prompt, None
        except WorkflowError as exc:
            error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                     "details": str(exc), "extra_info": {}}
            node_errors = {}
            if exc.node_id is not None:
                node_errors[exc.node_id] = {
                    "errors": [{"type": "value_not_valid" if exc.input_name else "invalid_node", "message": str(exc),
                                "details": str(exc), "extra_info": {"input_name": exc.input_name}}],
                    "dependent_outputs": [], "class_type": exc.class_type or
                    (prompt_json.get(exc.node_id, {}).get("class_type") if isinstance(prompt_json, dict) else None)}
            return None, {"error": error, "node_errors": node_errors}


def _safe_file(base: Path, subfolder: str, filename: str) -> Path | None:
    if not filename or "\x00" in filename or "\x00" in subfolder:
        return None
    candidate = (base / subfolder / filename).resolve()
    if base != candidate and base not in candidate.parents:
        return None
    return candidate


def make_app(out_dir: str | Path = "output", input_dir: str | Path = "input") -> web.Application:
    state = Server(Path(out_dir), Path(input_dir))
    root = frontend_root()
    routes = web.RouteTableDef()

    def both(method: str, path: str):
        def deco(fn):
            routes.route(method, path)(fn)
            routes.route(method, "/api" + path)(fn)
            return fn
        return deco

    @routes.get("/ws")
    async def websocket(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId") or uuid.uuid4().hex
        state.sockets[sid] = ws
        try:
            await ws.send_str(json.dumps({"type": "status", "data": {"status": state.queue_info(), "sid": sid}}))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except json.JSONDecodeError:
                        continue
                    if data.get("type") == "feature_flags":
                        await ws.send_str(json.dumps({"type": "feature_flags", "data": {}}))
        finally:
            state.sockets.pop(sid, None)
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

    @both("GET", "/stepwise/sigmas")
    async def stepwise_sigmas(request):
        status, body = sigmas_response(request.rel_url.query)
        return web.json_response(body, status=status)

    @both("POST", "/prompt")
    async def post_prompt(request):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": {"type": "invalid_prompt", "message": "Invalid JSON",
                                                "details": "the request body is not JSON", "extra_info": {}},
                                      "node_errors": {}}, status=400)
        if not isinstance(body, dict) or "prompt" not in body:
            return web.json_response({"error": {"type": "no_prompt", "message": "No prompt provided",
                                                "details": "No prompt provided", "extra_info": {}},
                                      "node_errors": {}}, status=400)
        prompt, errors = state.validate(body["prompt"])
        if errors is not None:
            return web.json_response(errors, status=400)
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        with state.lock:
            state.number += 1
            number = -state.number if body.get("front") else state.number
            state.queue.append((number, prompt_id, body["prompt"], extra, []))
        state.wake.set()
        state.send("status", {"status": state.queue_info()})
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    @both("GET", "/prompt")
    async def get_prompt(request):
        return web.json_response(state.queue_info())

    @both("GET", "/queue")
    async def get_queue(request):
        with state.lock:
            running = [list(state.running)] if state.running else []
            pending = [list(q) for q in state.queue]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    @both("POST", "/queue")
    async def post_queue(request):
        body = await request.json()
        with state.lock:
            if body.get("clear"):
                state.queue.clear()
            for pid in body.get("delete", []):
                state.queue[:] = [q for q in state.queue if q[1] != pid]
        return web.Response(status=200)

    @both("POST", "/interrupt")
    async def interrupt(request):
        state.interrupt.set()
        return web.Response(status=200)

    @both("POST", "/free")
    async def free(request):
        return web.Response(status=200)

    @both("GET", "/history")
    async def history(request):
        items = list(state.history.items())
        max_items = request.rel_url.query.get("max_items")
        if max_items and max_items.isdigit():
            items = items[-int(max_items):]
        return web.json_response(dict(items))

    @both("GET", "/history/{prompt_id}")
    async def history_one(request):
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: state.history[pid]} if pid in state.history else {})

    @both("POST", "/history")
    async def post_history(request):
        body = await request.json()
        if body.get("clear"):
            state.history.clear()
        for pid in body.get("delete", []):
            state.history.pop(pid, None)
        return web.Response(status=200)

    @both("GET", "/view")
    async def view(request):
        q = request.rel_url.query
        base = {"output": state.out_dir, "temp": state.temp_dir, "input": state.input_dir}.get(q.get("type", "output"))
        if base is None:
            return web.Response(status=400, text="type: must be output, temp or input")
        path = _safe_file(base, q.get("subfolder", ""), q.get("filename", ""))
        if path is None:
            return web.Response(status=403, text="outside the output/temp/input folders")
        if not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path, headers={"Content-Disposition": f'filename="{path.name}"'})

    @both("POST", "/upload/image")
    async def upload(request):
        form = await request.post()
        image = form.get("image")
        if image is None or not hasattr(image, "file"):
            return web.Response(status=400, text="image: no file")
        name = re.sub(r"[^A-Za-z0-9._ ()-]", "_", Path(image.filename or "upload.png").name) or "upload.png"
        target = _safe_file(state.input_dir, "", name)
        if target is None:
            return web.Response(status=400, text="image: bad file name")
        target.write_bytes(image.file.read())
        return web.json_response({"name": name, "subfolder": "", "type": "input"})

    @both("GET", "/system_stats")
    async def system_stats(request):
        import platform
        import sys

        import torch

        return web.json_response({"system": {"os": platform.system(), "ram_total": 0, "ram_free": 0,
                                             "comfyui_version": "stepwise-serve", "python_version": sys.version,
                                             "pytorch_version": torch.__version__, "embedded_python": False,
                                             "required_frontend_version": FRONTEND_VERSION,
                                             "argv": ["stepwise", "--disable-api-nodes"]},
                                  "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 0,
                                               "vram_free": 0, "torch_vram_total": 0, "torch_vram_free": 0}]})

    @both("GET", "/features")
    async def features(request):
        return web.json_response({"supports_preview_metadata": False, "max_upload_size": 100 * 1024 * 1024})

    @both("GET", "/users")
    async def users(request):
        return web.json_response({"storage": "server", "migrated": True})

    @both("GET", "/settings")
    async def get_settings(request):
        return web.json_response(state.settings)

    @both("POST", "/settings")
    async def post_settings(request):
        state.settings.update(await request.json())
        return web.Response(status=200)

    @both("GET", "/settings/{id}")
    async def get_setting(request):
        return web.json_response(state.settings.get(request.match_info["id"]))

    @both("POST", "/settings/{id}")
    async def post_setting(request):
        state.settings[request.match_info["id"]] = await request.json()
        return web.Response(status=200)

    @both("GET", "/userdata")
    async def userdata(request):
        return web.json_response([])

    @both("GET", "/v2/userdata")
    async def userdata2(request):
        return web.json_response([])

    @both("GET", "/userdata/{file}")
    async def userdata_file(request):
        return web.json_response({}) if request.match_info["file"].endswith(".json") else web.Response(text="")

    @both("POST", "/userdata/{file}")
    async def userdata_write(request):
        return web.json_response({"path": request.match_info["file"]})

    for path, value in (("/embeddings", []), ("/models", []), ("/experiment/models", []), ("/i18n", {}),
                        ("/workflow_templates", {}), ("/node_replacements", {})):
        both("GET", path)(_constant(value))
    routes.get("/templates/index.json")(_constant([]))
    routes.get("/internal/logs/raw")(_constant({"entries": [], "size": {"cols": 80, "rows": 24}}))
    routes.get("/internal/folder_paths")(_constant({}))

    app = web.Application(client_max_size=100 * 1024 * 1024)
    app.add_routes(routes)
    app.router.add_static("/extensions/stepwise", JS_DIR)
    app.router.add_static("/", root)
    app["state"] = state

    async def on_startup(app):
        state.loop = asyncio.get_running_loop()
        state.worker.start()

    app.on_startup.append(on_startup)
    return app


def _constant(value):
    async def handler(request):
        return web.json_response(value)
    return handler


def serve(port: int = 8188, listen: str = "127.0.0.1", out_dir: str = "output", input_dir: str = "input") -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = make_app(out_dir, input_dir)
    print(f"Stepwise serve: the ComfyUI frontend with Stepwise nodes on the demo model at http://{listen}:{port}/ "
          f"(a way to try the pack, not a ComfyUI replacement)", flush=True)
    web.run_app(app, host=listen, port=port, print=None)
