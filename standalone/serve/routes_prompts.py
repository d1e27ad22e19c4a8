"""Prompts, the queue, the history and jobs: ``/prompt``, ``/queue``, ``/interrupt``, ``/free``, ``/history``,
``/jobs``."""
from __future__ import annotations

import re
import time
import uuid

from aiohttp import web

from .hygiene import BadRequest, check_storable, json_body
from .jobs import JobQueryError, job_detail, job_list
from .state import ServerState

__all__ = ["add_prompt_routes", "MAX_PROMPT_BYTES"]

MAX_PROMPT_BYTES = 16 * 1024 * 1024  # a POST /prompt body


def _ids(value, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise BadRequest(f"{what}: expected a list of prompt ids")
    return [str(v) for v in value]


def _prompt_error(kind: str, message: str, details: str, status: int = 400) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message, "details": details, "extra_info": {}},
                              "node_errors": {}}, status=status)


def _request_problems(body: dict, extra) -> list[str]:
    problems = []
    if not isinstance(extra, dict):
        problems.append(f"extra_data: expected an object, got {type(extra).__name__}")
    else:
        if "extra_pnginfo" in extra and not isinstance(extra["extra_pnginfo"], dict):
            problems.append(f"extra_data.extra_pnginfo: expected an object, got "
                            f"{type(extra['extra_pnginfo']).__name__}")
        elif isinstance(extra.get("extra_pnginfo"), dict) and "workflow" in extra["extra_pnginfo"] and \
                not isinstance(extra["extra_pnginfo"]["workflow"], (dict, type(None))):
            problems.append("extra_data.extra_pnginfo.workflow: expected an object")
    for key, kinds in (("client_id", (str,)), ("prompt_id", (str,)), ("front", (bool,)), ("number", (int, float))):
        if key in body and body[key] is not None and (not isinstance(body[key], kinds) or
                                                      (key == "number" and isinstance(body[key], bool))):
            problems.append(f"{key}: expected {'a string' if kinds == (str,) else kinds[0].__name__}")
    if isinstance(body.get("prompt_id"), str) and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", body["prompt_id"]):
        problems.append("prompt_id: use 1-128 letters, digits or _ . : -")
    if isinstance(body.get("client_id"), str) and len(body["client_id"]) > 256:
        problems.append("client_id: at most 256 characters")
    return problems


def add_prompt_routes(both, state: ServerState) -> None:
    @both("POST", "/prompt")
    async def post_prompt(request):
        try:
            body = await json_body(request, object, "prompt request", MAX_PROMPT_BYTES)
        except BadRequest as exc:
            if exc.status == 413:
                return _prompt_error("invalid_prompt", "Prompt too large", str(exc), 413)
            return _prompt_error("invalid_prompt", "Invalid JSON", str(exc))
        if not isinstance(body, dict) or "prompt" not in body:
            return _prompt_error("no_prompt", "No prompt provided", "No prompt provided")
        extra = body.get("extra_data", {})
        if extra is None:
            extra = {}
        problems = _request_problems(body, extra)
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
            kept["client_id"] = extra["client_id"][:256]
        kept["create_time"] = int(time.time() * 1000)
        check_storable(kept, "extra_data")
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        item = state.enqueue(body["prompt"], kept, prompt_id, bool(body.get("front")))
        return web.json_response({"prompt_id": prompt_id, "number": item.number, "node_errors": {}})

    @both("GET", "/prompt")
    async def get_prompt(request):
        return web.json_response(state.queue_info())

    @both("GET", "/jobs")
    async def jobs(request):
        running, queued, history = state.snapshot()
        try:
            return web.json_response(job_list(request.rel_url.query, running, queued, history))
        except JobQueryError as exc:
            raise BadRequest(str(exc)) from None

    @both("GET", "/jobs/{job_id}")
    async def job_one(request):
        running, queued, history = state.snapshot()
        job = job_detail(request.match_info["job_id"], running, queued, history)
        return web.json_response(job) if job is not None else web.json_response({"error": "Job not found"},
                                                                                  status=404)

    @both("GET", "/queue")
    async def get_queue(request):
        running, queued, _ = state.snapshot()
        return web.json_response({"queue_running": [q.as_list() for q in running],
                                  "queue_pending": [q.as_list() for q in queued]})

    @both("POST", "/queue")
    async def post_queue(request):
        body = await json_body(request, dict, "queue request", 1024 * 1024)
        delete = _ids(body.get("delete"), "delete")
        with state.lock:
            if body.get("clear"):
                state.queue.clear()
            for pid in delete:
                state.queue[:] = [q for q in state.queue if q.prompt_id != pid]
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
            if not max_items.isdigit() or len(max_items) > 9:
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
