"""The standalone runtime's host: a node's run reports to an :class:`Observer` (progress, previews, images shown on
the node, interrupt, notices, the UI output ``stepwise serve`` sends to the editor)."""
from __future__ import annotations

import contextlib
import contextvars
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from ..preview import PreviewHook, make_decoder
from ..sampling import RunInfo
from . import Host

__all__ = ["Observer", "ObservedHost", "observe", "current_observer"]


@dataclass
class Observer:
    """What the standalone runtime wants to hear from a node run: each step, previews, images shown on the node,
    progress text, notices; an interrupt flag checked every step; the runs (for the recipes of saved images)."""

    on_step: Callable[[int, torch.Tensor, torch.Tensor, int], None] | None = None
    on_preview: Callable[[int, int, torch.Tensor], None] | None = None
    #: ``show_images(images, prompt, extra_pnginfo)`` -> the UI's image entries (metadata: prompt, workflow, stepwise)
    show_images: Callable[..., list[dict]] | None = None
    interrupt: threading.Event | None = None
    runs: list[RunInfo] = field(default_factory=list)
    show_progress: bool = False
    want_ui: bool = False
    #: previews for nodes without their own preview method (an editor's global default)
    default_preview: Any = None
    #: a node's notes to the user (e.g. why a seamless hand-off restarted)
    on_notice: Callable[[str], None] | None = None
    #: a line of progress for the running node (the XY Plot's "cell i/N")
    on_progress_text: Callable[[str], None] | None = None

    def check_interrupt(self) -> None:
        if self.interrupt is not None and self.interrupt.is_set():
            raise InterruptedError("sampling interrupted")

    @property
    def host(self) -> "ObservedHost":
        return ObservedHost(self)


class ObservedHost(Host):
    name = "standalone"

    def __init__(self, observer: Observer) -> None:
        self.observer = observer

    def step_callback(self, model: Any, steps: int, preview=None, node_id: Any = None):
        o = self.observer
        hook = None
        preview = preview if preview is not None else o.default_preview
        if preview is not None and preview.method != "none":
            def sink(step: int, total: int, image) -> None:
                if image is not None and o.on_preview is not None:
                    o.on_preview(step, total, image)

            fmt = getattr(model, "latent_format", None)
            hook = PreviewHook(make_decoder(preview.method, fmt, notice=o.on_notice), sink, preview)

        def callback(step, x0, x, total):
            o.check_interrupt()
            if hook is not None:
                hook(step, x0, x, total)
            if o.on_step is not None:
                o.on_step(step, x0, x, total)

        return callback, not o.show_progress

    def check_interrupt(self) -> None:
        self.observer.check_interrupt()

    def record(self, info: RunInfo) -> None:
        self.observer.runs.append(info)

    def wants_ui(self) -> bool:
        return self.observer.want_ui

    def show_images(self, images, prompt=None, extra_pnginfo=None) -> list[dict]:
        if self.observer.show_images is None:
            return []
        return self.observer.show_images(images, prompt, extra_pnginfo)

    def progress_text(self, text: str, node_id: Any = None) -> None:
        if self.observer.on_progress_text is not None:
            self.observer.on_progress_text(text)

    def notice(self, text: str, node_id: Any = None) -> None:
        super().notice(text, node_id)
        if self.observer.on_notice is not None:
            self.observer.on_notice(f"node {node_id}: {text}" if node_id is not None else text)


_OBSERVER: contextvars.ContextVar[Observer | None] = contextvars.ContextVar("stepwise_observer", default=None)


def current_observer() -> Observer | None:
    return _OBSERVER.get()


@contextlib.contextmanager
def observe(observer: Observer) -> Iterator[Observer]:
    """Within the block, Stepwise nodes run on the standalone host reporting to ``observer``."""
    token = _OBSERVER.set(observer)
    try:
        yield observer
    finally:
        _OBSERVER.reset(token)
