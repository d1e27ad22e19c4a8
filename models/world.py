"""The demo world: procedurally drawn pictures of a shape in a colour, at a position, on a background, and the
text encoder and VAE that go with them. Both demo models are made from it: the exact mixture
(:mod:`.mixture`, ground truth for exactness) and the trained network (:mod:`.tiny`, what few-step sampling looks
like on a real model).

Pieces (what a checkpoint gives besides its MODEL):
- :class:`DemoCLIP`: a text encoder over a small vocabulary (``context.mean(1) * TOKENS`` is the prompt's
  *evidence*: one entry per shape, colour, background and position word, plus the style);
- :class:`DemoVAE`: a fixed linear map between RGB and 4-channel latents at 1/8 resolution;
- :func:`render_latents`: the continuous world (size, position, rotation and colour jittered around the named
  values) drawn straight to latents, which the trained network learns.
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field

import numpy
import torch

from ..sampling import LatentFormat

__all__ = ["SHAPES", "COLOURS", "BACKGROUNDS", "POSITIONS", "DEMO_LATENT_FORMAT", "DemoVAE", "DemoCLIP", "Vocabulary",
           "shape_mask", "TOKENS", "rgb_to_code", "code_to_rgb", "COLOUR_CODES", "BACKGROUND_CODES",
           "SATURATION_DIRS", "CONTEXT_DIM", "evidence_dims", "prompt_evidence", "WorldJitter", "render_latents",
           "sample_attributes", "attribute_evidence", "inside", "layout_prior", "LAYOUT_CHANNELS",
           "named_evidence"]

# --- the world ------------------------------------------------------------------------------------------
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond")
COLOURS = {  # RGB in 0..1
    "red": (0.86, 0.12, 0.12), "green": (0.15, 0.70, 0.22), "blue": (0.15, 0.30, 0.90),
    "yellow": (0.95, 0.85, 0.15), "purple": (0.55, 0.20, 0.75), "orange": (0.98, 0.55, 0.10),
    "white": (0.96, 0.96, 0.96), "black": (0.06, 0.06, 0.07),
}
BACKGROUNDS = {"white": (0.93, 0.92, 0.88), "black": (0.08, 0.08, 0.10), "grey": (0.50, 0.50, 0.52),
               "sky": (0.55, 0.75, 0.95)}
POSITIONS = {"center": (0.5, 0.5), "left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.28),
             "bottom": (0.5, 0.72)}
SIZE = 0.24  # shape radius as a fraction of the smaller image side
TOKENS = 77  # context length; the model reads the token mean, so any repeat of the tokens is harmless

# The VAE's colour code, in model space: three channels are a linear map of RGB (in -1..1, as for SD
# VAEs) weighted towards luminance; the fourth fills every code up to the same norm CODE_RADIUS.
# Equal norms matter: the exact posterior at sigma_max would otherwise prefer the dullest
# components for pure-noise inputs (the "offset noise" effect, which real SD models show mildly).
# Small chroma weights make colour a late decision, after position and outline.
CODE_RADIUS = 0.8
_RGB_TO_CODE = torch.tensor([[0.15, 0.295, 0.055],      # 0.5 * luminance
                             [0.025, -0.025, 0.0],       # red - green
                             [-0.0125, -0.0125, 0.025]], # blue - yellow
                            dtype=torch.float64)
_CODE_TO_RGB = torch.linalg.inv(_RGB_TO_CODE)  # (3, 3)
SCALE_FACTOR = 0.18215

DEMO_LATENT_FORMAT = LatentFormat(
    name="StepwiseDemo", scale_factor=SCALE_FACTOR,
    rgb_factors=tuple(tuple(float(v) for v in row) for row in _CODE_TO_RGB.T.tolist()) + ((0.0, 0.0, 0.0),),
)


def rgb_to_code(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) RGB in -1..1 -> (..., 4) model-space code of norm CODE_RADIUS."""
    v = rgb.double() @ _RGB_TO_CODE.T
    fill = (CODE_RADIUS ** 2 - (v * v).sum(-1, keepdim=True)).clamp_min(0).sqrt()
    return torch.cat([v, fill], dim=-1)


def code_to_rgb(code: torch.Tensor) -> torch.Tensor:
    """(..., 4) model-space code -> (..., 3) RGB in -1..1 (linear: the fill channel is ignored)."""
    return code[..., :3].double() @ _CODE_TO_RGB.T


# --- drawing ----------------------------------------------------------------------------------------------
def _shape_tests(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Is the point (u, v), in units of the shape radius around its centre, inside each shape (SHAPES order)?"""
    au, av = u.abs(), v.abs()
    r = torch.hypot(u, v)
    theta = torch.atan2(u, -v)
    k = torch.cos(2.5 * theta)
    return (r <= 1.0,                                                               # circle
            torch.maximum(au, av) <= 0.86,                                          # square
            (v <= 0.8) & (v >= -1.0 + 2 * au * 1.05),                               # triangle
            r <= 0.55 + 0.45 * k.abs() ** 3,                                        # star
            ((au <= 0.32) & (av <= 1.0)) | ((av <= 0.32) & (au <= 1.0)),            # cross
            (r <= 1.0) & (r >= 0.55),                                               # ring
            au + av <= 1.05)                                                        # diamond


def inside(shape_index: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``shape_index`` (B,) into SHAPES; ``u, v`` (B, ...) in radius units -> (B, ...) bool."""
    tests = torch.stack(_shape_tests(u, v))  # (S, B, ...)
    index = shape_index.reshape((1, -1) + (1,) * (u.ndim - 1)).expand((1,) + tuple(u.shape))
    return tests.gather(0, index)[0]


def _inside(shape: str, u: numpy.ndarray, v: numpy.ndarray) -> numpy.ndarray:
    """The same test for one named shape on numpy arrays."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}")
    return _shape_tests(torch.from_numpy(u), torch.from_numpy(v))[SHAPES.index(shape)].numpy()


def shape_mask(shape: str, position: str, height: int, width: int, supersample: int = 2) -> numpy.ndarray:
    """Anti-aliased coverage (0..1) of a shape at a position, at pixel resolution (H, W)."""
    cx, cy = POSITIONS[position]
    radius = SIZE * min(height, width)
    s = supersample
    ys = (numpy.arange(height * s) + 0.5) / s
    xs = (numpy.arange(width * s) + 0.5) / s
    u = (xs[None, :] - cx * width) / radius
    v = (ys[:, None] - cy * height) / radius
    cover = _inside(shape, u, v).astype(numpy.float32)
    return cover.reshape(height, s, width, s).mean(axis=(1, 3))


def _model_colour(rgb01: tuple[float, float, float]) -> torch.Tensor:
    return rgb_to_code(torch.tensor(rgb01, dtype=torch.float64) * 2 - 1)


COLOUR_CODES = torch.stack([_model_colour(c) for c in COLOURS.values()])  # (A, 4)
BACKGROUND_CODES = torch.stack([_model_colour(c) for c in BACKGROUNDS.values()])  # (G, 4)
_NEUTRAL = _model_colour((0.5, 0.5, 0.5))
#: unit directions "more of this colour" in code space (the saturation axis of each colour)
SATURATION_DIRS = torch.nn.functional.normalize(COLOUR_CODES - _NEUTRAL, dim=1)  # (A, 4)


# --- the text encoder ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Vocabulary:
    """Words the demo CLIP understands, each giving evidence for one value of one attribute."""

    shapes: dict = field(default_factory=lambda: {
        **{s: s for s in SHAPES}, "circles": "circle", "round": "circle", "ball": "circle", "apple": "circle",
        "sun": "circle", "moon": "circle", "orb": "circle", "squares": "square", "box": "square", "cube": "square",
        "block": "square", "crate": "square", "triangles": "triangle", "pyramid": "triangle",
        "mountain": "triangle", "tent": "triangle", "rabbit": "triangle", "bunny": "triangle", "stars": "star",
        "starfish": "star", "plus": "cross", "donut": "ring", "wheel": "ring", "bagel": "ring", "gem": "diamond",
        "crystal": "diamond", "bottle": "diamond", "rhombus": "diamond", "kite": "diamond", "figure": "cross",
        "character": "cross"})
    colours: dict = field(default_factory=lambda: {
        **{c: c for c in COLOURS}, "crimson": "red", "scarlet": "red", "pink": "red", "lime": "green",
        "navy": "blue", "golden": "yellow", "gold": "yellow", "violet": "purple", "galaxy": "purple",
        "dark": "black"})
    positions: dict = field(default_factory=lambda: {
        **{p: p for p in POSITIONS}, "middle": "center", "centre": "center", "up": "top", "above": "top",
        "down": "bottom", "below": "bottom"})
    #: nouns that are a background by themselves
    background_nouns: dict = field(default_factory=lambda: {
        "sky": "sky", "scenery": "sky", "landscape": "sky", "nature": "sky", "night": "black", "space": "black",
        "table": "grey", "stone": "grey", "wall": "grey", "paper": "white", "snow": "white"})
    #: colour words that name a background when followed by "background"
    background_colours: dict = field(default_factory=lambda: {
        "white": "white", "light": "white", "black": "black", "dark": "black", "grey": "grey", "gray": "grey",
        "blue": "sky", "sky": "sky"})
    markers: frozenset = frozenset({"background", "backdrop", "bg"})
    stopwords: frozenset = frozenset(
        "a an the of on in at with and or to is by for single one same sitting standing best quality high ultra "
        "detailed ultra-detailed photorealistic realistic masterpiece picture image photo drawing art style "
        "text watermark pixel pixelated 8-bit 8bit lowres worst bad simple flat cute small big large soft clean "
        "minimal lighting studio wooden glass fluffy".split())


def evidence_dims() -> dict[str, int]:
    return {"shape": len(SHAPES), "colour": len(COLOURS), "background": len(BACKGROUNDS), "position": len(POSITIONS)}


CONTEXT_DIM = sum(evidence_dims().values())


class DemoCLIP:
    """Text -> CONDITIONING ``[[context (1, 77, D), {"pooled_output": (1, D)}]]``.

    Each recognised word fills one token with +1 evidence for its attribute (weights like
    ``(red:1.5)`` scale it). Unknown words are ignored with a notice on stderr."""

    def __init__(self, vocabulary: Vocabulary | None = None, notice=None) -> None:
        self.vocab = vocabulary or Vocabulary()
        self.notice = notice if notice is not None else (lambda msg: print(msg, file=sys.stderr))
        self._shown: set[str] = set()

    def parse(self, text: str) -> tuple[list[tuple[str, int, float]], list[str]]:
        """(category, index, weight) per recognised word, and the unknown words."""
        if not isinstance(text, str):
            raise ValueError(f"text: expected a string, got {type(text).__name__}")
        words: list[tuple[str, float]] = []
        for m in re.finditer(r"\(([^():]+):([0-9.]+)\)|([A-Za-z0-9'-]+)", text.lower()):
            if m.group(1) is not None:
                w = float(m.group(2))
                words += [(x, w) for x in re.findall(r"[a-z0-9'-]+", m.group(1))]
            else:
                words.append((m.group(3), 1.0))
        v = self.vocab
        found, unknown = [], []
        for k, (word, weight) in enumerate(words):
            nxt = words[k + 1][0] if k + 1 < len(words) else ""
            if nxt in v.markers and word in v.background_colours:
                found.append(("background", list(BACKGROUNDS).index(v.background_colours[word]), weight))
            elif word in v.background_nouns:
                found.append(("background", list(BACKGROUNDS).index(v.background_nouns[word]), weight))
            elif word in v.shapes:
                found.append(("shape", SHAPES.index(v.shapes[word]), weight))
            elif word in v.colours:
                found.append(("colour", list(COLOURS).index(v.colours[word]), weight))
            elif word in v.positions:
                found.append(("position", list(POSITIONS).index(v.positions[word]), weight))
            elif not (word in v.stopwords or word in v.markers or word.isdigit()):
                unknown.append(word)
        return found, unknown

    def encode(self, text: str) -> list:
        found, unknown = self.parse(text)
        new = sorted(set(unknown) - self._shown)
        if new:
            self._shown.update(new)
            self.notice(f"demo CLIP: ignoring words it does not know: {', '.join(new)}")
        offsets, o = {}, 0
        for cat, n in evidence_dims().items():
            offsets[cat] = o
            o += n
        ctx = torch.zeros(1, TOKENS, CONTEXT_DIM)
        for t, (cat, idx, weight) in enumerate(found[:TOKENS]):
            ctx[0, t, offsets[cat] + idx] = weight
        return [[ctx, {"pooled_output": ctx.sum(1)}]]


# --- the VAE ------------------------------------------------------------------------------------------------
class DemoVAE:
    """A fixed VAE: 8x8 average pooling and the colour code :func:`rgb_to_code` (encode); bilinear
    upsampling and the linear inverse :func:`code_to_rgb` (decode). Images are ComfyUI IMAGE tensors (B, H, W, 3) in 0..1."""

    latent_format = DEMO_LATENT_FORMAT
    downscale = 8

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] < 3:
            raise ValueError(f"pixels: expected an IMAGE tensor (B, H, W, 3), got "
                             f"{getattr(image, 'shape', type(image).__name__)}")
        b, h, w, _ = image.shape
        h8, w8 = (h // 8) * 8, (w // 8) * 8
        if h8 == 0 or w8 == 0:
            raise ValueError(f"pixels: image {w}x{h} is smaller than 8x8")
        x = image[:, :h8, :w8, :3].double().mul_(2).sub_(1)
        pooled = x.reshape(b, h8 // 8, 8, w8 // 8, 8, 3).mean(dim=(2, 4))
        return (rgb_to_code(pooled).permute(0, 3, 1, 2) / SCALE_FACTOR).float()

    @staticmethod
    def encode_memory_estimate(image_shape) -> int:
        """Peak bytes of :meth:`encode` beside its input: one float64 RGB copy, ~24 bytes per pixel (+ slack)."""
        b, h, w = (int(d) for d in tuple(image_shape)[:3])
        return 32 * b * h * w

    @staticmethod
    def memory_estimate(latent_shape) -> int:
        """Peak bytes of :meth:`decode`: float64 upsampling, colour map and clamp, ~100 bytes per output pixel."""
        b, _, h, w = (int(d) for d in latent_shape)
        return 100 * b * h * w * 64

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        from ..sampling.resources import check_fits

        if not isinstance(latent, torch.Tensor) or latent.ndim != 4 or latent.shape[1] != 4:
            raise ValueError(f"samples: expected a 4-channel latent (B, 4, h, w), got "
                             f"{getattr(latent, 'shape', type(latent).__name__)}")
        b, _, h, w = latent.shape
        check_fits(self.memory_estimate(latent.shape), f"samples: decoding {b} image(s) of {w * 8}x{h * 8}",
                   "use a smaller image or batch")
        z = latent.double() * SCALE_FACTOR
        z = torch.nn.functional.interpolate(z, scale_factor=8, mode="bilinear", align_corners=False)
        rgb = code_to_rgb(z.permute(0, 2, 3, 1))
        return ((rgb + 1) / 2).clamp(0, 1).float()

    def decode_tiled(self, latent: torch.Tensor, tile_x: int = 512, tile_y: int = 512, overlap: int = 64) -> torch.Tensor:
        return self.decode(latent)  # a linear, pointwise-after-upsampling map needs no tiling




def prompt_evidence(context: torch.Tensor) -> torch.Tensor:
    """(B, tokens, D) CONDITIONING context -> (B, D) evidence: the sum of the tokens' evidence, invariant to any
    repeat of the tokens (what both demo models read)."""
    return context.double().mean(1) * TOKENS


# --- the continuous world (what the trained network learns) ---------------------------------------------------
@dataclass(frozen=True)
class WorldJitter:
    """How far each picture strays from the named values: a smooth manifold of pictures, not points."""

    position: float = 0.03  # fraction of the image, each axis
    size: float = 0.10  # relative radius
    rotation: float = 0.15  # radians (~9 degrees; keeps square and diamond apart)
    colour: float = 0.04  # RGB in 0..1, each channel
    background: float = 0.03


def sample_attributes(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Uniformly drawn named values: indices into SHAPES, COLOURS, BACKGROUNDS, POSITIONS."""
    return {key: torch.randint(0, size, (n,), generator=generator) for key, size in
            (("shape", len(SHAPES)), ("colour", len(COLOURS)), ("background", len(BACKGROUNDS)),
             ("position", len(POSITIONS)))}


_COL = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
_BG = torch.tensor(list(BACKGROUNDS.values()), dtype=torch.float32)
_POS = torch.tensor(list(POSITIONS.values()), dtype=torch.float32)


def render_latents(attrs: dict[str, torch.Tensor], height: int, width: int, generator: torch.Generator,
                   jitter: WorldJitter | None = WorldJitter(), style: torch.Tensor | None = None,
                   subsamples: int = 4, window: tuple[torch.Tensor, torch.Tensor, int] | None = None) -> torch.Tensor:
    """Pictures of the continuous world drawn straight to model-space latents (B, 4, height, width): the coverage of
    each latent pixel from ``subsamples``² points, mixed between the colour and the background in RGB, then the
    VAE's colour code (what :meth:`DemoVAE.encode` of the drawn picture gives). ``style`` (B,) in 0..1 blends in
    the pixel-art variant (coverage snapped to a 16-block grid, as the exact model's style). ``window`` (rows0,
    cols0, k): only the k x k latent pixels from (rows0[b], cols0[b]) of each picture (the same pixels as cropping
    the whole render)."""
    n = attrs["shape"].shape[0]
    j = jitter or WorldJitter(0.0, 0.0, 0.0, 0.0, 0.0)

    def uniform(half: float, *shape) -> torch.Tensor:
        return (torch.rand((n,) + shape, generator=generator) * 2 - 1) * half

    centre = _POS[attrs["position"]] + uniform(j.position, 2)
    radius = SIZE * (1 + uniform(j.size)) * min(height, width) * 8
    angle = uniform(j.rotation)
    colour = (_COL[attrs["colour"]] + uniform(j.colour, 3)).clamp(0, 1)
    background = (_BG[attrs["background"]] + uniform(j.background, 3)).clamp(0, 1)
    sub = subsamples
    rows, cols = height, width
    ys = ((torch.arange(height * sub) + 0.5) * (8 / sub))[None, :]  # pixel coordinates of the sub-samples
    xs = ((torch.arange(width * sub) + 0.5) * (8 / sub))[None, :]
    if window is not None:
        rows0, cols0, rows = window
        cols = rows
        ys = rows0[:, None].float() * 8 + ((torch.arange(rows * sub) + 0.5) * (8 / sub))[None, :]
        xs = cols0[:, None].float() * 8 + ((torch.arange(cols * sub) + 0.5) * (8 / sub))[None, :]
    gx = (xs[:, None, :] - centre[:, 0, None, None] * width * 8) / radius[:, None, None]
    gy = (ys[:, :, None] - centre[:, 1, None, None] * height * 8) / radius[:, None, None]
    gx, gy = gx.expand(n, rows * sub, cols * sub), gy.expand(n, rows * sub, cols * sub)
    c, s = angle.cos()[:, None, None], angle.sin()[:, None, None]
    cover = inside(attrs["shape"], c * gx + s * gy, -s * gx + c * gy).float()
    cover = cover.reshape(n, rows, sub, cols, sub).mean((2, 4))
    if style is not None and bool((style > 0).any()):
        if window is not None:
            raise ValueError("window: the pixel-art style needs the whole picture (its blocks are the picture's)")
        b = max(1, round(min(height, width) / 16))
        hh, ww = -(-height // b) * b, -(-width // b) * b
        padded = torch.nn.functional.pad(cover, (0, ww - width, 0, hh - height))
        blocks = padded.reshape(n, hh // b, b, ww // b, b).mean((2, 4)) > 0.45
        pixel = blocks.repeat_interleave(b, 1).repeat_interleave(b, 2)[:, :height, :width].float()
        w = style.clamp(0, 1).reshape(n, 1, 1)
        cover = (1 - w) * cover + w * pixel
    rgb = cover[..., None] * colour[:, None, None, :] + (1 - cover[..., None]) * background[:, None, None, :]
    return rgb_to_code(rgb * 2 - 1).float().permute(0, 3, 1, 2).contiguous()


def named_evidence(attrs: dict[str, torch.Tensor], generator: torch.Generator,
                   drop: tuple[float, float, float, float] = (0.15, 0.15, 0.3, 0.4),
                   uncond: float = 0.1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(evidence as :func:`attribute_evidence` draws it, {attribute: (B,) bool, named in the prompt})."""
    n = attrs["shape"].shape[0]
    out = torch.zeros(n, CONTEXT_DIM)
    named = {}
    offset = 0
    for (key, size), p in zip(evidence_dims().items(), drop):
        keep = torch.rand(n, generator=generator) >= p
        out[torch.arange(n)[keep], offset + attrs[key][keep]] = 1.0
        named[key] = keep
        offset += size
    dropped = torch.rand(n, generator=generator) < uncond
    out[dropped] = 0
    for key in named:
        named[key] = named[key] & ~dropped
    return out, named


def attribute_evidence(attrs: dict[str, torch.Tensor], generator: torch.Generator,
                       drop: tuple[float, float, float, float] = (0.15, 0.15, 0.3, 0.4),
                       uncond: float = 0.1) -> torch.Tensor:
    """(B, CONTEXT_DIM) prompt evidence for pictures with ``attrs``, as :class:`DemoCLIP` would give it for a prompt
    naming them: each attribute left out of the prompt with the given probabilities (the picture still has some
    value of it), and the whole prompt dropped with probability ``uncond`` (classifier-free guidance training)."""
    n = attrs["shape"].shape[0]
    out = torch.zeros(n, CONTEXT_DIM)
    offset = 0
    for (key, size), p in zip(evidence_dims().items(), drop):
        keep = torch.rand(n, generator=generator) >= p
        out[torch.arange(n)[keep], offset + attrs[key][keep]] = 1.0
        offset += size
    out[torch.rand(n, generator=generator) < uncond] = 0
    return out


# --- the layout prior (the trained network's grounding input) ---------------------------------------------------
_MASKS: dict[tuple[int, int], torch.Tensor] = {}


def _nominal_masks(height: int, width: int, subsamples: int = 2) -> torch.Tensor:
    """(shapes, positions, height, width): each named shape at its nominal size, unrotated, at each named place, as
    the latent pixels' coverage (cached per size)."""
    key = (height, width)
    if key not in _MASKS:
        sub = subsamples
        ys = (torch.arange(height * sub) + 0.5) * (8 / sub)
        xs = (torch.arange(width * sub) + 0.5) * (8 / sub)
        radius = SIZE * min(height, width) * 8
        masks = torch.zeros(len(SHAPES), len(POSITIONS), height, width)
        for p, (cx, cy) in enumerate(POSITIONS.values()):
            u = ((xs[None, :] - cx * width * 8) / radius).expand(height * sub, width * sub)
            v = ((ys[:, None] - cy * height * 8) / radius).expand(height * sub, width * sub)
            for s in range(len(SHAPES)):
                cover = inside(torch.tensor([s]), u[None], v[None]).float()[0]
                masks[s, p] = cover.reshape(height, sub, width, sub).mean((1, 3))
        if len(_MASKS) > 16:
            _MASKS.clear()
        _MASKS[key] = masks
    return _MASKS[key]


LAYOUT_CHANNELS = 5  # the layout prior: the shape's coverage, then the nominal picture's code


def layout_prior(evidence: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, D) prompt evidence -> (B, 5, height, width): the nominal picture the prompt names — the shape(s) at their
    nominal size where the prompt places them (the centre when it does not), as coverage (channel 0) and as the VAE's
    code (channels 1-4: the named colour inside, the named background outside; a zero code where the prompt names no
    colour or background), each attribute's words weighted as the prompt weighs them. A grounding input in the manner
    of GLIGEN (Li et al. 2023) / a layout-to-image model: the network refines a layout (jitter, edges, noise) instead
    of inventing it, as a small network trained for minutes on CPU must."""
    dims = evidence_dims()
    offsets, start = {}, 0
    for key, size in dims.items():
        offsets[key] = (start, start + size)
        start += size
    ev = evidence.float().cpu()

    def block(key):
        return ev[:, offsets[key][0]:offsets[key][1]].clamp_min(0)

    shape_w, pos, col_w, bg_w = block("shape"), block("position"), block("colour"), block("background")
    centre = torch.zeros_like(pos)
    centre[:, list(POSITIONS).index("center")] = 1.0
    total = pos.sum(1, keepdim=True)
    pos = torch.where(total > 0, pos / total.clamp_min(1e-12), centre)
    mask = torch.einsum("bs,bp,sphw->bhw", shape_w, pos, _nominal_masks(height, width)).clamp(0, 1)

    def code(weights, table):
        total = weights.sum(1, keepdim=True)
        rgb = (weights / total.clamp_min(1e-12)) @ table
        return torch.where(total > 0, rgb_to_code(rgb * 2 - 1).float(), torch.zeros(len(weights), 4))

    fg, bg = code(col_w, _COL), code(bg_w, _BG)  # (B, 4)
    picture = mask[:, None] * fg[:, :, None, None] + (1 - mask[:, None]) * bg[:, :, None, None]
    return torch.cat([mask[:, None], picture], 1).to(evidence.device)
