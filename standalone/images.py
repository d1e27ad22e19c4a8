"""Writing images without partial files: PNGs go to a temporary name, then are renamed."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy
import torch
from PIL import Image

from ..sampling.latent_format import LatentFormat

__all__ = ["save_png", "encode_png", "write_bytes_atomic", "latent_to_rgb", "latent_to_rgb_png"]


def encode_png(image: Image.Image, pnginfo=None) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=pnginfo, compress_level=4)
    return buf.getvalue()


def save_png(image: Image.Image, path: str | Path, pnginfo=None) -> Path:
    return write_bytes_atomic(path, encode_png(image, pnginfo))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write to a temporary name in the same folder, then rename: never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def latent_to_rgb(latent: torch.Tensor, fmt: LatentFormat) -> torch.Tensor:
    """(B,C,H,W) VAE-space latent -> (B,H,W,3) in 0..1 through the format's linear RGB factors."""
    if fmt.rgb_factors is None:
        raise ValueError(f"latent format {fmt.name} has no latent2rgb factors")
    z = fmt.process_in(latent.float())
    factors = torch.tensor(fmt.rgb_factors, dtype=z.dtype, device=z.device)
    rgb = torch.einsum("bchw,cr->bhwr", z, factors)
    if fmt.rgb_bias is not None:
        rgb = rgb + torch.tensor(fmt.rgb_bias, dtype=z.dtype, device=z.device)
    return ((rgb + 1.0) / 2.0).clamp(0, 1)


def latent_to_rgb_png(latent: torch.Tensor, fmt: LatentFormat, path: str | Path, scale: int = 8) -> Path:
    rgb = latent_to_rgb(latent[:1], fmt)[0]
    arr = (rgb.cpu().numpy() * 255).astype(numpy.uint8)
    img = Image.fromarray(arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return save_png(img, path)
