"""The embedded demo model: the exact denoiser of a known distribution, no download, no training.

The data distribution is a Gaussian mixture in latent space. Its components are the VAE latents of
procedurally drawn pictures: a shape (circle, square, ...) in a colour, at a position, on a
background, with a small isotropic variance around each. The prompt weights the components.

Everything is linear in the picture, so a component mean is ``m ⊗ e(colour) + (1 - m) ⊗ e(bg)``
with ``m`` the shape's coverage mask pooled to latent resolution and ``e`` the VAE's colour map.
That makes the exact posterior mean E[z | x, sigma] cheap at any resolution: distances to all
components need only per-mask inner products, and the mean is a sum over masks.

Pieces (what a checkpoint gives):
- :class:`DemoModel`: the MODEL (SD1.5 discrete EPS sampling; every scheduler applies), with an
  optional "pixel art" style, the demo's LoRA;
- :class:`DemoCLIP`: a text encoder over a small vocabulary;
- :class:`DemoVAE`: a fixed linear map between RGB and 4-channel latents at 1/8 resolution.
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache

import numpy
import torch

from ..sampling import LatentFormat, StandaloneModel
from ..schedulers import DiscreteModelSampling

__all__ = ["SHAPES", "COLOURS", "BACKGROUNDS", "POSITIONS", "DEMO_LATENT_FORMAT", "DemoVAE", "DemoCLIP",
           "DemoModel", "Vocabulary", "shape_mask", "component_masks", "load_demo_checkpoint", "TOKENS"]

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
COMPONENT_STD = 0.004  # per-component isotropic standard deviation in model space
SATURATION_STD = 1.5  # extra spread along each component's own colour direction (vividness varies)
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
def _inside(shape: str, u: numpy.ndarray, v: numpy.ndarray) -> numpy.ndarray:
    """Is the point (u, v), in units of the shape radius around its centre, inside the shape?"""
    au, av = numpy.abs(u), numpy.abs(v)
    r = numpy.hypot(u, v)
    if shape == "circle":
        return r <= 1.0
    if shape == "square":
        return numpy.maximum(au, av) <= 0.86
    if shape == "triangle":
        return (v <= 0.8) & (v >= -1.0 + 2 * au * 1.05)
    if shape == "diamond":
        return au + av <= 1.05
    if shape == "cross":
        return ((au <= 0.32) & (av <= 1.0)) | ((av <= 0.32) & (au <= 1.0))
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "star":
        theta = numpy.arctan2(u, -v)
        k = numpy.cos(2.5 * theta)
        return r <= 0.55 + 0.45 * numpy.abs(k) ** 3
    raise ValueError(f"unknown shape {shape!r}")


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


@lru_cache(maxsize=8)
def component_masks(lat_h: int, lat_w: int, pixelated: bool = False) -> torch.Tensor:
    """Coverage masks of every (shape, position) pooled to latent resolution: (S*P, h, w), float64.

    ``pixelated`` gives the pixel-art variant: coverage snapped to a 16-block grid."""
    masks = []
    for shape in SHAPES:
        for pos in POSITIONS:
            m = shape_mask(shape, pos, lat_h * 8, lat_w * 8)
            m = m.reshape(lat_h, 8, lat_w, 8).mean(axis=(1, 3))
            if pixelated:
                b = max(1, round(min(lat_h, lat_w) / 16))
                hh, ww = -(-lat_h // b) * b, -(-lat_w // b) * b
                pad = numpy.zeros((hh, ww), dtype=m.dtype)
                pad[:lat_h, :lat_w] = m
                blocks = pad.reshape(hh // b, b, ww // b, b).mean(axis=(1, 3)) > 0.45
                m = numpy.repeat(numpy.repeat(blocks, b, 0), b, 1)[:lat_h, :lat_w].astype(m.dtype)
            masks.append(m)
    return torch.tensor(numpy.stack(masks), dtype=torch.float64)


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


def _evidence_dims() -> dict[str, int]:
    return {"shape": len(SHAPES), "colour": len(COLOURS), "background": len(BACKGROUNDS), "position": len(POSITIONS)}


CONTEXT_DIM = sum(_evidence_dims().values())


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
        for cat, n in _evidence_dims().items():
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


# --- the model ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Style:
    """The demo LoRA: pixel-art components, and a learned preference for blocky shapes."""

    name: str = "pixel"
    strength: float = 0.0
    shape_bias: tuple[float, ...] = (0.0, 1.6, -0.5, -0.5, 0.4, -0.5, 1.0)  # square, diamond, cross favoured


class DemoNetwork:
    """The exact posterior mean E[z | x_sigma] of the prompt-weighted mixture.

    Component k = (shape-position j, colour a, background g) is Gaussian with mean
    ``mu_k = m_j (x) c_a + (1 - m_j) (x) g_g`` and covariance ``s^2 I + tau^2 v_k v_k^T``, where
    ``v_k = m_j (x) w_a / |m_j|`` is the direction "this shape, more vividly coloured": vividness
    varies in the data, which is what lets high CFG over-saturate as with real models.
    ``__call__(x, sigma, context) -> denoised`` in model space, for ``x = z + sigma * noise``."""

    evidence_gain = 3.0

    def __init__(self, style: Style | None = None) -> None:
        self.style = style or Style()

    def log_weights(self, context: torch.Tensor) -> torch.Tensor:
        """(B, S*P, A, G) log prior weights of the components from the context's token mean."""
        ev = context.double().mean(1) * TOKENS  # sum of token evidence, invariant to token repeats
        dims = _evidence_dims()
        shp, col, bg, pos = torch.split(ev, list(dims.values()), dim=1)
        g = self.evidence_gain
        shp = g * shp + self.style.strength * torch.tensor(self.style.shape_bias, dtype=ev.dtype, device=ev.device)
        sp = (shp[:, :, None] + g * pos[:, None, :]).reshape(ev.shape[0], -1)  # (B, S*P) in SHAPES x POSITIONS order
        return sp[:, :, None, None] + g * col[:, None, :, None] + g * bg[:, None, None, :]

    def masks(self, h: int, w: int, device) -> torch.Tensor:
        smooth = component_masks(h, w, False)
        if self.style.strength <= 0:
            return smooth.to(device)
        s = min(self.style.strength, 1.0)
        return ((1 - s) * smooth + s * component_masks(h, w, True)).to(device)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, _, h, w = x.shape
        xd = x.double()
        sig = sigma.double().reshape(-1).to(x.device)
        sig = sig.expand(batch) if sig.numel() == 1 else sig
        m = self.masks(h, w, x.device)  # (J, h, w)
        col, bgc = COLOUR_CODES.to(x.device), BACKGROUND_CODES.to(x.device)  # (A, 4), (G, 4)
        wdir = SATURATION_DIRS.to(x.device)  # (A, 4)
        # Inner products with the means, via per-mask sums (mu = m c + (1 - m) g is linear in m).
        xm = torch.einsum("bchw,jhw->bjc", xd, m)  # (B, J, 4): <x_c, m_j>
        xs = xd.sum(dim=(2, 3))  # (B, 4)
        m1, m2 = m.sum(dim=(1, 2)), (m * m).sum(dim=(1, 2))  # (J,)
        mnorm = m2.clamp_min(1e-12).sqrt()
        n = float(h * w)
        x_mu = torch.einsum("bjc,ac->bja", xm, col)[..., None] + \
            (torch.einsum("bc,gc->bg", xs, bgc)[:, None, :] - torch.einsum("bjc,gc->bjg", xm, bgc))[:, :, None, :]
        cc, gg, cg = (col * col).sum(1), (bgc * bgc).sum(1), col @ bgc.T  # (A,), (G,), (A, G)
        mu2 = (m2[:, None, None] * cc[None, :, None] + 2 * (m1 - m2)[:, None, None] * cg[None]
               + (n - 2 * m1 + m2)[:, None, None] * gg[None, None, :])  # (J, A, G)
        # projections on the saturation axis v_k: beta = <v_k, x - mu_k>
        v_x = torch.einsum("bjc,ac->bja", xm, wdir) / mnorm[None, :, None]  # (B, J, A)
        v_mu = (m2[:, None, None] * (col * wdir).sum(1)[None, :, None]
                + (m1 - m2)[:, None, None] * (wdir @ bgc.T)[None]) / mnorm[:, None, None]  # (J, A, G)
        beta = v_x[..., None] - v_mu[None]  # (B, J, A, G)
        a = COMPONENT_STD ** 2 + sig ** 2  # (B,)
        t2 = SATURATION_STD ** 2
        a4 = a[:, None, None, None]
        dist = mu2[None] - 2 * x_mu  # |x - mu|^2 without the |x|^2 term, which is the same for all k
        logits = self.log_weights(context).to(x.device) - dist / (2 * a4) + t2 / (2 * a4 * (a4 + t2)) * beta ** 2
        r = torch.softmax(logits.reshape(batch, -1), dim=1).reshape(logits.shape)  # (B, J, A, G)
        # E[z|x] = (1 - lam) mean(mu) + lam x + kappa sum_k r_k beta_k v_k
        c_j = torch.einsum("bja,ac->bjc", r.sum(3), col)
        g_j = torch.einsum("bjg,gc->bjc", r.sum(2), bgc)
        sat_j = torch.einsum("bja,ac->bjc", (r * beta).sum(3), wdir) / mnorm[None, :, None]
        kappa = (t2 * sig ** 2 / (a * (a + t2)))[:, None, None]
        mean_mu = torch.einsum("bjc,jhw->bchw", c_j - g_j + kappa * sat_j, m) + g_j.sum(1)[:, :, None, None]
        lam = (COMPONENT_STD ** 2 / a).reshape(batch, 1, 1, 1)
        mu_bar = torch.einsum("bjc,jhw->bchw", c_j - g_j, m) + g_j.sum(1)[:, :, None, None]
        return (mean_mu + lam * (xd - mu_bar)).to(x.dtype)


class DemoModel(StandaloneModel):
    """The demo MODEL: SD1.5 discrete EPS sampling around the exact mixture denoiser."""

    def __init__(self, style: Style | None = None) -> None:
        super().__init__(DemoNetwork(style), DiscreteModelSampling.scaled_linear(), DEMO_LATENT_FORMAT,
                         device="cpu", name="stepwise-demo" + (f"+{style.name}:{style.strength:g}" if style and
                                                                 style.strength else ""))

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.network(x, sigma, context)

    def memory_estimate(self, shape, sampler_name: str = "") -> int:
        """A slight under-estimate of peak memory, from peak RSS measured on 2 cores (64x64..512x512 latents,
        batch 1..256): ~140 bytes per latent element (float64 inside, CFG's batch of two; ~560 with a Brownian
        tree) and ~150 bytes per image pixel for the supersampled shape masks."""
        n = 1
        for d in shape:
            n *= int(d)
        pixels = int(shape[-1]) * int(shape[-2]) * 64
        per_element = 400 if "sde" in sampler_name else 120
        return per_element * n + 140 * pixels

    @property
    def default_vae(self) -> "DemoVAE":
        """The VAE that belongs to this model (used when a node's optional VAE is not connected)."""
        return DemoVAE()

    def with_style(self, strength: float, name: str = "pixel") -> "DemoModel":
        base = self.network.style.strength
        return DemoModel(Style(name=name, strength=base + strength))

    @property
    def style_strength(self) -> float:
        return self.network.style.strength


def load_demo_checkpoint() -> tuple[DemoModel, DemoCLIP, DemoVAE]:
    return DemoModel(), DemoCLIP(), DemoVAE()
