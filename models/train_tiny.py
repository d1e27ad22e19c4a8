"""Train ``stepwise-tiny`` from scratch on the continuous demo world (deterministic, resumable, ~45 min on 2 cores).

    python -m stepwise_sampler.models.train_tiny [--steps 2600] [--out models/weights/stepwise-tiny.safetensors]
        [--state train_state.pt] [--resume]

Every step draws a fresh batch of pictures (:func:`world.render_latents`, 256x256), their prompt evidence with
attributes and the whole prompt dropped at random (classifier-free guidance) and an SD1.5 timestep (log-normal in
sigma, Karras et al. 2022, plus a uniform share), and trains the per-channel EDM objective (loss on the
preconditioned output, i.e. ``|D(x; sigma) - z|^2 / c_out^2``). Every second step instead trains on 128x128 crops
at low noise, where a neighbourhood is all a denoiser needs, with each crop's coordinates in its picture (Patch
Diffusion, Wang et al. 2023): three times the pictures for the cost of one whole-picture step. AdamW with warm-up and cosine decay, gradient clipping, and an EMA of the
weights, which is what ships (float16, with the settings, the script's commit and the start of the loss curve in
the file's metadata). The state (weights, EMA, optimiser, random generators, losses) is saved every
``--save-every`` steps; ``--resume`` continues from it and gives the same result as an uninterrupted run.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..schedulers import DiscreteModelSampling
from .tiny import WEIGHTS, TinyConfig, TinyNetwork, TinyUNet
from .world import POSITIONS, layout_prior, named_evidence, render_latents, sample_attributes

CENTRE = list(POSITIONS).index("center")

__all__ = ["TrainSettings", "train", "main", "data_statistics"]


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 2200
    batch: int = 48  # whole 256x256 pictures per "full" step
    crop_batch: int = 144  # 128x128 crops per "crop" step (Patch Diffusion, Wang et al. 2023): local detail at low
    crop_size: int = 16  # noise costs a quarter of a whole picture, so these steps see three times the pictures
    crop_every: int = 2  # every second step is a crop step
    lr: float = 2e-3
    warmup: int = 200
    final_lr_fraction: float = 0.05
    ema: float = 0.998
    clip: float = 1.0
    seed: int = 20261206
    p_mean: float = -0.8  # whole pictures: log-normal sigma (EDM) centred where shapes are decided
    p_std: float = 1.4
    crop_p_mean: float = -2.4  # crops: low noise, where a pixel's neighbourhood is enough
    crop_p_std: float = 0.9
    crop_sigma_max: float = 0.6
    uniform_t: float = 0.15  # a share of uniformly drawn timesteps on whole pictures (the schedule's ends too)
    size: int = 32  # latent pixels a side (x8 in pixels)
    style_share: float = 0.12  # pictures drawn (partly) in the pixel-art style
    threads: int = 2


def data_statistics(seed: int, n: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and variance of the world's latents (the preconditioning's data statistics)."""
    gen = torch.Generator().manual_seed(seed)
    z = render_latents(sample_attributes(n, gen), 32, 32, gen)
    return z.mean((0, 2, 3)), z.var((0, 2, 3))


def _commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(Path(__file__).name), "tiny.py", "world.py"],
                               cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode == 0:
            return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


class Trainer:
    """One training run's state; :meth:`step` is one optimiser step on a fresh batch."""

    def __init__(self, settings: TrainSettings, config: TinyConfig = TinyConfig()) -> None:
        self.settings = s = settings
        torch.manual_seed(s.seed)
        mean, var = data_statistics(s.seed)
        self.model = TinyNetwork(config, mean, var)
        self.ema = TinyNetwork(config, mean, var)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=s.lr, betas=(0.9, 0.99), weight_decay=0.0)
        self.gen = torch.Generator().manual_seed(s.seed + 1)
        self.table = DiscreteModelSampling.scaled_linear().sigmas.double()
        self.log_table = self.table.log()
        self.done = 0
        self.losses: list[float] = []
        self.seconds = 0.0

    def lr_at(self, step: int) -> float:
        s = self.settings
        warm = min(1.0, (step + 1) / s.warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, step / s.steps)))
        return s.lr * warm * (s.final_lr_fraction + (1 - s.final_lr_fraction) * cosine)

    def _timesteps(self, n: int, p_mean: float, p_std: float, uniform: float, sigma_max: float | None = None):
        ln = p_mean + p_std * torch.randn(n, generator=self.gen, dtype=torch.float64)
        if sigma_max is not None:
            ln = ln.clamp(max=math.log(sigma_max))
        t = (ln[:, None] - self.log_table[None]).abs().argmin(1)
        picked = torch.rand(n, generator=self.gen) < uniform
        t[picked] = torch.randint(0, len(self.table), (int(picked.sum()),), generator=self.gen)
        return t

    def batch(self, crop: bool):
        """(clean, noisy, timesteps, sigmas, evidence, style, coordinates, layout prior) of one step's batch. A picture
        whose prompt names no place has its shape in the centre (the world's rule for the trained network, which the
        layout prior draws)."""
        s = self.settings
        n = s.crop_batch if crop else s.batch
        attrs = sample_attributes(n, self.gen)
        evidence, named = named_evidence(attrs, self.gen)
        attrs["position"] = torch.where(named["position"], attrs["position"], torch.full_like(attrs["position"], CENTRE))
        if crop:  # crops are drawn without the style (its blocks belong to the whole picture)
            k = s.crop_size
            r0 = torch.randint(0, s.size - k + 1, (n,), generator=self.gen)
            c0 = torch.randint(0, s.size - k + 1, (n,), generator=self.gen)
            style = torch.zeros(n)
            z = render_latents(attrs, s.size, s.size, self.gen, window=(r0, c0, k))
            grid = TinyUNet.coordinates(1, s.size, s.size)[0]
            index = (r0[:, None, None] + torch.arange(k)[None, :, None]) * s.size + \
                (c0[:, None, None] + torch.arange(k)[None, None, :])
            coords = grid.reshape(2, -1)[:, index.reshape(-1)].reshape(2, n, k, k).transpose(0, 1)
            t = self._timesteps(n, s.crop_p_mean, s.crop_p_std, 0.0, s.crop_sigma_max)
            full = layout_prior(evidence, s.size, s.size)
            channels = full.shape[1]
            prior = full.reshape(n, channels, -1).gather(2, index.reshape(n, 1, -1).expand(n, channels, -1)) \
                .reshape(n, channels, k, k)
        else:
            styled = torch.rand(n, generator=self.gen) < s.style_share
            style = torch.where(styled, torch.rand(n, generator=self.gen).mul(2).clamp(max=1.0), torch.zeros(n))
            z = render_latents(attrs, s.size, s.size, self.gen, style=style)
            coords = TinyUNet.coordinates(n, s.size, s.size)
            t = self._timesteps(n, s.p_mean, s.p_std, s.uniform_t)
            prior = layout_prior(evidence, s.size, s.size)
        sigma = self.table[t].float()
        x = z + sigma.reshape(-1, 1, 1, 1) * torch.randn(z.shape, generator=self.gen)
        return z, x, t, sigma, evidence, style, coords, prior

    def step(self) -> float:
        s = self.settings
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.done)
        crop = s.crop_every > 0 and self.done % s.crop_every == s.crop_every - 1
        z, x, t, sigma, evidence, style, coords, prior = self.batch(crop)
        c_in, c_skip, c_out = self.model.coefficients(sigma)
        centred = x - self.model.data_mean
        out = self.model.unet(centred * c_in, t, evidence, style, coords, prior)
        target = (z - self.model.data_mean - c_skip * centred) / c_out
        loss = (out - target).pow(2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.clip)
        self.opt.step()
        decay = min(s.ema, (1 + self.done) / (10 + self.done))
        with torch.no_grad():
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.lerp_(pm, 1 - decay)
        self.done += 1
        self.losses.append(float(loss.detach()))
        return self.losses[-1]

    # --- resumable state --------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"settings": asdict(self.settings), "config": self.model.unet.config.to_json(), "done": self.done,
                "model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(), "losses": self.losses,
                "seconds": self.seconds}

    def restore(self, state: dict) -> None:
        if state["settings"] != json.loads(json.dumps(asdict(self.settings))):
            raise ValueError("--resume: the saved state was made with other settings; start again without --resume")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        self.done, self.losses, self.seconds = state["done"], list(state["losses"]), state["seconds"]

    def save_weights(self, path: Path) -> Path:
        """The EMA weights (float16) with their metadata, written atomically."""
        from safetensors.torch import save_file

        tensors = {k: (v.half() if k.startswith("unet.") else v.float()).contiguous()
                   for k, v in self.ema.state_dict().items()}
        curve = [round(sum(self.losses[i:i + 25]) / len(self.losses[i:i + 25]), 5)
                 for i in range(0, min(len(self.losses), 400), 25)]
        meta = {"name": "stepwise-tiny", "config": self.model.unet.config.to_json(),
                "settings": json.dumps(asdict(self.settings), sort_keys=True), "commit": _commit(),
                "steps": str(self.done), "seconds": f"{self.seconds:.0f}",
                "loss_curve_start": json.dumps(curve), "final_loss": f"{sum(self.losses[-100:]) / max(1, len(self.losses[-100:])):.5f}",
                "parameters": str(sum(p.numel() for p in self.ema.unet.parameters())),
                "format": "EMA weights, float16 (buffers float32); see models/train_tiny.py"}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
        return path


def train(settings: TrainSettings, out: Path | None = WEIGHTS, state_path: Path | None = None, resume: bool = False,
          save_every: int = 200, progress: bool = True, stop_after: int | None = None) -> Trainer:
    """Run (or continue) a training; ``stop_after`` ends early after that many steps in all (for tests)."""
    from tqdm.auto import tqdm

    torch.set_num_threads(settings.threads)
    trainer = Trainer(settings)
    if resume and state_path is not None and Path(state_path).is_file():
        trainer.restore(torch.load(state_path, weights_only=False))
    last = settings.steps if stop_after is None else min(settings.steps, stop_after)
    bar = tqdm(total=last, initial=trainer.done, unit="step", disable=not progress, desc="stepwise-tiny",
               dynamic_ncols=True, mininterval=1.0)
    started = time.perf_counter() - trainer.seconds
    while trainer.done < last:
        loss = trainer.step()
        trainer.seconds = time.perf_counter() - started
        bar.update(1)
        if trainer.done % 25 == 0:
            bar.set_postfix(loss=f"{sum(trainer.losses[-25:]) / 25:.4f}", lr=f"{trainer.lr_at(trainer.done):.1e}")
        if state_path is not None and (trainer.done % save_every == 0 or trainer.done == last):
            tmp = Path(str(state_path) + ".tmp")
            torch.save(trainer.state(), tmp)
            tmp.replace(state_path)
        if not math.isfinite(loss):
            raise RuntimeError(f"training diverged at step {trainer.done} (loss {loss})")
    bar.close()
    if out is not None and trainer.done >= settings.steps:
        trainer.save_weights(Path(out))
    return trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stepwise_sampler.models.train_tiny", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainSettings()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--out", default=str(WEIGHTS), help="where the trained weights go (safetensors)")
    parser.add_argument("--state", default="stepwise-tiny.train.pt", help="the resumable training state")
    parser.add_argument("--resume", action="store_true", help="continue from --state")
    parser.add_argument("--save-every", type=int, default=200)
    args = parser.parse_args(argv)
    settings = TrainSettings(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed, threads=args.threads)
    trainer = train(settings, Path(args.out), Path(args.state), args.resume, args.save_every)
    print(f"trained {trainer.done} steps in {trainer.seconds / 60:.1f} min, final loss "
          f"{sum(trainer.losses[-100:]) / max(1, len(trainer.losses[-100:])):.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
