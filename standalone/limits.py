"""Budgets of the standalone runtime that a small input must not get around: the pixels of an image, read from its
header before it is decoded (uploads, LoadImage), and the memory a run may plan to use (``sampling.resources``).

Both are process settings with flags on ``stepwise run``/``serve``: ``--max-image-pixels`` and ``--memory-budget``.
"""
from __future__ import annotations

import io
from pathlib import Path

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "max_image_pixels", "set_max_image_pixels", "image_header",
           "parse_size", "IMAGE_FORMATS"]

DEFAULT_MAX_IMAGE_PIXELS = 64_000_000  # 64 MP: an 8000x8000 picture
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
_LIMIT = [DEFAULT_MAX_IMAGE_PIXELS]


def max_image_pixels() -> int:
    return _LIMIT[0]


def set_max_image_pixels(pixels: int) -> int:
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f"--max-image-pixels: expected a positive whole number, got {pixels!r}")
    _LIMIT[0] = pixels
    return pixels


def image_header(source: bytes | str | Path, what: str = "image") -> tuple[str, int, int]:
    """(format, width, height) from an image's header, without decoding its pixels; a ValueError naming ``what``
    when it is not a PNG/JPEG/WebP/GIF/BMP or has more pixels than :func:`max_image_pixels`."""
    from PIL import Image

    if isinstance(source, bytes) and not source:
        raise ValueError(f"{what}: the file is empty")
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, below
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                fmt, (width, height) = img.format, img.size
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise ValueError(f"{what}: not a readable image (allowed: {', '.join(IMAGE_FORMATS)})") from None
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"{what}: {fmt} images are not accepted (allowed: {', '.join(IMAGE_FORMATS)})")
    if width * height > max_image_pixels():
        raise ValueError(f"{what}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the limit of "
                         f"{max_image_pixels() / 1e6:g} (--max-image-pixels)")
    return fmt, width, height


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40}


def parse_size(text: str, option: str) -> int:
    """'8GB', '512m', '1.5g' or a number of bytes -> bytes; a ValueError naming ``option`` otherwise."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"{option}: {text!r} is not a size like 8GB, 512MB or 1073741824")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < 1:
        raise ValueError(f"{option}: {text!r} is not a positive size")
    return value
