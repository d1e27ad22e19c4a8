"""CUDA's default random numbers on any device: Philox 4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy
as 1, 2, 3") and Box-Muller, laid out as ``torch.randn(shape, device="cuda")`` after ``torch.manual_seed(seed)``
draws them, which is what AUTOMATIC1111 calls its "NV" random number source.

Element ``i`` of a draw comes from one Philox block with counter ``(offset, 0, i, 0)`` and the seed as key (low and
high 32-bit words); its first two 32-bit outputs ``a, b`` become ``sqrt(-2 ln u) * sin(2 pi v)`` with
``u = (a + 1/2) / 2^32`` and ``v = (b + 1/2) / 2^32`` in float32 (curand's normal). Each draw advances the offset by
one. Vectorised over the elements, in int64 arithmetic on the tensor's device.
"""
from __future__ import annotations

import math

import torch

__all__ = ["philox4x32", "philox_randn", "PhiloxGenerator"]

_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # the round multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # the key's Weyl increments (golden ratio, sqrt(3) - 1)
_MASK = 0xFFFFFFFF


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit words of the 64-bit product of a constant and 32-bit words (int64 tensors)."""
    # split b in 16-bit halves so no partial product overflows int64
    b_lo, b_hi = b & 0xFFFF, b >> 16
    a_lo, a_hi = a & 0xFFFF, a >> 16
    lo_lo = a_lo * b_lo
    mid1 = a_hi * b_lo
    mid2 = a_lo * b_hi
    hi_hi = a_hi * b_hi
    cross = (lo_lo >> 16) + (mid1 & 0xFFFF) + (mid2 & 0xFFFF)
    low = ((cross & 0xFFFF) << 16) | (lo_lo & 0xFFFF)
    high = hi_hi + (mid1 >> 16) + (mid2 >> 16) + (cross >> 16)
    return high & _MASK, low & _MASK


def philox4x32(counter: list[torch.Tensor], key: tuple[int, int], rounds: int = 10) -> list[torch.Tensor]:
    """The Philox 4x32 block function on 4 words of counters (int64 tensors holding 32-bit values)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = (hi1 ^ c1 ^ k0) & _MASK, lo1, (hi0 ^ c3 ^ k1) & _MASK, lo0
        k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
    return [c0, c1, c2, c3]


def philox_randn(seed: int, shape, offset: int = 0, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normal draws as CUDA's generator gives them for ``seed`` at ``offset`` (see the module docstring)."""
    n = math.prod(int(s) for s in shape)
    idx = torch.arange(n, dtype=torch.int64, device=device)
    zeros = torch.zeros_like(idx)
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    out = philox4x32([torch.full_like(idx, offset & _MASK), zeros, idx & _MASK, (idx >> 32) & _MASK],
                     (seed & _MASK, (seed >> 32) & _MASK))
    inv = torch.tensor(2.3283064e-10, dtype=torch.float32, device=device)  # 2^-32 as float32
    two_pi_inv = torch.tensor(2.3283064e-10 * 6.2831855, dtype=torch.float32, device=device)
    u = out[0].to(torch.float32) * inv + inv / 2
    v = out[1].to(torch.float32) * two_pi_inv + two_pi_inv / 2
    normal = torch.sqrt(-2.0 * torch.log(u)) * torch.sin(v)
    return normal.reshape(tuple(int(s) for s in shape)).to(dtype)


class PhiloxGenerator:
    """A seeded stream of such draws: each ``randn`` uses the next offset (AUTOMATIC1111's NV generator)."""

    def __init__(self, seed: int, offset: int = 0) -> None:
        self.seed, self.offset = int(seed), int(offset)

    def randn(self, shape, device=None, dtype=torch.float32) -> torch.Tensor:
        out = philox_randn(self.seed, shape, self.offset, device, dtype)
        self.offset += 1
        return out
