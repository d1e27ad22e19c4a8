"""``stepwise-tiny``: a small trained denoiser network for the demo world (what few-step sampling looks like on a
real model: smooth, so few steps blur and lose detail rather than change the object).

A conditional UNet (Ronneberger et al. 2015, as in DDPM/LDM): a 2x2 patch embedding, three levels (16x16, 8x8, 4x4
tokens for a 256x256 picture) of residual blocks with FiLM conditioning (Perez et al. 2018) on the prompt's
evidence, the timestep and the style, self-attention at the lowest level and in the middle, coordinate channels so
"left" and "top" are known at any size, and layout channels: the nominal picture the prompt names, its shape at its
nominal size and place in the named colours (``world.layout_prior``, a GLIGEN-style grounding input), for the network
to refine. Outside it is an SD1.5 EPS model: ``network(x_in, t, context)`` with
``x_in = x / sqrt(sigma^2 + 1)`` and SD1.5's discrete timestep, returning eps, so every scheduler and sampler
applies to it exactly as to SD1.5. Inside, the prediction is made with per-channel EDM preconditioning (Karras
et al. 2022, with each latent channel's own data mean and spread), which is what lets a small network keep the
faint colour channels of the demo VAE exact, and converted to eps at the interface.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..sampling import StandaloneModel
from ..schedulers import DiscreteModelSampling
from .world import CONTEXT_DIM, DEMO_LATENT_FORMAT, LAYOUT_CHANNELS, DemoCLIP, DemoVAE, layout_prior, prompt_evidence

__all__ = ["TinyConfig", "TinyUNet", "TinyNetwork", "TinyModel", "WEIGHTS", "load_tiny_checkpoint", "load_network",
           "TINY_NAME", "prompt_denoiser"]

TINY_NAME = "stepwise-tiny"
WEIGHTS = Path(__file__).resolve().parent / "weights" / f"{TINY_NAME}.safetensors"


@dataclass(frozen=True)
class TinyConfig:
    """The network's shape (stored in the weights' metadata)."""

    channels: tuple[int, ...] = (64, 128, 128)
    blocks: int = 1  # residual blocks per level on the way down (one more on the way up)
    attention_levels: tuple[int, ...] = (2,)
    patch: int = 2
    cond_dim: int = 128
    heads: int = 4
    evidence_dim: int = CONTEXT_DIM
    #: an input channel with the prompt's layout (``world.layout_prior``)
    layout_prior: bool = True

    @classmethod
    def from_json(cls, text: str) -> "TinyConfig":
        data = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class _Block(nn.Module):
    """GroupNorm-SiLU-conv twice, the second normalisation scaled and shifted by the conditioning (FiLM)."""

    def __init__(self, cin: int, cout: int, cond: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.film = nn.Linear(cond, 2 * cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(c)[:, :, None, None].chunk(2, 1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class _Attention(nn.Module):
    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.qkv, self.out = nn.Conv2d(channels, 3 * channels, 1), nn.Conv2d(channels, channels, 1)
        self.heads = heads
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class TinyUNet(nn.Module):
    """F(x_normalised, timestep, evidence, style) -> the preconditioned prediction, any latent size."""

    def __init__(self, config: TinyConfig = TinyConfig()) -> None:
        super().__init__()
        self.config = cfg = config
        self.time = nn.Sequential(nn.Linear(128, cfg.cond_dim), nn.SiLU(), nn.Linear(cfg.cond_dim, cfg.cond_dim))
        self.prompt = nn.Sequential(nn.Linear(cfg.evidence_dim + 1, cfg.cond_dim), nn.SiLU(),
                                    nn.Linear(cfg.cond_dim, cfg.cond_dim))
        self.inp = nn.Conv2d((4 + 2 + LAYOUT_CHANNELS * int(cfg.layout_prior)) * cfg.patch ** 2, cfg.channels[0], 3,
                             padding=1)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        skips, ch = [cfg.channels[0]], cfg.channels[0]
        for level, width in enumerate(cfg.channels):
            for _ in range(cfg.blocks):
                self.down.append(nn.ModuleList([_Block(ch, width, cfg.cond_dim), self._attn(level, width)]))
                ch = width
                skips.append(ch)
            if level < len(cfg.channels) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList([_Block(ch, ch, cfg.cond_dim), _Attention(ch, cfg.heads), _Block(ch, ch, cfg.cond_dim)])
        for level, width in reversed(list(enumerate(cfg.channels))):
            for _ in range(cfg.blocks + 1):
                self.up.append(nn.ModuleList([_Block(ch + skips.pop(), width, cfg.cond_dim), self._attn(level, width)]))
                ch = width
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.out = nn.Sequential(nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, 4 * cfg.patch ** 2, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def _attn(self, level: int, width: int) -> nn.Module:
        return _Attention(width, self.config.heads) if level in self.config.attention_levels else nn.Identity()

    @staticmethod
    def _time_features(t: torch.Tensor) -> torch.Tensor:
        """Sinusoidal features of the timestep (Vaswani et al. 2017, as DDPM)."""
        freqs = torch.exp(-math.log(10000.0) * torch.arange(64, device=t.device, dtype=torch.float32) / 64)
        angles = t.float()[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], 1)

    @staticmethod
    def coordinates(b: int, h: int, w: int, device=None, dtype=None) -> torch.Tensor:
        """(b, 2, h, w): each latent pixel's place in the picture, -1..1 down and across."""
        ys = torch.linspace(-1, 1, h, device=device, dtype=dtype)
        xs = torch.linspace(-1, 1, w, device=device, dtype=dtype)
        return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))[None].expand(b, 2, h, w)

    def forward(self, x: torch.Tensor, t: torch.Tensor, evidence: torch.Tensor, style: torch.Tensor,
                coords: torch.Tensor | None = None, prior: torch.Tensor | None = None) -> torch.Tensor:
        """``coords`` (training on crops, Wang et al. 2023's Patch Diffusion): the crop's place in its picture;
        default: the whole picture. ``prior``: the layout channel (default: drawn from the evidence at x's size)."""
        cfg = self.config
        c = F.silu(self.time(self._time_features(t)) + self.prompt(torch.cat([evidence, style[:, None]], 1)))
        b, _, h, w = x.shape
        grid = self.coordinates(b, h, w, x.device, x.dtype) if coords is None else coords.to(x.dtype)
        parts = [x, grid]
        if cfg.layout_prior:
            parts.append((layout_prior(evidence, h, w) if prior is None else prior).to(x.device, x.dtype))
        x = torch.cat(parts, 1)
        unit = cfg.patch * 2 ** (len(cfg.channels) - 1)  # the size every level can halve
        ph, pw = -h % unit, -w % unit
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        hidden = self.inp(F.pixel_unshuffle(x, cfg.patch))
        skips = [hidden]
        for layer in self.down:
            hidden = layer[1](layer[0](hidden, c)) if isinstance(layer, nn.ModuleList) else layer(hidden)
            skips.append(hidden)
        hidden = self.mid[2](self.mid[1](self.mid[0](hidden, c)), c)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                hidden = layer[1](layer[0](torch.cat([hidden, skips.pop()], 1), c))
            else:
                hidden = layer(hidden)
        return F.pixel_shuffle(self.out(hidden), cfg.patch)[:, :, :h, :w]


class TinyNetwork(nn.Module):
    """The SD1.5 EPS interface around :class:`TinyUNet`: ``(x_in, t, context) -> eps`` (see the module docstring).

    ``data_mean``/``data_var`` are the latent channels' statistics in the training world (buffers saved with the
    weights); ``style`` (0..1) is the pixel-art style the LoRA stand-in sets."""

    def __init__(self, config: TinyConfig = TinyConfig(), data_mean: torch.Tensor | None = None,
                 data_var: torch.Tensor | None = None, style: float = 0.0) -> None:
        super().__init__()
        self.unet = TinyUNet(config)
        self.register_buffer("data_mean", (torch.zeros(4) if data_mean is None else data_mean).reshape(1, 4, 1, 1))
        self.register_buffer("data_var", (torch.ones(4) if data_var is None else data_var).reshape(1, 4, 1, 1))
        self.register_buffer("table", DiscreteModelSampling.scaled_linear().sigmas.clone(), persistent=False)
        self.style = float(style)

    def coefficients(self, sigma: torch.Tensor):
        """(c_in, c_skip, c_out) per channel for sigmas (B,): EDM preconditioning with each channel's spread."""
        s2 = sigma.reshape(-1, 1, 1, 1).float() ** 2
        var = self.data_var
        return (var + s2).rsqrt(), var / (var + s2), (s2 * var / (var + s2)).sqrt()

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, t: torch.Tensor, evidence: torch.Tensor,
                style: torch.Tensor | None = None) -> torch.Tensor:
        """D(x; sigma): the model's estimate of the clean latent, in model space."""
        if style is None:
            style = torch.full((x.shape[0],), self.style, device=x.device, dtype=x.dtype)
        c_in, c_skip, c_out = self.coefficients(sigma)
        centred = x - self.data_mean
        out = self.unet(centred * c_in, t, evidence.to(x.dtype), style.to(x.dtype))
        return self.data_mean + c_skip * centred + c_out * out

    def forward(self, x_in: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1).to(self.table.device)
        t = t.expand(x_in.shape[0]) if t.numel() == 1 else t
        sigma = self.table[t.round().long().clamp(0, len(self.table) - 1)].to(x_in.device)
        x = x_in * (sigma.reshape(-1, 1, 1, 1) ** 2 + 1).sqrt()
        evidence = prompt_evidence(context.to(x_in.device)).float()
        denoised = self.denoise(x.float(), sigma, t.to(x_in.device), evidence)
        return ((x - denoised) / sigma.reshape(-1, 1, 1, 1)).to(x_in.dtype)


_NETWORKS: dict[str, tuple] = {}


def load_network(path: str | Path = WEIGHTS) -> tuple[TinyNetwork, dict]:
    """The trained network (evaluation mode, no gradients) and the weights file's metadata; loaded once a process."""
    from safetensors import safe_open

    key = str(Path(path).resolve())
    if key not in _NETWORKS:
        if not Path(path).is_file():
            raise ValueError(f"ckpt_name: the weights of {TINY_NAME} are missing ({path}); re-train them with "
                             f"python -m stepwise_sampler.models.train_tiny")
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}
        net = TinyNetwork(TinyConfig.from_json(meta["config"]))
        net.load_state_dict(tensors)
        net.eval().requires_grad_(False)
        _NETWORKS[key] = (net, meta)
    return _NETWORKS[key]


class TinyModel(StandaloneModel):
    """The ``stepwise-tiny`` MODEL: SD1.5 discrete EPS sampling around the trained network."""

    bytes_per_element = 2400  # activations of the network for CFG's batch of two, per latent element

    def __init__(self, network: TinyNetwork | None = None, style: float = 0.0) -> None:
        base = network if network is not None else load_network()[0]
        self._base = base
        if style:
            net = TinyNetwork(base.unet.config)
            net.unet, net.data_mean, net.data_var, net.style = base.unet, base.data_mean, base.data_var, float(style)
        else:
            net = base
        super().__init__(net, DiscreteModelSampling.scaled_linear(), DEMO_LATENT_FORMAT, device="cpu",
                         name=TINY_NAME + (f"+pixel:{style:g}" if style else ""))

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return super().apply_model(x, sigma, context)

    def memory_estimate(self, shape, sampler_name: str = "") -> int:
        n = 1
        for d in shape:
            n *= int(d)
        return n * self.bytes_per_element

    @property
    def default_vae(self) -> DemoVAE:
        return DemoVAE()

    def with_style(self, strength: float, name: str = "pixel") -> "TinyModel":
        """The LoRA stand-in: the pixel-art style the network was trained with (strength 0..1; more is clamped)."""
        return TinyModel(self._base, max(0.0, min(1.0, self.style_strength + strength)))

    @property
    def style_strength(self) -> float:
        return self.network.style


def load_tiny_checkpoint() -> tuple[TinyModel, DemoCLIP, DemoVAE]:
    return TinyModel(), DemoCLIP(), DemoVAE()


def prompt_denoiser(network: TinyNetwork, prompts: list[str], cfg: float = 5.0):
    """``D(x, sigma)`` for a batch whose item i has prompt i: classifier-free guidance with the empty prompt, cond and
    uncond in one network call (what the sampler nodes do, without the node machinery; tests and benchmarks)."""
    clip = DemoCLIP(notice=lambda m: None)
    cond = torch.cat([clip.encode(p)[0][0] for p in prompts])
    uncond = torch.zeros_like(cond)
    table = DiscreteModelSampling.scaled_linear()

    def denoiser(x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        with torch.inference_mode():
            sigma = sigma.reshape(-1).expand(x.shape[0]) if sigma.numel() == 1 else sigma.reshape(-1)
            xin = x / (sigma.reshape(-1, 1, 1, 1) ** 2 + 1).sqrt()
            t = table.timestep(sigma)
            n = x.shape[0]
            if n > len(cond):
                raise ValueError(f"prompt_denoiser: a batch of {n} for {len(cond)} prompts")
            eps = network(torch.cat([xin, xin]), torch.cat([t, t]), torch.cat([uncond[:n], cond[:n]]).to(x.device))
            s = torch.cat([sigma, sigma]).reshape(-1, 1, 1, 1)
            u, c = (torch.cat([x, x]) - s * eps.to(x.dtype)).chunk(2)
        return u + (c - u) * cfg

    return denoiser
