"""latent2rgb factors of the common latent formats (channels x RGB), for cheap previews."""
from __future__ import annotations

from typing import Any

__all__ = ["LATENT_RGB", "rgb_factors_of"]

#: name -> (factors: C rows of (R, G, B), bias or None); values as published with each model family
LATENT_RGB: dict[str, tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float] | None]] = {
    "SD15": (((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
              (-0.2120, -0.2616, -0.7177)), None),
    "SDXL": (((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
              (-0.3165, -0.2492, -0.2188)), (0.1084, -0.0175, -0.0011)),
    "SD3": (((-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458),
             (0.0856, 0.0339, 0.0902), (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309),
             (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358), (-0.0194, 0.0020, 0.0669),
             (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
             (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293),
             (-0.1448, -0.1463, -0.1189)), (0.2394, 0.2135, 0.1925)),
    "Flux": (((-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433),
              (-0.0174, 0.0160, 0.0617), (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115),
              (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259), (-0.0245, 0.0250, 0.1180),
              (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
              (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499),
              (-0.1262, -0.0982, -0.0778)), (-0.0329, -0.0718, -0.0851)),
}


def rgb_factors_of(latent_format: Any):
    """(factors, bias) from a latent format: ours (``rgb_factors``/``rgb_bias``), ComfyUI's
    (``latent_rgb_factors``/``latent_rgb_factors_bias``), or a name in :data:`LATENT_RGB`."""
    if isinstance(latent_format, str):
        if latent_format not in LATENT_RGB:
            raise ValueError(f"latent format {latent_format!r} has no latent2rgb factors; known: {', '.join(LATENT_RGB)}")
        return LATENT_RGB[latent_format]
    factors = getattr(latent_format, "rgb_factors", None) or getattr(latent_format, "latent_rgb_factors", None)
    bias = getattr(latent_format, "rgb_bias", None) or getattr(latent_format, "latent_rgb_factors_bias", None)
    if factors is None:
        name = type(latent_format).__name__
        if name in LATENT_RGB:
            return LATENT_RGB[name]
        return None
    return tuple(tuple(row) for row in factors), (tuple(bias) if bias is not None else None)
