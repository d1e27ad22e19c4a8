"""The standalone model and its classifier-free-guidance denoiser (no ComfyUI needed).

A :class:`StandaloneModel` is a network ``net(x_in, t, context) -> prediction`` plus its sampling
description and latent format. Its :meth:`~StandaloneModel.sample` mirrors what ComfyUI's
``CFGGuider`` + ``KSAMPLER`` do around a sampler: latent in/out, initial noise scaling, inpaint
masking and CFG with cond and uncond in one batched network call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..schedulers.model_sampling import DiscreteModelSampling, reshape_sigma
from .latent_format import SD15, LatentFormat
from .model import UncondTap
from .noise import inpaint_noise

__all__ = ["CondEntry", "parse_conditioning", "reshape_mask", "repeat_to_batch_size", "StandaloneModel",
           "CFGDenoiser"]

Network = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def repeat_to_batch_size(tensor: torch.Tensor, batch_size: int, dim: int = 0) -> torch.Tensor:
    n = tensor.shape[dim]
    if n > batch_size:
        return tensor.narrow(dim, 0, batch_size)
    if n < batch_size:
        reps = [1] * tensor.ndim
        reps[dim] = math.ceil(batch_size / n)
        return tensor.repeat(reps).narrow(dim, 0, batch_size)
    return tensor


def reshape_mask(mask: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resize a (…, h, w) mask to a latent of ``shape`` (bilinear, or trilinear for 5-D latents),
    then repeat it over channels and batch."""
    dims = len(shape) - 2
    if dims == 2:
        mask = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
        mode = "bilinear"
    elif dims == 3:
        if mask.ndim < 5:
            mask = mask.reshape((1, 1, -1, mask.shape[-2], mask.shape[-1]))
        mode = "trilinear"
    else:
        raise ValueError(f"noise_mask: latents must be 4-D or 5-D, got {len(shape)}-D")
    mask = torch.nn.functional.interpolate(mask.float(), size=tuple(shape[2:]), mode=mode)
    if mask.shape[1] < shape[1]:
        mask = mask.repeat((1, shape[1]) + (1,) * dims)[:, :shape[1]]
    return repeat_to_batch_size(mask, shape[0])


@dataclass
class CondEntry:
    """One conditioning entry: a context (1|B, tokens, dim) and ComfyUI-style options."""

    context: torch.Tensor
    strength: float = 1.0
    mask: torch.Tensor | None = None
    mask_strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    options: dict = field(default_factory=dict)


_KNOWN_OPTIONS = {"strength", "mask", "mask_strength", "start_percent", "end_percent", "pooled_output",
                  "set_area_to_bounds"}


def parse_conditioning(cond: Any, name: str) -> list[CondEntry]:
    """Accept ComfyUI's CONDITIONING format, ``[[tensor, {options}], ...]``."""
    if not isinstance(cond, (list, tuple)) or len(cond) == 0:
        raise ValueError(f"{name}: expected a CONDITIONING list [[tensor, {{...}}], ...], got {type(cond).__name__}")
    entries = []
    for k, item in enumerate(cond):
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], torch.Tensor):
            raise ValueError(f"{name}[{k}]: expected [tensor, dict], got {item!r:.80}")
        ctx, opts = item
        opts = dict(opts or {})
        unknown = set(opts) - _KNOWN_OPTIONS
        if unknown:
            raise ValueError(f"{name}[{k}]: conditioning options {sorted(unknown)} are not supported by the "
                             f"standalone sampler; supported: {sorted(_KNOWN_OPTIONS)}")
        if ctx.ndim != 3:
            raise ValueError(f"{name}[{k}]: context must be (batch, tokens, dim), got shape {tuple(ctx.shape)}")
        entries.append(CondEntry(ctx, float(opts.get("strength", 1.0)), opts.get("mask"),
                                 float(opts.get("mask_strength", 1.0)), float(opts.get("start_percent", 0.0)),
                                 float(opts.get("end_percent", 1.0)), opts))
    return entries


class StandaloneModel:
    """A model without ComfyUI: network + sampling description + latent format.

    ``network(x_in, t, context)`` receives ``calculate_input(sigma, x)``, the float32 timestep and the
    batched context, exactly as ComfyUI's ``BaseModel.apply_model`` feeds a UNet.
    """

    def __init__(self, network: Network, model_sampling: DiscreteModelSampling | None = None,
                 latent_format: LatentFormat = SD15, device: torch.device | str | None = None,
                 name: str = "model") -> None:
        self.network = network
        self.model_sampling = model_sampling or DiscreteModelSampling.scaled_linear()
        self.latent_format = latent_format
        self.name = name
        if device is None:
            params = getattr(network, "parameters", None)
            first = next(iter(params()), None) if callable(params) else None
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)

    #: bytes of working memory per latent element while sampling (buffers of the sampler, CFG's batch of two,
    #: the network's activations); a model whose network needs more says so
    bytes_per_element = 160

    def memory_estimate(self, shape: Sequence[int], sampler_name: str = "") -> int:
        """A rough upper bound of the memory a run on a latent of ``shape`` needs, for an early refusal."""
        n = 1
        for d in shape:
            n *= int(d)
        return n * self.bytes_per_element

    @property
    def latent_channels(self) -> int:
        return self.latent_format.channels

    def with_network(self, network: Network, name: str | None = None) -> "StandaloneModel":
        """A copy with another network (a patched or styled model), sharing everything else."""
        return StandaloneModel(network, self.model_sampling, self.latent_format, self.device, name or self.name)

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        ms = self.model_sampling
        xc = ms.calculate_input(sigma, x)
        t = ms.timestep(sigma).float()
        out = self.network(xc, t, context).float()
        return ms.calculate_denoised(sigma, out, x)

    def fix_empty_latent_channels(self, latent: torch.Tensor, downscale_ratio_spacial: int | None = None,
                                  downscale_ratio_temporal: int | None = None) -> torch.Tensor:
        """An all-zero latent with the wrong channel count is widened/narrowed to the model's; one made for another
        spatial scale (ComfyUI 0.22.0's ``downscale_ratio_spacial``) is resized nearest-exact to this model's."""
        empty = torch.count_nonzero(latent) == 0
        if latent.shape[1] != self.latent_channels and empty:
            latent = repeat_to_batch_size(latent, self.latent_channels, dim=1)
        own = getattr(self.latent_format, "spacial_downscale_ratio", 8)
        if empty and downscale_ratio_spacial is not None and downscale_ratio_spacial != own:
            ratio = downscale_ratio_spacial / own
            size = (round(latent.shape[-2] * ratio), round(latent.shape[-1] * ratio))
            if latent.ndim == 5:
                b, c, t = latent.shape[:3]
                flat = torch.nn.functional.interpolate(latent.reshape(b, c * t, *latent.shape[-2:]), size=size,
                                                       mode="nearest-exact")
                latent = flat.reshape(b, c, t, *size)
            else:
                latent = torch.nn.functional.interpolate(latent, size=size, mode="nearest-exact")
        return latent

    def sample(self, noise: torch.Tensor, latent_image: torch.Tensor, sampler_fn, sigmas: torch.Tensor,
               positive, negative, cfg: float, noise_mask: torch.Tensor | None = None, callback=None,
               seed: int | None = None, disable_pbar: bool = True,
               random_inpaint_noise: bool = False, inpaint_source=None,
               sampler_options: dict | None = None) -> torch.Tensor:
        """Run ``sampler_fn`` over ``sigmas``; returns samples in latent (VAE) space, float32."""
        if sigmas.shape[-1] == 0:
            return latent_image
        device = self.device
        noise = noise.to(device)
        latent_image = latent_image.to(device)
        sigmas = sigmas.to(device)
        if torch.count_nonzero(latent_image) > 0:
            latent_image = self.latent_format.process_in(latent_image)
        mask = reshape_mask(noise_mask, noise.shape).to(device) if noise_mask is not None else None
        if random_inpaint_noise and inpaint_source is not None:
            mask_noise = inpaint_source.inpaint(noise.shape, noise.dtype, device)
        elif random_inpaint_noise:
            mask_noise = inpaint_noise(noise.shape, 41 if seed is None else seed, noise.dtype, device)
        else:
            mask_noise = noise
        denoiser = CFGDenoiser(self, parse_conditioning(positive, "positive"), parse_conditioning(negative, "negative"),
                               cfg, latent_image, mask_noise, mask)
        ms = self.model_sampling
        x = ms.noise_scaling(sigmas[0], noise, latent_image, ms.is_max_denoise(float(sigmas[0])))
        total_steps = len(sigmas) - 1
        k_callback = None
        if callback is not None:
            k_callback = lambda d: callback(d["i"], d["denoised"], d["x"], total_steps)  # noqa: E731
        samples = sampler_fn(denoiser, x, sigmas, extra_args={"seed": seed}, callback=k_callback, disable=disable_pbar,
                             **(sampler_options or {}))
        samples = ms.inverse_noise_scaling(sigmas[-1], samples)
        return self.latent_format.process_out(samples.to(torch.float32))


class CFGDenoiser:
    """D(x, sigma) with inpaint masking and classifier-free guidance (Ho & Salimans 2022).

    ``uncond + (cond - uncond) * cfg`` on x0 predictions; cond and uncond share one network call;
    ``cfg`` close to 1 skips the uncond pass unless a CFG++ sampler asked for it.
    """

    def __init__(self, model: StandaloneModel, positive: list[CondEntry], negative: list[CondEntry], cfg: float,
                 latent_image: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor | None) -> None:
        self.model = model
        self.model_sampling = model.model_sampling
        self.cfg = float(cfg)
        self.cfg32_is_one = float(torch.tensor(self.cfg, dtype=torch.float32)) == 1.0
        self.latent_image = latent_image
        self.noise = noise
        self.mask = mask
        self.latent_mask = None if mask is None else 1.0 - mask
        self.positive = self._prepare(positive, latent_image)
        self.negative = self._prepare(negative, latent_image)
        plain = lambda group: len(group) == 1 and group[0][1] is None and group[0][2] is None and group[0][3] is None  # noqa
        self._simple = plain(self.positive) and plain(self.negative) and \
            _can_concat(self.positive[0][0], self.negative[0][0])
        self._contexts = None

    def _prepare(self, entries: list[CondEntry], latent: torch.Tensor):
        ms = self.model_sampling
        batch, device = latent.shape[0], latent.device
        out = []
        for e in entries:
            ctx = repeat_to_batch_size(e.context.to(device), batch)
            mult = None
            if e.mask is not None:
                m = e.mask
                m = m.unsqueeze(0) if m.ndim == 2 else m
                m = torch.nn.functional.interpolate(m.unsqueeze(1).float().to(device), size=tuple(latent.shape[2:]),
                                                    mode="bilinear", align_corners=False).squeeze(1)
                m = repeat_to_batch_size(m, batch) * e.mask_strength
                mult = m.unsqueeze(1).repeat(1, latent.shape[1], *([1] * (m.ndim - 1))) * e.strength
            elif e.strength != 1.0:
                mult = torch.full_like(latent, e.strength)
            # ComfyUI turns percents into sigmas: an entry is active while sigma_end <= sigma <= sigma_start.
            sig_start = ms.percent_to_sigma(e.start_percent) if e.start_percent > 0 else None
            sig_end = ms.percent_to_sigma(e.end_percent) if e.end_percent < 1 else None
            out.append((ctx, mult, sig_start, sig_end))
        return out

    def request_uncond(self, extra_args: dict) -> tuple[dict, UncondTap]:
        tap = UncondTap()
        return {**extra_args, "uncond_tap": tap}, tap

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, uncond_tap: UncondTap | None = None,
                 **_: Any) -> torch.Tensor:
        if self.mask is not None:
            scaled = self.model_sampling.noise_scaling(sigma.reshape([sigma.shape[0]] + [1] * (x.ndim - 1)),
                                                       self.noise, self.latent_image)
            x = x * self.mask + scaled * self.latent_mask
        out = self.guided(x, sigma, uncond_tap)
        if self.mask is not None:
            out = out * self.mask + self.latent_image * self.latent_mask
        return out

    def guided(self, x: torch.Tensor, sigma: torch.Tensor, uncond_tap: UncondTap | None) -> torch.Tensor:
        want_uncond = uncond_tap is not None or not math.isclose(self.cfg, 1.0)
        cond_pred, uncond_pred = self.predict(x, sigma, self.positive, self.negative if want_uncond else None)
        if uncond_pred is None:
            uncond_pred = torch.zeros_like(cond_pred) if uncond_tap is not None else None
            # 0 + (cond - 0) * cfg is cond * cfg; skip the exact multiplication when cfg is 1 in float32
            result = cond_pred if self.cfg32_is_one else cond_pred * self.cfg
        else:
            result = uncond_pred + (cond_pred - uncond_pred) * self.cfg
        if uncond_tap is not None:
            uncond_tap.value = uncond_pred
        return result

    def predict(self, x: torch.Tensor, sigma: torch.Tensor, cond, uncond):
        """Network predictions for cond (index 0) and uncond (index 1), batching every entry whose
        context can be concatenated into one call (uncond first, as ComfyUI orders them)."""
        if self._simple:  # one plain entry each: the common case, without bookkeeping
            if uncond is None:
                return self.model.apply_model(x, sigma, cond[0][0]), None
            if self._contexts is None:
                self._contexts = _concat_contexts([uncond[0][0], cond[0][0]])
            u, c = self.model.apply_model(torch.cat([x, x]), torch.cat([sigma, sigma]), self._contexts).chunk(2)
            return c, u
        s = float(sigma.reshape(-1)[0]) if any(e[2] is not None or e[3] is not None
                                               for group in (cond, uncond or []) for e in group) else None
        runs = []
        for idx, group in enumerate((cond, uncond)):
            if group is None:
                continue
            for ctx, mult, sig_start, sig_end in group:
                if s is not None and ((sig_start is not None and s > sig_start) or (sig_end is not None and s < sig_end)):
                    continue
                runs.append((ctx, mult, idx))
        results: list[list] = [[], []]
        while runs:
            first = runs[0][0]
            members = [k for k in range(len(runs)) if _can_concat(runs[k][0], first)]
            batch = [runs.pop(k) for k in reversed(members)]
            contexts = _concat_contexts([b[0] for b in batch])
            n = len(batch)
            outs = self.model.apply_model(torch.cat([x] * n), torch.cat([sigma] * n), contexts).chunk(n)
            for o, (_, mult, idx) in zip(outs, batch):
                results[idx].append((o, mult))
        preds = []
        for idx, group in enumerate((cond, uncond)):
            if group is None:
                preds.append(None)
                continue
            items = results[idx]
            if len(items) == 1 and items[0][1] is None:
                preds.append(items[0][0])  # the common case: no weighting needed (and bit-exact)
                continue
            acc = torch.zeros_like(x)
            count = torch.ones_like(x) * 1e-37
            for o, mult in items:
                acc = acc + (o if mult is None else o * mult)
                count = count + (1.0 if mult is None else mult)
            preds.append(acc / count)
        return preds[0], preds[1]


def _can_concat(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape == b.shape:
        return True
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        return False
    return math.lcm(a.shape[1], b.shape[1]) // min(a.shape[1], b.shape[1]) <= 4


def _concat_contexts(contexts: list[torch.Tensor]) -> torch.Tensor:
    tokens = 1
    for c in contexts:
        tokens = math.lcm(tokens, c.shape[1])
    return torch.cat([c if c.shape[1] == tokens else c.repeat(1, tokens // c.shape[1], 1) for c in contexts])
