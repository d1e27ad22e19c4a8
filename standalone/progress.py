"""Progress of a workflow run, suited to where it goes.

On a terminal: a bar per sampler node (``[k/N] node 5 KSampler``) whose rate counts from the node's start. On a
file or a pipe: plain lines, no carriage returns: one when a node starts, one when it finishes (with its time), and
a ``step i/N`` line at most every few seconds while a sampler runs; the ``[k/N]`` prefix says how far the
workflow is. Optionally, each step's latent preview is written to a folder.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["RunProgress"]


class RunProgress:
    def __init__(self, stream: TextIO | None = None, preview_dir: Path | None = None, latent_format: Any = None,
                 quiet: bool = False, tty: bool | None = None, step_interval: float = 5.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.preview_dir = preview_dir
        self.latent_format = latent_format
        self.quiet = quiet
        self.step_interval = step_interval
        self.order: list[str] = []
        self.node = ("", "")
        self.started = 0.0
        self.last_line = 0.0
        self.bar = None
        self.label = ""
        self.own_previews: set[str] = set()

    # --- the executor's callbacks --------------------------------------------------------------------------
    def plan(self, order: list[str]) -> None:
        """The nodes that will run, in order (for ``[k/N]``)."""
        self.order = list(order)

    def _prefix(self) -> str:
        nid, class_type = self.node
        if nid in self.order:
            return f"[{self.order.index(nid) + 1}/{len(self.order)}] node {nid} {class_type}"
        return f"node {nid} {class_type}"

    def _line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def set_node(self, nid: str, class_type: str) -> None:
        self.finish_node()
        self.node = (nid, class_type)
        self.label = ""
        self.started = self.last_line = time.perf_counter()
        if not self.tty:
            self._line(f"{self._prefix()}: start")

    def finish_node(self) -> None:
        """Close the running node's bar, or (lines) say it finished and how long it took."""
        self.close()
        if self.node[0] and not self.tty:
            self._line(f"{self._prefix()}: done in {time.perf_counter() - self.started:.2f} s")
        self.node = ("", "")

    def on_progress_text(self, text: str) -> None:
        """A node's own progress line (the XY Plot's "cell i/N"): the next bar is labelled with it."""
        self.close()
        self.label = f" {text}"
        if not self.tty:
            self._line(f"{self._prefix()}: {text}")

    def on_step(self, step: int, x0, x, total: int) -> None:
        if self.tty and not self.quiet:
            self._bar_step(step, total)
        elif not self.tty:
            now = time.perf_counter()
            if now - self.last_line >= self.step_interval and step + 1 < total:
                self.last_line = now
                self._line(f"{self._prefix()}: step {step + 1}/{total}{self.label}")
        if self.preview_dir is not None and self.node[1] not in self.own_previews and self.latent_format is not None:
            from .images import latent_to_rgb_png

            fmt = self.latent_format
            latent = x0[:1].detach().float().cpu() / fmt.scale_factor + fmt.shift_factor  # x0 is in model space
            latent_to_rgb_png(latent, fmt, self.preview_dir / f"node{self.node[0]}_step{step + 1:03}.png")

    def _bar_step(self, step: int, total: int) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=f"{self._prefix()}{self.label}", unit="step", leave=True,
                            file=self.stream, smoothing=0, dynamic_ncols=True)
            self.bar.start_t = self.started  # the rate counts from the node's start, not from its first step
        self.bar.update(step + 1 - self.bar.n)
        if step + 1 >= total:
            self.close()

    def on_preview(self, step: int, total: int, image) -> None:
        """A node's own (throttled, method-specific) preview, e.g. from an Efficient node."""
        self.own_previews.add(self.node[1])
        if self.preview_dir is not None:
            from PIL import Image

            from .images import save_png

            save_png(Image.fromarray(image.numpy()), self.preview_dir / f"node{self.node[0]}_step{step + 1:03}.png")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
