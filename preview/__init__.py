"""Latent previews for the sampler callback: latent2rgb, TAESD-shaped decoders, throttling, batch
grids. Pure torch: no ``comfy`` import (the ComfyUI sink lives in ``nodes/``)."""
from __future__ import annotations

from .decoders import Latent2RGB, TAESDDecoder, to_uint8_image
from .formats import LATENT_RGB, rgb_factors_of
from .hook import PREVIEW_METHODS, PreviewConfig, PreviewHook, Throttle, batch_grid, check_preview_method, make_decoder

__all__ = ["Latent2RGB", "TAESDDecoder", "to_uint8_image", "LATENT_RGB", "rgb_factors_of", "PREVIEW_METHODS",
           "PreviewConfig", "PreviewHook", "Throttle", "batch_grid", "check_preview_method", "make_decoder"]
