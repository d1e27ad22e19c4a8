"""Turning a node's MODEL input into a sampling backend, and per-run observers.

A MODEL is either a standalone model (``sampling.StandaloneModel``, used by the golden runner,
tests and the standalone runtime) or, inside ComfyUI, a ModelPatcher, which
``comfy_bridge.ComfyBackend`` wraps lazily so that nothing imports ``comfy`` outside ComfyUI.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from ..sampling.core import RunInfo

__all__ = ["as_backend", "is_comfy_model", "Observer", "observe", "current_observer"]


def is_comfy_model(model: Any) -> bool:
    return hasattr(model, "get_model_object") and hasattr(model, "model_options") and hasattr(model, "load_device")


def as_backend(model: Any):
    if hasattr(model, "sample") and hasattr(model, "model_sampling") and hasattr(model, "fix_empty_latent_channels"):
        return model
    if is_comfy_model(model):
        from .comfy_bridge import ComfyBackend

        return ComfyBackend(model)
    raise ValueError(f"model: expected a MODEL (a ComfyUI model or a Stepwise standalone model), "
                     f"got {type(model).__name__}")


@dataclass
class Observer:
    """The standalone side of a node run: each step's callback, previews, images shown on the node,
    the run's :class:`RunInfo`, and an interrupt flag checked every step."""

    on_step: Callable[[int, torch.Tensor, torch.Tensor, int], None] | None = None
    on_preview: Callable[[int, int, torch.Tensor], None] | None = None
    show_images: Callable[[torch.Tensor], list[dict]] | None = None
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


_OBSERVER: contextvars.ContextVar[Observer | None] = contextvars.ContextVar("stepwise_observer", default=None)


def current_observer() -> Observer | None:
    return _OBSERVER.get()


@contextlib.contextmanager
def observe(observer: Observer) -> Iterator[Observer]:
    """Within the block, Stepwise sampler nodes report to ``observer`` (standalone runs and tests)."""
    token = _OBSERVER.set(observer)
    try:
        yield observer
    finally:
        _OBSERVER.reset(token)
