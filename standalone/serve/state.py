"""The server's state: the queue, the history, the settings, the open sockets, and the executor thread that runs
one prompt at a time with ``stepwise run``'s executor."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...preview import PreviewConfig
from ..core_nodes import RunContext, use_context
from ...host import Observer, observe
from ..registry import node_registry
from ..workflow import Prompt, WorkflowError, execute, parse_workflow
from .hygiene import BadRequest

__all__ = ["QueueItem", "ServerState", "MAX_HISTORY", "MAX_HISTORY_BYTES", "MAX_QUEUE", "FRONTEND_VERSION"]

FRONTEND_VERSION = "1.27.10"
PREVIEW_IMAGE = 1  # ComfyUI's binary event type for a preview, followed by a format id (1 = JPEG)
PREVIEW_IMAGE_WITH_METADATA = 4  # followed by the metadata length, the metadata JSON and the image
PROGRESS_TEXT = 3  # followed by the node id length, the node id and the text
MAX_HISTORY = 200  # entries
MAX_HISTORY_BYTES = 64 * 1024 * 1024  # of JSON across all entries
MAX_QUEUE = 256  # prompts waiting
log = logging.getLogger("stepwise.serve")


@dataclass
class QueueItem:
    """One queued prompt. On the wire (``/queue``, history) it is ComfyUI's list ``[number, id, prompt, extra,
    outputs]``."""

    number: int
    prompt_id: str
    prompt: dict
    extra: dict
    outputs: list = field(default_factory=list)

    def as_list(self) -> list:
        return [self.number, self.prompt_id, self.prompt, self.extra, list(self.outputs)]


class ServerState:
    def __init__(self, out_dir: Path, input_dir: Path, frontend_version: str = FRONTEND_VERSION) -> None:
        self.frontend_version = frontend_version
        self.out_dir = Path(out_dir).resolve()
        self.input_dir = Path(input_dir).resolve()
        self.temp_dir = self.out_dir / "temp"
        for d in (self.out_dir, self.input_dir, self.temp_dir):
            d.mkdir(parents=True, exist_ok=True)
        provide_example_inputs(self.input_dir)
        self.registry = node_registry()
        self.sockets: dict[str, Any] = {}
        self.client_features: dict[str, dict] = {}
        self.queue: list[QueueItem] = []
        self.running: QueueItem | None = None
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

    def enqueue(self, prompt_json: dict, extra: dict, prompt_id: str, front: bool) -> QueueItem:
        with self.lock:
            if len(self.queue) >= MAX_QUEUE:
                raise BadRequest(f"queue: {len(self.queue)} prompts are waiting (at most {MAX_QUEUE}); wait for "
                                 f"some to finish or clear the queue", 429)
            self.number += 1
            item = QueueItem(-self.number if front else self.number, prompt_id, prompt_json, extra)
            self.queue.append(item)
        self.wake.set()
        self.send("status", {"status": self.queue_info()})
        return item

    def snapshot(self) -> tuple[list[QueueItem], list[QueueItem], dict]:
        """(running, queued, history) under the lock."""
        with self.lock:
            return ([self.running] if self.running else []), list(self.queue), dict(self.history)

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
                self.queue.sort(key=lambda item: item.number)
                item = self.queue.pop(0)
                self.running = item
            try:
                self._run(item)
            except BaseException as exc:  # noqa: BLE001 - last resort: report, keep serving
                log.error("executor: prompt %s could not be run: %s", item.prompt_id, exc)
                try:
                    self._record(item, {}, "error", [["execution_error", {"exception_message": str(exc)[:2000]}]])
                except Exception:  # noqa: BLE001
                    pass
            finally:
                with self.lock:
                    self.running = None
                self.send("status", {"status": self.queue_info()})

    def _run(self, item: QueueItem) -> None:
        prompt_id, sid = item.prompt_id, item.extra.get("client_id")
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

        def show(images, prompt=None, extra_pnginfo=None) -> list[dict]:
            from ..core_nodes import show_on_node

            return show_on_node(images, prompt, extra_pnginfo)

        ctx = RunContext(output_dir=self.out_dir, input_dir=self.input_dir, temp_dir=self.temp_dir,
                         notice=lambda m: log.info(m))
        observer = Observer(on_step=on_step, on_preview=on_preview, show_images=show, interrupt=self.interrupt,
                            on_progress_text=lambda text: self.send_progress_text(text, current["node"], sid),
                            want_ui=True, default_preview=PreviewConfig("latent2rgb", min_interval_ms=100))
        status, messages = "success", [["execution_start", {"prompt_id": prompt_id, "timestamp": int(started * 1000)}]]
        try:
            workflow = item.extra.get("extra_pnginfo", {}).get("workflow")
            prompt = parse_workflow(item.prompt)
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

    def _record(self, item: QueueItem, outputs: dict, status: str, messages: list) -> None:
        """Keep a bounded history: at most MAX_HISTORY entries and MAX_HISTORY_BYTES of JSON. An entry that cannot be
        serialised is kept without the parts that fail, so every later read of the history succeeds."""
        entry = {
            "prompt": [item.number, item.prompt_id, item.prompt, item.extra, list(outputs)],
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
            "meta": {nid: {"node_id": nid, "display_node": nid} for nid in outputs},
        }
        try:
            size = len(json.dumps(entry, default=str))
        except (RecursionError, ValueError, TypeError):
            entry["prompt"] = [item.number, item.prompt_id, {}, {}, list(outputs)]
            entry["outputs"] = {}
            size = len(json.dumps(entry, default=str))
        with self.lock:
            self.history[item.prompt_id] = entry
            self.history_bytes[item.prompt_id] = size
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
    """The pictures the examples load, drawn into the input folder if they are not there yet."""
    from ..demo import provide_example_inputs as provide

    provide(input_dir)


def _class_of(prompt_json: Any, node_id: str) -> str | None:
    node = prompt_json.get(node_id) if isinstance(prompt_json, dict) else None
    ctype = node.get("class_type") if isinstance(node, dict) else None
    return ctype if isinstance(ctype, str) else None
