"""Initial noise and per-step noise sources, identical to ComfyUI's by default.

Seeds use private ``torch.Generator`` objects: the same stream as ``torch.manual_seed`` without
touching the process-wide generator.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

__all__ = ["SEED_MAX", "validate_seed", "check_inpaint_seed", "prepare_noise", "NoiseSampler", "default_noise_sampler",
           "BrownianTreeNoiseSampler", "FastBrownianNoiseSampler", "SDE_NOISE_SOURCES", "inpaint_noise", "NoiseSource",
           "BATCH_MODES", "A1111_MODES", "slerp", "item_seeds", "a1111_randn", "a1111_slerp", "a1111_image_noise"]

#: noise sources for the Brownian-motion SDE samplers: ComfyUI's (the default) or the fast opt-in one
SDE_NOISE_SOURCES = {"brownian": "torchsde Brownian tree, identical to ComfyUI",
                     "fast": "seeded normal draws on the sampling device, same statistics, no CPU tree"}

SEED_MAX = 0xFFFFFFFFFFFFFFFF

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def validate_seed(seed: object, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{name}: expected an integer in 0..{SEED_MAX}, got {seed!r}")
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{name}: {seed} is outside the allowed range 0..{SEED_MAX} (2^64-1)")
    return seed


def _generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _draw_noise(latent: torch.Tensor, gen: torch.Generator, batch_index: Sequence[int] | None,
                float32: bool = False) -> torch.Tensor:
    shape = tuple(latent.shape)
    dtype = torch.float32 if float32 else latent.dtype
    if batch_index is None:
        return torch.randn(shape, dtype=dtype, layout=latent.layout, generator=gen, device="cpu").to(latent.dtype)
    draws = [torch.randn((1,) + shape[1:], dtype=dtype, layout=latent.layout, generator=gen, device="cpu")
             for _ in range(max(batch_index) + 1)]
    return torch.cat([draws[i] for i in batch_index], dim=0).to(latent.dtype)


def is_nested(latent) -> bool:
    """ComfyUI 0.8.0's nested latents (e.g. audio + video): an object with ``is_nested`` and ``unbind()``."""
    return bool(getattr(latent, "is_nested", False)) and hasattr(latent, "unbind")


def prepare_noise(latent: torch.Tensor, seed: int, batch_index: Sequence[int] | None = None, float32: bool = False):
    """ComfyUI's initial noise: ``randn(latent.shape)`` on the CPU after seeding.

    With ``batch_index``, draws ``max(batch_index)+1`` single-sample tensors in sequence and gives
    batch item k draw number ``batch_index[k]``, so a sample can be regenerated alone. A nested latent gets
    a list with one tensor per part, drawn one after the other from the same generator (as ComfyUI 0.8.0).
    ``float32`` draws in float32 and casts to the latent's dtype (ComfyUI from 0.18.1; same numbers for float32).
    """
    validate_seed(seed)
    gen = _generator(seed)
    if is_nested(latent):
        return [_draw_noise(t, gen, batch_index, float32) for t in latent.unbind()]
    return _draw_noise(latent, gen, batch_index, float32)


def check_inpaint_seed(seed: int, sampler_name: str = "ddim") -> None:
    """ComfyUI's ddim seeds its inpaint noise with seed+1, which must itself be a valid seed."""
    if seed + 1 > SEED_MAX:
        raise ValueError(
            f"seed: {seed} is too large for sampler {sampler_name!r}, which seeds its inpaint noise with seed+1; "
            f"allowed for {sampler_name}: 0..{SEED_MAX - 1}")


def inpaint_noise(shape: Sequence[int], seed: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """ComfyUI's ddim inpaint noise: ``randn`` after seeding with ``seed + 1`` (CPU)."""
    check_inpaint_seed(seed)
    gen = _generator(seed + 1)
    return torch.randn(tuple(shape), generator=gen, device="cpu").to(dtype).to(device)


def default_noise_sampler(x: torch.Tensor, seed: int | None = None) -> NoiseSampler:
    """Fresh ``randn(x.shape)`` per call from a generator on ``x``'s device seeded with ``seed``."""
    gen = _generator(seed, x.device) if seed is not None else None
    shape, dtype, layout, device = x.size(), x.dtype, x.layout, x.device

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, dtype=dtype, layout=layout, device=device, generator=gen)

    return sample


class BrownianTreeNoiseSampler:
    """Brownian-bridge increments from ``torchsde.BrownianTree`` (Li et al. 2020), normalised to N(0, 1).

    Noise for a move sigma -> sigma' is ``W(sigma') - W(sigma)`` divided by ``sqrt(|sigma' - sigma|)``,
    so it is consistent across step sizes. ``cpu=True`` keeps the tree on the CPU (ComfyUI's
    non-``_gpu`` samplers); otherwise it lives on ``x``'s device.
    """

    def __init__(self, x: torch.Tensor, sigma_min: torch.Tensor, sigma_max: torch.Tensor,
                 seed: int | None = None, cpu: bool = True) -> None:
        import torchsde  # only SDE samplers pay for the import

        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self.sign = 1 if bool(t0 < t1) else -1
        if self.sign < 0:
            t0, t1 = t1, t0
        w0 = torch.zeros_like(x)
        if seed is None:
            seed = int(torch.randint(0, 2 ** 63 - 1, ()))
        self.cpu = cpu
        if cpu:
            t0, w0, t1 = t0.detach().cpu(), w0.detach().cpu(), t1.detach().cpu()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.tree = torchsde.BrownianTree(t0, w0, t1, entropy=seed)

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        a, b = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        lo, hi, sign = (a, b, 1) if bool(a < b) else (b, a, -1)
        device, dtype = lo.device, lo.dtype
        if self.cpu:
            lo, hi = lo.detach().cpu().float(), hi.detach().cpu().float()
        with warnings.catch_warnings():  # float32 query times vs double bounds: harmless "tb<=t1" notes
            warnings.simplefilter("ignore", UserWarning)
            w = self.tree(lo, hi)
        w = w.to(device=device, dtype=dtype) * (self.sign * sign)
        return w / (b - a).abs().sqrt()

    def split(self, sigma: torch.Tensor, sigma_mid: torch.Tensor, sigma_next: torch.Tensor):
        """Normalised increments for sigma->sigma_mid and sigma->sigma_next (the second contains the first)."""
        return self(sigma, sigma_mid), self(sigma, sigma_next)


class FastBrownianNoiseSampler:
    """Opt-in Brownian increments drawn on the sampling device: no CPU tree, no host sync.

    Increments of Brownian motion over disjoint intervals are independent normals, so a query for
    the next step's interval is a fresh ``randn``; nested intervals (dpmpp_sde's midpoint) use
    :meth:`split`, which draws the bridge-consistent pair. Statistically the same as the tree for the
    queries the SDE samplers make; not the same numbers as ComfyUI.
    """

    def __init__(self, x: torch.Tensor, seed: int | None = None) -> None:
        self.gen = _generator(seed, x.device) if seed is not None else None
        self.shape, self.dtype, self.device = x.shape, x.dtype, x.device

    def _randn(self) -> torch.Tensor:
        return torch.randn(self.shape, dtype=self.dtype, device=self.device, generator=self.gen)

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        return self._randn()

    def split(self, sigma: torch.Tensor, sigma_mid: torch.Tensor, sigma_next: torch.Tensor):
        z1, z2 = self._randn(), self._randn()
        rho = ((sigma_mid - sigma).abs() / (sigma_next - sigma).abs()).clamp(0, 1)  # corr of the nested increments
        return z1, z1 * rho.sqrt() + z2 * (1 - rho).sqrt()


#: how a batch gets its noise: "comfy" (one draw for the whole batch, ComfyUI's numbers), "per_item" (item i from its
#: own CPU generator seeded with seed + i, so it can be re-made alone on any device), or AUTOMATIC1111's: image i
#: from seed + i with its "NV"/GPU source (CUDA's Philox numbers on any device) or its CPU source (torch's CPU
#: generator), with its variation-seed slerp, resize-seed-from and eta noise seed delta
BATCH_MODES = ("comfy", "per_item", "a1111_gpu", "a1111_cpu")
A1111_MODES = ("a1111_gpu", "a1111_cpu")


def a1111_randn(mode: str, seed: int, shape: Sequence[int]) -> torch.Tensor:
    """The first draw of a fresh AUTOMATIC1111 generator for ``seed`` (CPU, float32)."""
    if mode == "a1111_gpu":
        from .philox import philox_randn

        return philox_randn(seed, shape)
    return torch.randn(tuple(shape), generator=_generator(seed), device="cpu")


def a1111_slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """AUTOMATIC1111's variation blend of one image's (C, H, W) noise: spherical along dim 1 (as it is written
    there), linear when the two are nearly parallel (with its weights as written there)."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def a1111_image_noise(mode: str, seed: int, shape: tuple, subseed: int = 0, subseed_strength: float = 0.0,
                      resize_from: tuple[int, int] | None = None) -> torch.Tensor:
    """One image's initial noise as AUTOMATIC1111 makes it: the seed's draw, blended with the variation seed's, and,
    with "resize seed from" (latent h, w), drawn at that size and pasted centred into the seed's draw at ``shape``."""
    noise_shape = tuple(shape) if not resize_from else (shape[0], int(resize_from[0]), int(resize_from[1]))
    noise = a1111_randn(mode, seed, noise_shape)
    if subseed_strength:
        noise = a1111_slerp(float(subseed_strength), noise, a1111_randn(mode, subseed, noise_shape))
    if noise_shape != tuple(shape):
        x = a1111_randn(mode, seed, shape)
        dx, dy = (shape[2] - noise_shape[2]) // 2, (shape[1] - noise_shape[1]) // 2
        w = noise_shape[2] if dx >= 0 else noise_shape[2] + 2 * dx
        h = noise_shape[1] if dy >= 0 else noise_shape[1] + 2 * dy
        tx, ty = max(dx, 0), max(dy, 0)
        sx, sy = max(-dx, 0), max(-dy, 0)
        x[:, ty:ty + h, tx:tx + w] = noise[:, sy:sy + h, sx:sx + w]
        noise = x
    return noise


class _A1111StepNoise:
    """Per-step draws as AUTOMATIC1111's image generators give them: one stream per image, continuing after its
    initial draw, or restarted from seed + eta noise seed delta when that is set."""

    def __init__(self, x: torch.Tensor, mode: str, seeds: Sequence[int], ensd: int) -> None:
        from .philox import PhiloxGenerator

        self.shape, self.dtype, self.device = tuple(x.shape[1:]), x.dtype, x.device
        self.mode = mode
        if mode == "a1111_gpu":
            self.gens = [PhiloxGenerator((s + ensd) & SEED_MAX, 0 if ensd else 1) for s in seeds]
        else:
            self.gens = []
            for s in seeds:
                gen = _generator((s + ensd) & SEED_MAX)
                if not ensd:
                    torch.randn(self.shape, generator=gen)  # the initial draw came first
                self.gens.append(gen)

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        if self.mode == "a1111_gpu":
            draws = [g.randn(self.shape) for g in self.gens]
        else:
            draws = [torch.randn(self.shape, generator=g, device="cpu") for g in self.gens]
        return torch.stack(draws).to(device=self.device, dtype=self.dtype)


def item_seeds(seed: int, batch: int, batch_index: Sequence[int] | None = None) -> tuple[int, ...]:
    """Per-item seeds: ``seed + i``, or ``seed + batch_index[i]`` when the latent has one (wrapping at 2^64)."""
    offsets = range(batch) if batch_index is None else batch_index
    return tuple((seed + int(i)) & SEED_MAX for i in offsets)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation per batch item (Shoemake 1985): t=0 gives a, t=1 gives b, and the norm of two
    independent unit-variance draws is kept, so the blend keeps unit variance."""
    if t <= 0:
        return a
    if t >= 1:
        return b
    flat_a, flat_b = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    cos = (flat_a * flat_b).sum(1) / (flat_a.norm(dim=1) * flat_b.norm(dim=1)).clamp_min(1e-12)
    omega = cos.clamp(-1, 1).acos()
    sin = omega.sin()
    small = sin.abs() < 1e-6
    wa = torch.where(small, torch.full_like(sin, 1 - t), ((1 - t) * omega).sin() / sin.where(~small, torch.ones_like(sin)))
    wb = torch.where(small, torch.full_like(sin, t), (t * omega).sin() / sin.where(~small, torch.ones_like(sin)))
    out = wa[:, None] * flat_a + wb[:, None] * flat_b
    return out.reshape(a.shape).to(a.dtype)


class _PerItemNoise:
    """Per-step noise drawn item by item from CPU generators (one per batch item), then moved to the device:
    the same numbers on any device and whatever the batch."""

    def __init__(self, x: torch.Tensor, seeds: Sequence[int]) -> None:
        self.gens = [_generator(s) for s in seeds]
        self.shape, self.dtype, self.device = tuple(x.shape[1:]), x.dtype, x.device

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        draws = [torch.randn(self.shape, generator=g, device="cpu") for g in self.gens]
        return torch.stack(draws).to(device=self.device, dtype=self.dtype)


class _PerItemBrownian:
    """One Brownian tree per batch item (entropy = that item's seed), on the CPU."""

    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seeds: Sequence[int]) -> None:
        proto = torch.zeros((1,) + tuple(x.shape[1:]), dtype=x.dtype)
        self.trees = [BrownianTreeNoiseSampler(proto, sigma_min, sigma_max, seed=s, cpu=True) for s in seeds]
        self.device, self.dtype = x.device, x.dtype

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        a, b = torch.as_tensor(sigma).cpu(), torch.as_tensor(sigma_next).cpu()
        return torch.cat([t(a, b) for t in self.trees]).to(device=self.device, dtype=self.dtype)


@dataclass(frozen=True)
class NoiseSource:
    """Everything random in one run, as plain data: the initial noise and the per-step noise that samplers
    draw (ComfyUI's default stream, its Brownian tree, ddim's inpaint noise).

    Samplers receive it as their ``noise_sampler`` and bind it to their latent (``default(x)`` for per-step
    normal draws, ``brownian(x, sigmas, cpu_tree)`` for the SDE samplers). ``batch_mode="comfy"`` with the
    profile's ``cpu_seed_offset`` gives exactly ComfyUI's numbers; ``"per_item"`` draws every item from its
    own CPU generator (``item_seeds``), initial and per-step noise alike. ``variation_*`` blends the initial
    noise with another seed's (slerp)."""

    seed: int
    cpu_seed_offset: int = 0
    sde: str = "brownian"
    batch_mode: str = "comfy"
    variation_seed: int = 0
    variation_strength: float = 0.0
    #: the latent's batch_index, which per-item seeds follow (set by ``with_batch_index``)
    batch_index: tuple[int, ...] | None = None
    #: AUTOMATIC1111's "eta noise seed delta" (its per-step noise restarts from seed + delta)
    ensd: int = 0
    #: AUTOMATIC1111's "resize seed from" as a latent size (h, w), or None
    resize_from: tuple[int, int] | None = None
    #: the initial noise is drawn in float32 and cast to the latent's dtype (the profile's noise_drawn_in_float32)
    float32_draws: bool = False

    def __post_init__(self) -> None:
        validate_seed(self.seed, "noise_seed")
        validate_seed(self.variation_seed, "variation_seed")
        if self.batch_mode not in BATCH_MODES:
            raise ValueError(f"batch_mode: {self.batch_mode!r} is not one of {', '.join(BATCH_MODES)}")
        if self.sde not in SDE_NOISE_SOURCES:
            raise ValueError(f"sde_noise: unknown source {self.sde!r}; allowed: {', '.join(SDE_NOISE_SOURCES)}")
        if self.sde == "fast" and self.batch_mode != "comfy":
            raise ValueError(f"sde_noise: 'fast' draws on the sampling device, so it cannot be {self.batch_mode}; use "
                             f"'brownian'")
        validate_seed(self.ensd, "eta_noise_seed_delta")
        if isinstance(self.resize_from, list):  # from a serialised state or recipe
            object.__setattr__(self, "resize_from", tuple(self.resize_from))
        if self.resize_from is not None and (len(self.resize_from) != 2 or
                                             not all(isinstance(v, int) and v > 0 for v in self.resize_from)):
            raise ValueError(f"seed_resize_from: expected a latent size (h, w) of positive integers, got "
                             f"{self.resize_from!r}")
        if (self.ensd or self.resize_from) and self.batch_mode not in A1111_MODES:
            raise ValueError("eta_noise_seed_delta, seed_resize_from: AUTOMATIC1111's settings need batch_mode "
                             "a1111_gpu or a1111_cpu")
        s = self.variation_strength
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (0.0 <= s <= 1.0):
            raise ValueError(f"variation_strength: expected a number in 0.0..1.0, got {s!r}")

    # --- initial noise -------------------------------------------------------------------------------
    def _a1111(self, latent: torch.Tensor, batch_index) -> torch.Tensor:
        if is_nested(latent) or latent.ndim != 4:
            raise ValueError(f"noise: batch_mode {self.batch_mode} makes noise for 4-D image latents only")
        seeds = item_seeds(self.seed, latent.shape[0], batch_index)
        shape = tuple(latent.shape[1:])
        return torch.stack([a1111_image_noise(self.batch_mode, s, shape, self.variation_seed,
                                              float(self.variation_strength), self.resize_from)
                            for s in seeds]).to(latent.dtype)

    def _draw(self, latent: torch.Tensor, seed: int, batch_index) -> torch.Tensor:
        if self.batch_mode == "comfy":
            return prepare_noise(latent, seed, batch_index, self.float32_draws)
        if is_nested(latent):
            raise ValueError("noise: batch_mode per_item does not support nested latents; use comfy")
        shape = (1,) + tuple(latent.shape[1:])
        seeds = item_seeds(seed, latent.shape[0], batch_index)
        dtype = torch.float32 if self.float32_draws else latent.dtype
        return torch.cat([torch.randn(shape, dtype=dtype, generator=_generator(s), device="cpu")
                          for s in seeds]).to(latent.dtype)

    def initial(self, latent: torch.Tensor, batch_index: Sequence[int] | None = None) -> torch.Tensor:
        """The noise added to the latent (CPU, like ComfyUI's ``prepare_noise``)."""
        if self.batch_mode in A1111_MODES:
            return self._a1111(latent, batch_index)
        noise = self._draw(latent, self.seed, batch_index)
        if self.variation_strength > 0 and is_nested(latent):
            raise ValueError("variation_strength: variations of nested latents are not supported; use 0")
        if self.variation_strength > 0:
            noise = slerp(noise, self._draw(latent, self.variation_seed, batch_index), float(self.variation_strength))
        return noise

    # --- per-step noise ------------------------------------------------------------------------------------
    def _item_seeds(self, x: torch.Tensor, offset: int) -> tuple[int, ...]:
        return item_seeds((self.seed + offset) & SEED_MAX, x.shape[0], self.batch_index)

    def default(self, x: torch.Tensor) -> NoiseSampler:
        """Per-step N(0, 1) draws of x's shape (ancestral, lcm, ddpm, er_sde, seeds, sa_solver ...)."""
        if self.batch_mode in A1111_MODES:
            return _A1111StepNoise(x, self.batch_mode, self._item_seeds(x, 0), self.ensd)
        if self.batch_mode == "per_item":
            return _PerItemNoise(x, self._item_seeds(x, 1))
        seed = self.seed
        if self.cpu_seed_offset and torch.device(x.device).type == "cpu":
            seed = seed + self.cpu_seed_offset
            if seed > SEED_MAX:
                raise ValueError(
                    f"seed: {self.seed} is too large for this sampler's per-step noise, which ComfyUI (from 0.7.0) seeds "
                    f"with seed+{self.cpu_seed_offset} on the CPU (ComfyUI itself fails with an overflow); allowed: "
                    f"0..{SEED_MAX - self.cpu_seed_offset}")
        return default_noise_sampler(x, seed)

    def brownian(self, x: torch.Tensor, sigmas: torch.Tensor, cpu_tree: bool = True) -> NoiseSampler:
        """Brownian-motion increments for the SDE samplers over the run's positive sigma range."""
        if self.sde == "fast":
            return FastBrownianNoiseSampler(x, self.seed)
        positive = sigmas[sigmas > 0]
        if self.batch_mode != "comfy":  # per item, and AUTOMATIC1111's one tree per image seed
            return _PerItemBrownian(x, positive.min(), sigmas.max(), self._item_seeds(x, 0))
        return BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=self.seed, cpu=cpu_tree)

    def inpaint(self, shape: Sequence[int], dtype: torch.dtype, device) -> torch.Tensor:
        """ddim's inpaint noise: ComfyUI's ``randn`` after seeding with seed + 1; per item in the per-item modes."""
        if self.batch_mode != "comfy":
            seeds = item_seeds((self.seed + 1) & SEED_MAX, shape[0], self.batch_index)
            one = (1,) + tuple(shape[1:])
            return torch.cat([torch.randn(one, generator=_generator(s), device="cpu") for s in seeds]).to(dtype).to(device)
        return inpaint_noise(shape, self.seed, dtype, device)

    def with_batch_index(self, batch_index: Sequence[int] | None) -> "NoiseSource":
        """The same source, knowing the latent's batch_index (per-item seeds follow it)."""
        return dataclasses.replace(self, batch_index=None if batch_index is None else tuple(int(i) for i in batch_index))

    def describe(self) -> dict:
        """Plain data for UIs and recipes."""
        out = {"seed": self.seed, "batch_mode": self.batch_mode, "cpu_seed_offset": self.cpu_seed_offset,
               "sde": self.sde, "variation_seed": self.variation_seed,
               "variation_strength": float(self.variation_strength)}
        if self.ensd:
            out["eta_noise_seed_delta"] = self.ensd
        if self.resize_from:
            out["seed_resize_from"] = list(self.resize_from)
        return out  # float32_draws follows the recipe's profile
