"""``stepwise serve``: the real ComfyUI frontend, our js/ extension and the demo model.

A way to try and test the pack in the editor, not a ComfyUI replacement: it implements the part of ComfyUI's HTTP
and WebSocket API that the frontend needs to load, list our nodes and the core-node stand-ins (``/object_info``),
queue a prompt, report progress and previews over ``/ws`` and show results (``/view``, ``/history``). Prompts run
one at a time with ``stepwise run``'s executor.

Modules by concern: ``state`` (queue, history, the executor thread), ``hygiene`` (origin/host checks, bodies,
paths, stored data), ``routes_prompts``, ``routes_files``, ``routes_frontend``, ``routes_stepwise``, ``jobs``.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from .hygiene import BadRequest, check_request_origin, is_loopback_host, os_error_reason
from .routes_files import add_file_routes, check_image_bytes, safe_file_headers, MAX_UPLOAD_BYTES
from .routes_frontend import JS_DIR, add_frontend_routes, node_info
from .routes_prompts import add_prompt_routes
from .routes_stepwise import add_stepwise_routes
from .state import FRONTEND_VERSION, ServerState

__all__ = ["make_app", "serve", "node_info", "FRONTEND_VERSION", "check_request_origin", "is_loopback_host",
           "listen_warning", "safe_file_headers", "check_image_bytes", "STATE_KEY"]

log = logging.getLogger("stepwise.serve")
STATE_KEY = web.AppKey("stepwise_state", ServerState)


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


def _guard(loopback_bind: bool):
    """Refuse foreign origins; turn every error a request can cause into a one-line 4xx. A 500 is left only for
    a bug in a handler (logged with its traceback)."""
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
        except OSError as exc:  # a path the checks let through but the file system refuses (loops, races)
            status, reason = os_error_reason(exc)
            response = web.json_response({"error": reason}, status=status)
        except RecursionError:
            response = web.json_response({"error": "request: nested too deeply"}, status=400)
        except Exception as exc:  # noqa: BLE001 - a handler bug must not leak a traceback to the client
            log.exception("request %s %s failed", request.method, request.path)
            response = web.json_response({"error": f"{type(exc).__name__}: {exc}"[:500]}, status=500)
        if isinstance(response, web.StreamResponse) and not response.prepared:
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response
    return guard


def make_app(out_dir: str | Path = "output", input_dir: str | Path = "input",
             listen: str = "127.0.0.1", frontend: str | Path | None = None) -> web.Application:
    root, version = frontend_root(frontend)
    state = ServerState(Path(out_dir), Path(input_dir), version)
    routes = web.RouteTableDef()

    def both(method: str, path: str):
        """A route under its ComfyUI path and under /api (the newer frontends' prefix)."""
        def deco(fn):
            routes.route(method, path)(fn)
            routes.route(method, "/api" + path)(fn)
            return fn
        return deco

    add_frontend_routes(routes, both, state, root)
    add_stepwise_routes(both)
    add_prompt_routes(both, state)
    add_file_routes(both, state)
    app = web.Application(client_max_size=MAX_UPLOAD_BYTES, middlewares=[_guard(is_loopback_host(listen))])
    app.add_routes(routes)
    app.router.add_static("/extensions/stepwise", JS_DIR)
    app.router.add_static("/", root)
    app[STATE_KEY] = state

    async def on_startup(app):
        state.loop = asyncio.get_running_loop()
        state.worker.start()

    app.on_startup.append(on_startup)
    return app


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
