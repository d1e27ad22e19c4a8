"""The labelled grid of a sweep (XY Plot (Stepwise), ``stepwise sweep``): cells kept as uint8, shrunk once so the
whole grid fits :data:`MAX_GRID_PIXELS`, X values across, Y values down, one grid per Z value, a note under each
cell (its time, or why it failed)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy

__all__ = ["GridBuilder", "MAX_GRID_PIXELS", "format_value"]

MAX_GRID_PIXELS = 4096 * 4096  # larger grids shrink their cells to fit (the cells themselves stay full size)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _to_uint8(images) -> numpy.ndarray:
    """An IMAGE batch (B, H, W, C) in 0..1 (or uint8) -> one uint8 (H, B*W, 3) strip (a batch shows side by side)."""
    import torch

    if isinstance(images, torch.Tensor):
        arr = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    else:
        arr = numpy.asarray(images)
        if arr.dtype != numpy.uint8:
            arr = numpy.round(numpy.clip(arr.astype(numpy.float32), 0, 1) * 255).astype(numpy.uint8)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.shape[-1] == 1:
        arr = numpy.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]
    return numpy.concatenate(list(arr), axis=1)


@dataclass
class _Cell:
    image: numpy.ndarray | None
    note: str
    failed: bool = False


class GridBuilder:
    """Collects cells (kept as uint8, shrunk once so the whole grid fits :data:`MAX_GRID_PIXELS`) and draws the
    labelled grid(s): X values across, Y values down, one grid per Z value, the time under each cell."""

    def __init__(self, x: tuple[str, list], y: tuple[str, list] | None, z: tuple[str, list] | None) -> None:
        self.x, self.y, self.z = x, y, z
        self.nx, self.ny, self.nz = len(x[1]), len(y[1]) if y else 1, len(z[1]) if z else 1
        self.cells: dict[tuple[int, int, int], _Cell] = {}
        self.scale: float | None = None

    @property
    def count(self) -> int:
        return self.nx * self.ny * self.nz

    def _shrink(self, arr: numpy.ndarray) -> numpy.ndarray:
        from PIL import Image

        if self.scale is None:
            h, w = arr.shape[:2]
            self.scale = min(1.0, math.sqrt(MAX_GRID_PIXELS / max(1, self.count * h * w)))
        if self.scale >= 1.0:
            return arr
        h, w = arr.shape[:2]
        size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
        return numpy.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS))

    def add(self, ix: int, iy: int, iz: int, images, note: str) -> None:
        self.cells[(ix, iy, iz)] = _Cell(self._shrink(_to_uint8(images)), note)

    def fail(self, ix: int, iy: int, iz: int, message: str) -> None:
        self.cells[(ix, iy, iz)] = _Cell(None, message, failed=True)

    def render(self) -> list:
        """One PIL image per Z value, all the same size."""
        from PIL import Image, ImageDraw

        shown = [c.image for c in self.cells.values() if c.image is not None]
        cw = max((a.shape[1] for a in shown), default=256)
        ch = max((a.shape[0] for a in shown), default=256)
        fs = max(12, min(40, ch // 14))
        font, small = _font(fs), _font(max(10, int(fs * 0.75)))
        pad = max(4, fs // 3)
        xlab = [format_value(v) for v in self.x[1]]
        ylab = [format_value(v) for v in self.y[1]] if self.y else [""]
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

        def width(text, f):
            return int(probe.textlength(text, font=f)) if text else 0

        left = (max(width(t, font) for t in ylab) + 2 * pad) if self.y else pad
        left = max(left, width(f"{self.y[0]} ↓", small) + 2 * pad) if self.y else left
        title_h = fs + 2 * pad
        head_h = fs + 2 * pad
        note_h = int(fs * 0.75) + pad
        top = title_h + head_h
        W = left + self.nx * (cw + pad) + pad
        H = top + self.ny * (ch + note_h + pad) + pad
        out = []
        for iz in range(self.nz):
            img = Image.new("RGB", (W, H), (255, 255, 255))
            d = ImageDraw.Draw(img)
            title = f"x: {self.x[0]}" + (f"   y: {self.y[0]}" if self.y else "")
            if self.z:
                title = f"{self.z[0]} = {format_value(self.z[1][iz])}   " + title
            d.text((pad, pad), title, fill=(0, 0, 0), font=font)
            for ix, label in enumerate(xlab):
                x0 = left + ix * (cw + pad)
                d.text((x0 + (cw - width(label, font)) // 2, title_h + pad // 2), label, fill=(0, 0, 0), font=font)
            for iy, label in enumerate(ylab):
                y0 = top + iy * (ch + note_h + pad)
                d.text((pad, y0 + (ch - fs) // 2), label, fill=(0, 0, 0), font=font)
                for ix in range(self.nx):
                    x0 = left + ix * (cw + pad)
                    cell = self.cells.get((ix, iy, iz))
                    if cell is None:
                        continue
                    if cell.image is not None:
                        img.paste(Image.fromarray(cell.image), (x0, y0))
                    else:
                        d.rectangle([x0, y0, x0 + cw - 1, y0 + ch - 1], outline=(200, 0, 0), width=3)
                        _wrap(d, cell.note, (x0 + pad, y0 + pad), cw - 2 * pad, small, (200, 0, 0))
                    if not cell.failed:
                        d.text((x0, y0 + ch + 1), cell.note, fill=(90, 90, 90), font=small)
            out.append(img)
        return out


def _wrap(draw, text: str, xy: tuple[int, int], width: int, font, fill) -> None:
    x, y = xy
    line = ""
    step = int(getattr(font, "size", 12) * 1.2)
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            draw.text((x, y), line, fill=fill, font=font)
            y += step
            line = word
        else:
            line = trial
    if line:
        draw.text((x, y), line, fill=fill, font=font)


