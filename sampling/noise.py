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
           "BATCH_MODES", "slerp", "item_seeds"]

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


def _draw_noise(latent: torch.Tensor, gen: torch.Generator, batch_index: Sequence[int] | None) -> torch.Tensor:
    shape = tuple(latent.shape)
    if batch_index is None:
        return torch.randn(shape, dtype=latent.dtype, layout=latent.layout, generator=gen, device="cpu")
    draws = [torch.randn((1,) + shape[1:], dtype=latent.dtype, layout=latent.layout, generator=gen, device="cpu")
             for _ in range(max(batch_index) + 1)]
    return torch.cat([draws[i] for i in batch_index], dim=0)


def is_nested(latent) -> bool:
    """ComfyUI 0.8.0's nested latents (e.g. audio + video): an object with ``is_nested`` and ``unbind()``."""
    return bool(getattr(latent, "is_nested", False)) and hasattr(latent, "unbind")


def prepare_noise(latent: torch.Tensor, seed: int, batch_index: Sequence[int] | None = None):
    """ComfyUI's initial noise: ``randn(latent.shape)`` on the CPU after seeding.

    With ``batch_index``, draws ``max(batch_index)+1`` single-sample tensors in sequence and gives
    batch item k draw number ``batch_index[k]``, so a sample can be regenerated alone. A nested latent gets
    a list with one tensor per part, drawn one after the other from the same generator (as ComfyUI 0.8.0).
    """
    validate_seed(seed)
    gen = _generator(seed)
    if is_nested(latent):
        return [_draw_noise(t, gen, batch_index) for t in latent.unbind()]
    return _draw_noise(latent, gen, batch_index)


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


#: how a batch gets its noise: "comfy" (one draw for the whole batch, ComfyUI's numbers) or "per_item"
#: (item i from its own CPU generator seeded with seed + i, so it can be re-made alone on any device)
BATCH_MODES = ("comfy", "per_item")


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

    def __post_init__(self) -> None:
        validate_seed(self.seed, "noise_seed")
        validate_seed(self.variation_seed, "variation_seed")
        if self.batch_mode not in BATCH_MODES:
            raise ValueError(f"batch_mode: {self.batch_mode!r} is not one of {', '.join(BATCH_MODES)}")
        if self.sde not in SDE_NOISE_SOURCES:
            raise ValueError(f"sde_noise: unknown source {self.sde!r}; allowed: {', '.join(SDE_NOISE_SOURCES)}")
        if self.sde == "fast" and self.batch_mode == "per_item":
            raise ValueError("sde_noise: 'fast' draws on the sampling device, so it cannot be per_item; use 'brownian'")
        s = self.variation_strength
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (0.0 <= s <= 1.0):
            raise ValueError(f"variation_strength: expected a number in 0.0..1.0, got {s!r}")

    # --- initial noise -------------------------------------------------------------------------------
    def _draw(self, latent: torch.Tensor, seed: int, batch_index) -> torch.Tensor:
        if self.batch_mode == "comfy":
            return prepare_noise(latent, seed, batch_index)
        if is_nested(latent):
            raise ValueError("noise: batch_mode per_item does not support nested latents; use comfy")
        shape = (1,) + tuple(latent.shape[1:])
        seeds = item_seeds(seed, latent.shape[0], batch_index)
        return torch.cat([torch.randn(shape, dtype=latent.dtype, generator=_generator(s), device="cpu") for s in seeds])

    def initial(self, latent: torch.Tensor, batch_index: Sequence[int] | None = None) -> torch.Tensor:
        """The noise added to the latent (CPU, like ComfyUI's ``prepare_noise``)."""
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
        if self.batch_mode == "per_item":
            return _PerItemBrownian(x, positive.min(), sigmas.max(), self._item_seeds(x, 0))
        return BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=self.seed, cpu=cpu_tree)

    def inpaint(self, shape: Sequence[int], dtype: torch.dtype, device) -> torch.Tensor:
        """ddim's inpaint noise: ComfyUI's ``randn`` after seeding with seed + 1; per item in per_item mode."""
        if self.batch_mode == "per_item":
            seeds = item_seeds((self.seed + 1) & SEED_MAX, shape[0], self.batch_index)
            one = (1,) + tuple(shape[1:])
            return torch.cat([torch.randn(one, generator=_generator(s), device="cpu") for s in seeds]).to(dtype).to(device)
        return inpaint_noise(shape, self.seed, dtype, device)

    def with_batch_index(self, batch_index: Sequence[int] | None) -> "NoiseSource":
        """The same source, knowing the latent's batch_index (per-item seeds follow it)."""
        return dataclasses.replace(self, batch_index=None if batch_index is None else tuple(int(i) for i in batch_index))

    def describe(self) -> dict:
        """Plain data for UIs and recipes."""
        return {"seed": self.seed, "batch_mode": self.batch_mode, "cpu_seed_offset": self.cpu_seed_offset,
                "sde": self.sde, "variation_seed": self.variation_seed,
                "variation_strength": float(self.variation_strength)}

    def initial_for(self, latent: torch.Tensor) -> torch.Tensor:
        """Initial noise for ``latent`` with this source's batch_index."""
        return self.initial(latent, self.batch_index)
