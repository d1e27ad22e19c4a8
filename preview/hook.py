"""Per-step previews: the preview-method registry, throttling, batch grids and the step hook.

A :class:`PreviewHook` is a sampler callback ``(step, x0, x, total_steps)``. It decodes a preview
only when the throttle allows (and always on the last step), then hands ``(step, total, image)`` to
a sink: ComfyUI's progress bar inside ComfyUI, tqdm or files standalone. It knows nothing about
samplers, and never touches any global setting: the method is per hook.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .decoders import Latent2RGB, TAESDDecoder, to_uint8_image
from .formats import rgb_factors_of

__all__ = ["PREVIEW_METHODS", "PreviewConfig", "Throttle", "PreviewHook", "make_decoder", "batch_grid",
           "check_preview_method"]

#: method -> what it uses; "auto" is TAESD when its decoder is available, else latent2rgb
PREVIEW_METHODS: dict[str, str] = {
    "auto": "TAESD when a decoder is available, else latent2rgb",
    "latent2rgb": "a per-pixel linear map of the latent (fast)",
    "taesd": "a tiny conv decoder (better colours, more compute)",
    "none": "no previews; progress only",
}

Sink = Callable[[int, int, Any], None]


def check_preview_method(method: str) -> str:
    if method not in PREVIEW_METHODS:
        raise ValueError(f"preview_method: unknown method {method!r}; allowed: {', '.join(PREVIEW_METHODS)}")
    return method


@dataclass(frozen=True)
class PreviewConfig:
    method: str = "auto"
    min_interval_ms: float = 250.0
    batch_grid: bool = False
    max_size: int = 512
    #: previews may take at most this share of the wall time (an expensive decoder waits longer)
    budget: float = 0.02


class Throttle:
    """At most one preview per ``min_interval_ms`` and within a share ``budget`` of the elapsed
    time; always the last step."""

    def __init__(self, min_interval_ms: float, clock: Callable[[], float] = time.monotonic,
                 budget: float | None = None) -> None:
        self.interval = min_interval_ms / 1000.0
        self.clock = clock
        self.budget = budget
        self.last = -math.inf
        self.next_at = -math.inf

    def ready(self, is_last: bool) -> bool:
        now = self.clock()
        if is_last or (now - self.last >= self.interval and now >= self.next_at):
            self.last = now
            return True
        return False

    def spent(self, seconds: float) -> None:
        """Record what a preview cost; the next one waits until it is within the budget."""
        if self.budget:
            self.next_at = self.last + seconds / self.budget  # started at `last`, took `seconds`


_TAESD_NOTED: set = set()


def _note_once(key, text: str, notice: Callable[[str], None] | None) -> None:
    if key in _TAESD_NOTED:
        return
    _TAESD_NOTED.add(key)
    logging.getLogger("stepwise").warning(text)
    if notice is not None:
        notice(text)


def make_decoder(method: str, latent_format: Any, taesd: Callable[[], Any] | None = None,
                 notice: Callable[[str], None] | None = None):
    """The decoder for a method: ``None`` for "none"; "taesd" and "auto" try ``taesd()`` (a
    factory returning a decoder or None); "auto" falls back to latent2rgb quietly (as ComfyUI), "taesd" says
    once that it does (as ComfyUI logs it)."""
    check_preview_method(method)
    if method == "none":
        return None
    if method in ("taesd", "auto") and taesd is not None:
        dec = taesd()
        if dec is not None:
            return dec
    if method == "taesd":
        name = getattr(latent_format, "taesd_decoder_name", None) or getattr(latent_format, "name", "this model")
        _note_once(("taesd", name), f"preview_method taesd: no TAESD decoder for {name} was found (models/vae_approx/"
                   f"{name}.*); showing latent2rgb previews instead", notice)
    factors = rgb_factors_of(latent_format)
    if factors is None:
        return None
    return Latent2RGB(*factors)


def batch_grid(images: list[torch.Tensor]) -> torch.Tensor:
    """Tile (H, W, 3) images into a near-square grid."""
    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w, c = images[0].shape
    grid = images[0].new_zeros((rows * h, cols * w, c))
    for k, img in enumerate(images):
        r, q = divmod(k, cols)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = img
    return grid


class PreviewHook:
    """The sampler callback that produces throttled previews for a sink."""

    def __init__(self, decoder: Any, sink: Sink, config: PreviewConfig = PreviewConfig(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.decoder = decoder
        self.sink = sink
        self.config = config
        self.throttle = Throttle(config.min_interval_ms, clock, config.budget)
        self.previews = 0
        self.seconds = 0.0  # wall time spent decoding previews

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.config.batch_grid and x0.shape[0] > 1:
                return to_uint8_image(batch_grid([self.decoder(x) for x in x0]))
            return to_uint8_image(self.decoder(x0[0]))

    def __call__(self, step: int, x0: torch.Tensor, x: torch.Tensor, total: int) -> None:
        image = None
        if self.decoder is not None and self.throttle.ready(step + 1 >= total):
            start = time.perf_counter()
            image = self.decode(x0)
            took = time.perf_counter() - start
            self.seconds += took
            self.throttle.spent(took)
            self.previews += 1
        self.sink(step, total, image)
