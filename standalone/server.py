"""``stepwise serve``: the real ComfyUI frontend, our js/ extension and the demo model.

A way to try and test the pack in the editor, not a ComfyUI replacement: it implements the part of
ComfyUI's HTTP and WebSocket API that the frontend needs to load, list our nodes and the core-node
stand-ins (``/object_info``), queue a prompt, report progress and previews over ``/ws`` and show
results (``/view``, ``/history``). Prompts run one at a time with ``stepwise run``'s executor.
"""
from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import mimetypes
import re
import struct
import threading
import time
import traceback
import urllib.parse
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from ..nodes.bridge import Observer, observe
from ..nodes.schedule_api import migrate_response, sigmas_response
from ..preview import PreviewConfig
from .core_nodes import RunContext, use_context
from .jobs import JobQueryError, job_detail, job_list
from .registry import node_registry
from .workflow import Prompt, WorkflowError, execute, parse_workflow

__all__ = ["make_app", "serve", "node_info", "FRONTEND_VERSION"]

FRONTEND_VERSION = "1.27.10"
PREVIEW_IMAGE = 1  # ComfyUI's binary event type for a preview, followed by a format id (1 = JPEG)
PREVIEW_IMAGE_WITH_METADATA = 4  # followed by the metadata length, the metadata JSON and the image
PROGRESS_TEXT = 3  # followed by the node id length, the node id and the text
DEFAULT_EXAMPLE = "seamless_split"  # examples/<name>.json: what a fresh editor opens
MAX_HISTORY = 200  # entries
MAX_HISTORY_BYTES = 64 * 1024 * 1024  # of JSON across all entries
MAX_PROMPT_BYTES = 16 * 1024 * 1024  # a POST /prompt body
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"}  # served inline; all else downloads
JS_DIR = Path(__file__).resolve().parent.parent / "js"
log = logging.getLogger("stepwise.serve")


def frontend_root(path: str | Path | None = None) -> tuple[Path, str]:
    """(the frontend's static folder, its version): ``path`` (or $STEPWISE_FRONTEND) names a folder holding
    ``index.html`` or an unpacked ``comfyui_frontend_package`` wheel; else the installed package."""
    import os

    path = path or os.environ.get("STEPWISE_FRONTEND")
    if path:
        root = Path(path).resolve()
        for candidate in (root, root / "static", root / "comfyui_frontend_package" / "static"):
            if (candidate / "index.html").is_file():
                return candidate, _frontend_version(candidate)
        raise RuntimeError(f"--frontend: {root} holds no ComfyUI frontend (no index.html)")
    try:
        import comfyui_frontend_package
    except ImportError as exc:
        raise RuntimeError("the ComfyUI frontend is not installed: pip install -e .[serve]") from exc
    root = Path(comfyui_frontend_package.__file__).resolve().parent / "static"
    return root, _frontend_version(root)


def _frontend_version(static: Path) -> str:
    """The version from the wheel's dist-info next to the package, or the installed distribution's."""
    for meta in static.parent.parent.glob("comfyui_frontend_package-*.dist-info/METADATA"):
        for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    try:
        from importlib.metadata import version

        return version("comfyui_frontend_package")
    except Exception:  # noqa: BLE001 - unknown: the pinned one
        return FRONTEND_VERSION


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
    def __init__(self, out_dir: Path, input_dir: Path, frontend_version: str = FRONTEND_VERSION) -> None:
        self.frontend_version = frontend_version
        self.out_dir = Path(out_dir).resolve()
        self.input_dir = Path(input_dir).resolve()
        self.temp_dir = self.out_dir / "temp"
        for d in (self.out_dir, self.input_dir, self.temp_dir):
            d.mkdir(parents=True, exist_ok=True)
        provide_example_inputs(self.input_dir)
        self.registry = node_registry()
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.client_features: dict[str, dict] = {}
        self.queue: list[tuple] = []  # (number, prompt_id, prompt_json, extra, outputs)
        self.running: tuple | None = None
        self.history: "OrderedDict[str, dict]" = OrderedDict()
        self.history_bytes: dict[str, int] = {}
        self.number = 0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.interrupt = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        # an offline, single-user editor: no release checks, no first-run tutorial
        self.settings: dict[str, Any] = {"Comfy.Notification.ShowVersionUpdates": False,
                                         "Comfy.TutorialCompleted": True, "Comfy.InstalledVersion": frontend_version,
                                         "Comfy.Canvas.NavigationMode": "legacy",
                                         "Comfy.Canvas.LeftMouseClickBehavior": "panning",
                                         "Comfy.Canvas.MouseWheelScroll": "zoom"}
        self.worker = threading.Thread(target=self._work, name="stepwise-executor", daemon=True)

    def update_settings(self, values: dict) -> None:
        merged = {**self.settings, **values}
        if len(merged) > 2000 or len(json.dumps(merged, default=str)) > 1024 * 1024:
            raise BadRequest("settings: more than 2000 entries or 1 MB in total", 413)
        self.settings = merged

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

    def send_preview(self, jpeg: bytes, sid: str | None = None, node: str | None = None,
                     prompt_id: str | None = None) -> None:
        """A preview as ComfyUI sends it: with metadata (event 4: node, prompt) when the client asked
        for it in its feature flags, else the plain JPEG event."""
        if self.loop is None:
            return
        if sid is not None and self.client_features.get(sid, {}).get("supports_preview_metadata"):
            meta = json.dumps({"node_id": node, "display_node_id": node, "parent_node_id": None,
                               "real_node_id": node, "prompt_id": prompt_id, "image_type": "image/jpeg"}).encode()
            payload = struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + jpeg
        else:
            payload = struct.pack(">II", PREVIEW_IMAGE, 1) + jpeg
        asyncio.run_coroutine_threadsafe(self._send(payload, sid), self.loop)

    def send_progress_text(self, text: str, node: str | None, sid: str | None = None) -> None:
        """A progress line under a node, as ComfyUI sends it (binary event 3: node id, then the text)."""
        if self.loop is None or node is None:
            return
        nid = str(node).encode()
        payload = struct.pack(">II", PROGRESS_TEXT, len(nid)) + nid + text.encode("utf-8")
        asyncio.run_coroutine_threadsafe(self._send(payload, sid), self.loop)

    # --- execution ----------------------------------------------------------------------------------------
    def _work(self) -> None:
        """The executor thread: one prompt at a time; nothing a prompt holds can stop it."""
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
            except BaseException as exc:  # noqa: BLE001 - last resort: report, keep serving
                log.error("executor: prompt %s could not be run: %s", item[1], exc)
                try:
                    self._record(item, {}, "error", [["execution_error", {"exception_message": str(exc)}]])
                except Exception:  # noqa: BLE001
                    pass
            finally:
                with self.lock:
                    self.running = None
                self.send("status", {"status": self.queue_info()})

    def _run(self, item: tuple) -> None:
        number, prompt_id, prompt_json, extra, _ = item
        sid = extra.get("client_id")
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
            self.send_preview(buf.getvalue(), sid, current["node"], prompt_id)

        def on_output(nid: str, ui: dict) -> None:
            outputs[nid] = ui
            self.send("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": prompt_id}, sid)

        def show(images) -> list[dict]:
            from .core_nodes import show_on_node

            return show_on_node(images)

        ctx = RunContext(output_dir=self.out_dir, input_dir=self.input_dir, temp_dir=self.temp_dir,
                         notice=lambda m: log.info(m))
        observer = Observer(on_step=on_step, on_preview=on_preview, show_images=show, interrupt=self.interrupt,
                            on_progress_text=lambda text: self.send_progress_text(text, current["node"], sid),
                            want_ui=True, default_preview=PreviewConfig("latent2rgb", min_interval_ms=100))
        status, messages = "success", [["execution_start", {"prompt_id": prompt_id, "timestamp": int(started * 1000)}]]
        try:
            workflow = extra.get("extra_pnginfo", {}).get("workflow")
            prompt = parse_workflow(prompt_json)
            prompt.workflow = workflow if isinstance(workflow, dict) else None
            with use_context(ctx), observe(observer):
                execute(prompt, self.registry, on_node=on_node, on_output=on_output, notice=ctx.notice)
            done = {"prompt_id": prompt_id, "timestamp": int(time.time() * 1000)}
            self.send("execution_success", done, sid)
            messages.append(["execution_success", done])
        except InterruptedError:
            status = "error"
            self.send("execution_interrupted", {"prompt_id": prompt_id, "node_id": current["node"],
                                                "node_type": "", "executed": list(outputs)}, sid)
            messages.append(["execution_interrupted", {"prompt_id": prompt_id, "node_id": current["node"],
                                                       "timestamp": int(time.time() * 1000)}])
        except BaseException as exc:  # noqa: BLE001 - reported to the browser, the server keeps running
            status = "error"
            log.error("prompt %s failed: %s", prompt_id, exc)
            self.send("execution_error", {"prompt_id": prompt_id, "node_id": getattr(exc, "node_id", current["node"]),
                                          "node_type": getattr(exc, "class_type", "") or "",
                                          "exception_message": str(exc), "exception_type": type(exc).__name__,
                                          "traceback": traceback.format_exc().splitlines()[-5:],
                                          "executed": list(outputs)}, sid)
            messages.append(["execution_error", {"prompt_id": prompt_id, "exception_message": str(exc)[:2000],
                                                 "exception_type": type(exc).__name__,
                                                 "node_id": getattr(exc, "node_id", current["node"]),
                                                 "timestamp": int(time.time() * 1000)}])
        self.send("executing", {"node": None, "prompt_id": prompt_id}, sid)
        self._record(item, outputs, status, messages)

    def _record(self, item: tuple, outputs: dict, status: str, messages: list) -> None:
        """Keep a bounded history: at most MAX_HISTORY entries and MAX_HISTORY_BYTES of JSON."""
        number, prompt_id, prompt_json, extra, _ = item
        entry = {
            "prompt": [number, prompt_id, prompt_json, extra, list(outputs)],
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
            "meta": {nid: {"node_id": nid, "display_node": nid} for nid in outputs},
        }
        size = len(json.dumps(entry, default=str))
        with self.lock:
            self.history[prompt_id] = entry
            self.history_bytes[prompt_id] = size
            while len(self.history) > MAX_HISTORY or \
                    (len(self.history) > 1 and sum(self.history_bytes.values()) > MAX_HISTORY_BYTES):
                old, _ = self.history.popitem(last=False)
                self.history_bytes.pop(old, None)

    # --- validation ---------------------------------------------------------------------------------------
    def validate(self, prompt_json: Any) -> tuple[Prompt | None, dict | None]:
        try:
            if not isinstance(prompt_json, dict) or not prompt_json:
                raise WorkflowError("prompt: expected an object of nodes {id: {class_type, inputs}}")
            for nid, node in prompt_json.items():
                if not isinstance(node, dict) or "class_type" not in node:
                    raise WorkflowError(f"node {nid}: missing class_type", nid)
            prompt = parse_workflow(prompt_json)
            ctx = RunContext(output_dir=self.out_dir, input_dir=self.input_dir, temp_dir=self.temp_dir)
            with use_context(ctx):
                execute(prompt, self.registry, validate_only=True)
            return prompt, None
        except RecursionError:
            return self._invalid(prompt_json, WorkflowError("prompt: nested too deeply"))
        except WorkflowError as exc:
            return self._invalid(prompt_json, exc)
        except Exception as exc:  # noqa: BLE001 - whatever a prompt holds is the client's error, not a 500
            log.warning("prompt validation: %s: %s", type(exc).__name__, exc)
            return self._invalid(prompt_json, WorkflowError(f"prompt: cannot be read ({type(exc).__name__}: "
                                                            f"{str(exc)[:200]})"))

    @staticmethod
    def _invalid(prompt_json: Any, exc: WorkflowError) -> tuple[None, dict]:
        error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                 "details": str(exc), "extra_info": {}}
        node_errors = {}
        if exc.node_id is not None:
            node_errors[exc.node_id] = {
                "errors": [{"type": "value_not_valid" if exc.input_name else "invalid_node", "message": str(exc),
                            "details": str(exc), "extra_info": {"input_name": exc.input_name}}],
                "dependent_outputs": [], "class_type": exc.class_type or _class_of(prompt_json, exc.node_id)}
        return None, {"error": error, "node_errors": node_errors}


def provide_example_inputs(input_dir: Path) -> None:
    """The picture the img2img example loads, drawn into the input folder if it is not there yet."""
    from .demo import DEMO_INPUT, draw_demo_input

    if not (input_dir / DEMO_INPUT).exists():
        draw_demo_input(input_dir)


def _class_of(prompt_json: Any, node_id: str) -> str | None:
    node = prompt_json.get(node_id) if isinstance(prompt_json, dict) else None
    ctype = node.get("class_type") if isinstance(node, dict) else None
    return ctype if isinstance(ctype, str) else None


def _safe_file(base: Path, subfolder: str, filename: str) -> Path | None:
    if not isinstance(filename, str) or not isinstance(subfolder, str):
        return None
    if not filename or "\x00" in filename or "\x00" in subfolder:
        return None
    candidate = (base / subfolder / filename).resolve()
    if base != candidate and base not in candidate.parents:
        return None
    return candidate


# --- request hygiene: origin/host checks, bodies, errors ----------------------------------------------------
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_loopback_host(host: str | None) -> bool:
    """A literal loopback address or name; never resolved through DNS (that is what rebinding abuses)."""
    if not host:
        return False
    host = host.strip("[]").lower().rstrip(".")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str | None, int | None]:
    """(hostname, port) of a Host header value or an origin's netloc; (None, None) if malformed."""
    try:
        parts = urllib.parse.urlsplit("//" + value)
        return parts.hostname, parts.port
    except ValueError:
        return None, None


def check_request_origin(headers: Any, loopback_bind: bool) -> str | None:
    """Why a request must be refused (403), or None. As ComfyUI: a browser request whose Origin does not
    match the Host it was sent to comes from another site's page. Stricter than ComfyUI: the check holds
    on any bind, ``Origin: null`` (sandboxed pages, files) counts as foreign, and on a loopback bind the
    Host must name this machine (DNS rebinding: a foreign name that resolves to 127.0.0.1)."""
    host = headers.get("Host")
    host_name, host_port = _split_host(host) if host else (None, None)
    if host is not None and host_name is None:
        return f"Host: {host[:100]!r} is not a valid host"
    if loopback_bind and host_name is not None and not is_loopback_host(host_name):
        return (f"Host: {host_name!r} is not this machine; stepwise serve listens on loopback and answers only "
                f"requests addressed to localhost, 127.0.0.1 or [::1]")
    origin = headers.get("Origin")
    if origin is None:
        return None  # not a browser page making a cross-site request (curl, scripts, same-origin GETs)
    if origin.strip().lower() == "null":
        return "Origin: null (a sandboxed page or a local file) may not use this server"
    try:
        parsed = urllib.parse.urlsplit(origin)
        o_name, o_port = parsed.hostname, parsed.port
    except ValueError:
        return f"Origin: {origin[:100]!r} is not a valid origin"
    if o_name is None or parsed.scheme not in ("http", "https"):
        return f"Origin: {origin[:100]!r} is not a valid origin"
    if host_name is None:
        return "Host: missing, so the request's Origin cannot be checked"
    default = {"http": 80, "https": 443}[parsed.scheme]
    if o_name.lower() != host_name.lower() or (o_port or default) != (host_port or default):
        return (f"Origin: {origin[:100]} does not match the server's host {host}; requests from other sites' "
                f"pages are refused")
    return None


class BadRequest(Exception):
    """A malformed request: answered 400 (or ``status``) with a one-line reason."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


async def json_body(request: web.Request, kind: type | tuple = dict, what: str = "body",
                    limit: int = MAX_PROMPT_BYTES) -> Any:
    """The request's JSON body, of the expected type; a BadRequest otherwise (whatever the content type)."""
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"{what}: {request.content_length} bytes is over the limit of {limit}", 413)
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(1 << 16)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"{what}: over the limit of {limit} bytes", 413)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadRequest(f"{what}: not valid JSON") from None
    if not isinstance(data, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        shown = {"dict": "an object", "list": "a list", "str": "a string"}
        raise BadRequest(f"{what}: expected {shown.get(names, names)}, got {type(data).__name__}")
    return data


def _ids(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise BadRequest(f"{what}: expected a list of prompt ids")
    return [str(v) for v in value]


def _prompt_error(kind: str, message: str, details: str, status: int = 400) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message, "details": details, "extra_info": {}},
                              "node_errors": {}}, status=status)


def make_app(out_dir: str | Path = "output", input_dir: str | Path = "input",
             listen: str = "127.0.0.1", frontend: str | Path | None = None) -> web.Application:
    root, version = frontend_root(frontend)
    state = Server(Path(out_dir), Path(input_dir), version)
    routes = web.RouteTableDef()
    loopback_bind = is_loopback_host(listen)

    @web.middleware
    async def guard(request: web.Request, handler):
        problem = check_request_origin(request.headers, loopback_bind)
        if problem is not None:
            log.warning("refused %s %s: %s", request.method, request.path, problem)
            return web.json_response({"error": problem}, status=403)
        if request.method == "OPTIONS":  # no CORS: a preflight gets nothing that would allow a foreign page
            return web.Response(status=204)
        try:
            response = await handler(request)
        except BadRequest as exc:
            response = web.json_response({"error": str(exc)}, status=exc.status)
        except web.HTTPException:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a handler bug must not become a 500 with a traceback
            log.exception("request %s %s failed", request.method, request.path)
            response = web.json_response({"error": f"{type(exc).__name__}: {exc}"[:500]}, status=500)
        if isinstance(response, web.StreamResponse) and not response.prepared:
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    def both(method: str, path: str):
        def deco(fn):
            routes.route(method, path)(fn)
            routes.route(method, "/api" + path)(fn)
            return fn
        return deco

    @routes.get("/ws")
    async def websocket(request):
        ws = web.WebSocketResponse(max_msg_size=1024 * 1024)
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId") or uuid.uuid4().hex
        sid = sid[:128]
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
                        state.client_features[sid] = flags if isinstance(flags, dict) else {}
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

    @both("GET", "/stepwise/default_workflow")
    async def default_workflow(request):
        """The graph the editor opens in `stepwise serve` instead of the frontend's stock default."""
        from ..examples import EXAMPLES_DIR

        return web.FileResponse(EXAMPLES_DIR / f"{DEFAULT_EXAMPLE}.json", headers={"Cache-Control": "no-cache"})

    @both("POST", "/stepwise/migrate")
    async def stepwise_migrate(request):
        status, out = migrate_response(await json_body(request, dict, "migrate request"))
        return web.json_response(out, status=status)

    @both("GET", "/stepwise/sigmas")
    async def stepwise_sigmas(request):
        status, body = sigmas_response(request.rel_url.query)
        return web.json_response(body, status=status)

    @both("POST", "/prompt")
    async def post_prompt(request):
        try:
            body = await json_body(request, object, "prompt request")
        except BadRequest as exc:
            if exc.status == 413:
                return _prompt_error("invalid_prompt", "Prompt too large", str(exc), 413)
            return _prompt_error("invalid_prompt", "Invalid JSON", str(exc))
        if not isinstance(body, dict) or "prompt" not in body:
            return _prompt_error("no_prompt", "No prompt provided", "No prompt provided")
        extra = body.get("extra_data", {})
        problems = []
        if extra is None:
            extra = {}
        if not isinstance(extra, dict):
            problems.append(f"extra_data: expected an object, got {type(extra).__name__}")
        else:
            if "extra_pnginfo" in extra and not isinstance(extra["extra_pnginfo"], dict):
                problems.append(f"extra_data.extra_pnginfo: expected an object, got "
                                f"{type(extra['extra_pnginfo']).__name__}")
            elif isinstance(extra.get("extra_pnginfo"), dict) and "workflow" in extra["extra_pnginfo"] and \
                    not isinstance(extra["extra_pnginfo"]["workflow"], (dict, type(None))):
                problems.append("extra_data.extra_pnginfo.workflow: expected an object")
        for key, kinds in (("client_id", (str,)), ("prompt_id", (str,)), ("front", (bool,)),
                           ("number", (int, float))):
            if key in body and body[key] is not None and (not isinstance(body[key], kinds) or
                                                          (key == "number" and isinstance(body[key], bool))):
                problems.append(f"{key}: expected {'a string' if kinds == (str,) else kinds[0].__name__}")
        if isinstance(body.get("prompt_id"), str) and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", body["prompt_id"]):
            problems.append("prompt_id: use 1-128 letters, digits or _ . : -")
        if problems:
            return _prompt_error("invalid_prompt", "Invalid prompt request", "; ".join(problems))
        prompt, errors = state.validate(body["prompt"])
        if errors is not None:
            return web.json_response(errors, status=400)
        # keep what the run and the history need (the editor's workflow, the client); drop the rest
        kept = {}
        if isinstance(extra.get("extra_pnginfo"), dict):
            kept["extra_pnginfo"] = {k: v for k, v in extra["extra_pnginfo"].items() if k == "workflow"}
        if "client_id" in body:
            kept["client_id"] = body["client_id"]
        elif isinstance(extra.get("client_id"), str):
            kept["client_id"] = extra["client_id"]
        kept["create_time"] = int(time.time() * 1000)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        with state.lock:
            state.number += 1
            number = -state.number if body.get("front") else state.number
            state.queue.append((number, prompt_id, body["prompt"], kept, []))
        state.wake.set()
        state.send("status", {"status": state.queue_info()})
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    @both("GET", "/jobs")
    async def jobs(request):
        with state.lock:
            running = [state.running] if state.running else []
            queued, history = list(state.queue), dict(state.history)
        try:
            return web.json_response(job_list(request.rel_url.query, running, queued, history))
        except JobQueryError as exc:
            raise BadRequest(str(exc)) from None

    @both("GET", "/jobs/{job_id}")
    async def job_one(request):
        with state.lock:
            running = [state.running] if state.running else []
            queued, history = list(state.queue), dict(state.history)
        job = job_detail(request.match_info["job_id"], running, queued, history)
        return web.json_response(job) if job is not None else web.json_response({"error": "Job not found"},
                                                                                  status=404)

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
        body = await json_body(request, dict, "queue request", 1024 * 1024)
        delete = _ids(body.get("delete"), "delete")
        with state.lock:
            if body.get("clear"):
                state.queue.clear()
            for pid in delete:
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
        with state.lock:
            items = list(state.history.items())
        max_items = request.rel_url.query.get("max_items")
        if max_items:
            if not max_items.isdigit():
                raise BadRequest(f"max_items: expected a non-negative integer, got {max_items[:40]!r}")
            items = items[-int(max_items):] if int(max_items) else []
        return web.json_response(dict(items))

    @both("GET", "/history/{prompt_id}")
    async def history_one(request):
        pid = request.match_info["prompt_id"]
        with state.lock:
            entry = state.history.get(pid)
        return web.json_response({pid: entry} if entry is not None else {})

    @both("POST", "/history")
    async def post_history(request):
        body = await json_body(request, dict, "history request", 1024 * 1024)
        delete = _ids(body.get("delete"), "delete")
        with state.lock:
            if body.get("clear"):
                state.history.clear()
                state.history_bytes.clear()
            for pid in delete:
                state.history.pop(pid, None)
                state.history_bytes.pop(pid, None)
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
        return web.FileResponse(path, headers=safe_file_headers(path.name))

    @both("POST", "/upload/image")
    async def upload(request):
        if not request.content_type.startswith("multipart/"):
            raise BadRequest("upload: expected a multipart/form-data body with an 'image' file field")
        if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES:
            raise BadRequest(f"image: over the upload limit of {MAX_UPLOAD_BYTES} bytes", 413)
        try:
            form = await request.post()
        except (ValueError, AssertionError, web.HTTPException) as exc:
            raise BadRequest(f"upload: malformed multipart body ({str(exc)[:100]})") from None
        image = form.get("image")
        if image is None or not hasattr(image, "file"):
            raise BadRequest("image: no file in the 'image' field")
        kind = form.get("type", "input")
        base = {"input": state.input_dir, "temp": state.temp_dir}.get(kind if isinstance(kind, str) else "")
        if base is None:
            raise BadRequest("type: must be input or temp")
        subfolder = form.get("subfolder", "")
        if not isinstance(subfolder, str):
            raise BadRequest("subfolder: expected text")
        name = re.sub(r"[^A-Za-z0-9._ ()-]", "_", Path(image.filename or "upload.png").name).strip(" .") or "upload.png"
        data = image.file.read()
        problem = check_image_bytes(data)
        if problem is not None:
            raise BadRequest(f"image: {problem}")
        target = _safe_file(base, subfolder, name)
        if target is None:
            raise BadRequest("subfolder: outside the input folder", 403)
        overwrite = str(form.get("overwrite", "")).lower() in ("true", "1")
        if target.exists() and not overwrite:
            stem, suffix = target.stem, target.suffix
            i = 1
            while target.exists():  # as ComfyUI: a new name instead of silently replacing the old file
                target = target.with_name(f"{stem} ({i}){suffix}")
                i += 1
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        tmp.write_bytes(data)
        tmp.replace(target)
        return web.json_response({"name": target.name, "subfolder": subfolder, "type": kind})

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
        state.update_settings({request.match_info["id"]: value})
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
        return web.json_response({"path": request.match_info["file"]})

    for path, value in (("/embeddings", []), ("/models", []), ("/experiment/models", []), ("/i18n", {}),
                        ("/workflow_templates", {}), ("/node_replacements", {}), ("/global_subgraphs", {})):
        both("GET", path)(_constant(value))
    routes.get("/templates/index.json")(_constant([]))
    routes.get("/internal/logs/raw")(_constant({"entries": [], "size": {"cols": 80, "rows": 24}}))
    routes.get("/internal/folder_paths")(_constant({}))

    app = web.Application(client_max_size=MAX_UPLOAD_BYTES, middlewares=[guard])
    app.add_routes(routes)
    app.router.add_static("/extensions/stepwise", JS_DIR)
    app.router.add_static("/", root)
    app[STATE_KEY] = state

    async def on_startup(app):
        state.loop = asyncio.get_running_loop()
        state.worker.start()

    app.on_startup.append(on_startup)
    return app


STATE_KEY = web.AppKey("stepwise_state", Server)
SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_BYTES}


def safe_file_headers(filename: str) -> dict[str, str]:
    """Headers for serving a user file: raster images inline; anything else (HTML, SVG, scripts, text)
    as a download, so a stored file can never run script from this server's origin."""
    kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    quoted = urllib.parse.quote(filename)
    if kind in IMAGE_TYPES:
        return {"Content-Type": kind, "Content-Disposition": f"inline; filename*=UTF-8''{quoted}",
                "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}
    return {"Content-Type": "application/octet-stream", "Content-Disposition": f"attachment; filename*=UTF-8''{quoted}",
            "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}


def check_image_bytes(data: bytes) -> str | None:
    """Why ``data`` is not an image this server accepts (PNG, JPEG, WebP, GIF, BMP), or None."""
    from PIL import Image

    if not data:
        return "the file is empty"
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
            img.verify()
    except Exception:  # noqa: BLE001 - PIL raises many types for bad data
        return "not a readable image (allowed: PNG, JPEG, WebP, GIF, BMP)"
    if fmt not in ("PNG", "JPEG", "WEBP", "GIF", "BMP"):
        return f"{fmt} images are not accepted (allowed: PNG, JPEG, WebP, GIF, BMP)"
    return None


def _constant(value):
    async def handler(request):
        return web.json_response(value)
    return handler


def listen_warning(listen: str, port: int, out_dir: str, input_dir: str) -> str | None:
    """The warning printed when ``--listen`` is not a loopback address."""
    if is_loopback_host(listen):
        return None
    return (f"WARNING: stepwise serve is listening on {listen}: anyone who can reach this machine on port {port} "
            f"can run prompts, upload files and read every image in {out_dir} and {input_dir}. It has no "
            f"authentication; use it on a trusted network only (see SECURITY in the README).")


def serve(port: int = 8188, listen: str = "127.0.0.1", out_dir: str = "output", input_dir: str = "input",
          frontend: str | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = make_app(out_dir, input_dir, listen=listen, frontend=frontend)
    warning = listen_warning(listen, port, out_dir, input_dir)
    if warning:
        print(warning, flush=True)
    print(f"Stepwise serve: the ComfyUI frontend with Stepwise nodes on the demo model at http://{listen}:{port}/ "
          f"(a way to try the pack, not a ComfyUI replacement)", flush=True)
    web.run_app(app, host=listen, port=port, print=None, access_log=None)
