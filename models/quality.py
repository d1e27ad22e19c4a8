"""How good ``stepwise-tiny`` is, measured the issue's way: the picture classifier (``classify.read_latents``) on 64
seeds, one prompt each (every shape and colour on a background it stands out from), dpmpp_2m/karras, cfg 5: the share
showing the prompt's shape and colour at 50 steps, and the share keeping the 50-step shape and colour at 10 and 6
steps. ``python -m stepwise_sampler.models.quality [WEIGHTS] [--picture docs/tiny_steps.png]``."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..sampling import SAMPLERS
from ..sampling.registry import discards_penultimate
from ..schedulers import DiscreteModelSampling, ksampler_sigmas
from . import world
from .classify import read_latents

__all__ = ["quality_prompts", "sample_batch", "measure", "steps_picture"]

MS = DiscreteModelSampling.scaled_linear()
COLOURS = list(world.COLOURS)


def quality_prompts(n: int = 64) -> list[tuple[str, int, int]]:
    """(prompt, shape, colour): every shape and colour, on a background the colour stands out from."""
    out = []
    for i in range(n):
        shape, colour = world.SHAPES[i % 7], COLOURS[(i * 3) % 8]
        if colour in ("white", "yellow", "orange"):
            bg = "black"
        elif colour in ("black", "purple", "blue"):
            bg = "white"
        else:
            bg = ["grey", "sky", "white", "black"][i % 4]
        out.append((f"{colour} {shape} on {bg} background", world.SHAPES.index(shape), COLOURS.index(colour)))
    return out


def sample_batch(network, prompts: list[str], noise: torch.Tensor, steps: int, cfg: float = 5.0,
                 sampler: str = "dpmpp_2m", scheduler: str = "karras") -> torch.Tensor:
    """One batched run of ``sampler`` over the prompts (item i its own prompt), CFG in one network call."""
    from .tiny import prompt_denoiser

    sigmas = ksampler_sigmas(MS, scheduler, discards_penultimate(sampler), steps)
    return SAMPLERS[sampler](prompt_denoiser(network, prompts, cfg), noise * sigmas[0], sigmas, extra_args={},
                             callback=None, disable=True)


def measure(network, seeds: int = 64, size: int = 32, seed: int = 2026, cfg: float = 5.0) -> dict:
    """{"right_50", "keep_10", "keep_6", "rmse_10", "rmse_6", "seconds"} (see the module docstring); ``cfg`` 5 is the
    issue's measure."""
    prompts = quality_prompts(seeds)
    noise = torch.randn(seeds, 4, size, size, generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    out = {s: sample_batch(network, [p for p, _, _ in prompts], noise, s, cfg=cfg) for s in (50, 10, 6)}
    read = {s: read_latents(x) for s, x in out.items()}
    want_shape = torch.tensor([s for _, s, _ in prompts])
    want_colour = torch.tensor([c for _, _, c in prompts])
    r50 = read[50]
    result = {"right_50": ((r50.shape == want_shape) & (r50.colour == want_colour)).float().mean().item(),
              "shape_50": (r50.shape == want_shape).float().mean().item(),
              "colour_50": (r50.colour == want_colour).float().mean().item()}
    for s in (10, 6):
        result[f"keep_{s}"] = ((read[s].shape == r50.shape) & (read[s].colour == r50.colour)).float().mean().item()
        result[f"rmse_{s}"] = (out[s] - out[50]).pow(2).mean().sqrt().item()
    result["seconds"] = time.perf_counter() - start
    result["samples"] = out
    return result


def steps_picture(network, path: Path, prompts: int = 8, seed: int = 2026, cfg: float = 5.0) -> Path:
    """Rows of 50, 10 and 6 steps for the first ``prompts`` quality prompts (same seeds) at ``cfg``, labelled."""
    from PIL import Image, ImageDraw

    chosen = quality_prompts(prompts)
    noise = torch.randn(len(chosen), 4, 32, 32, generator=torch.Generator().manual_seed(seed))
    vae = world.DemoVAE()
    tile, label = 160, 28
    sheet = Image.new("RGB", (label * 4 + tile * len(chosen), label + tile * 3), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    for row, steps in enumerate((50, 10, 6)):
        images = vae.decode(sample_batch(network, [p for p, _, _ in chosen], noise, steps, cfg=cfg) / world.SCALE_FACTOR)
        draw.text((6, label + row * tile + tile // 2 - 6), f"{steps} steps", fill=(220, 220, 220))
        draw.text((6, label + row * tile + tile // 2 + 8), f"cfg {cfg:g}", fill=(160, 160, 160))
        for k, img in enumerate(images):
            pic = Image.fromarray((img.clamp(0, 1).numpy() * 255).astype("uint8")).resize((tile, tile))
            sheet.paste(pic, (label * 4 + k * tile, label + row * tile))
    for k, (prompt, _, _) in enumerate(chosen):
        draw.text((label * 4 + k * tile + 4, 8), prompt.replace(" background", ""), fill=(220, 220, 220))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    from .tiny import WEIGHTS, load_network

    parser = argparse.ArgumentParser(prog="python -m stepwise_sampler.models.quality", description=__doc__)
    parser.add_argument("weights", nargs="?", default=str(WEIGHTS))
    parser.add_argument("--picture", help="also write the 50/10/6-step picture here")
    parser.add_argument("--cfg", type=float, default=5.0, help="guidance scale of the measure (default 5, the issue's)")
    args = parser.parse_args(argv)
    network, meta = load_network(args.weights)
    result = measure(network, cfg=args.cfg)
    result.pop("samples")
    print(json.dumps({k: round(v, 4) for k, v in result.items()}))
    if args.picture:
        print(f"wrote {steps_picture(network, Path(args.picture), cfg=args.cfg)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
