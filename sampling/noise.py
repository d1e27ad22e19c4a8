"""Initial noise and per-step noise sources, identical to ComfyUI's by default.

Seeds use private ``torch.Generator`` objects: the same stream as ``torch.manual_seed`` without
touching the process-wide generator.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch

__all__ = ["SEED_MAX", "validate_seed", "check_inpaint_seed", "prepare_noise", "NoiseSampler", "default_noise_sampler",
           "BrownianTreeNoiseSampler", "FastBrownianNoiseSampler", "SDE_NOISE_SOURCES", "inpaint_noise"]

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


def prepare_noise(latent: torch.Tensor, seed: int, batch_index: Sequence[int] | None = None) -> torch.Tensor:
    """ComfyUI's initial noise: ``randn(latent.shape)`` on the CPU after seeding.

    With ``batch_index``, draws ``max(batch_index)+1`` single-sample tensors in sequence and gives
    batch item k draw number ``batch_index[k]``, so a sample can be regenerated alone.
    """
    validate_seed(seed)
    gen = _generator(seed)
    shape = tuple(latent.shape)
    if batch_index is None:
        return torch.randn(shape, dtype=latent.dtype, layout=latent.layout, generator=gen, device="cpu")
    draws = [torch.randn((1,) + shape[1:], dtype=latent.dtype, layout=latent.layout, generator=gen, device="cpu")
             for _ in range(max(batch_index) + 1)]
    return torch.cat([draws[i] for i in batch_index], dim=0)


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
