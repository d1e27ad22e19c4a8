"""The ``stepwise`` command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _cmd_toy(args: argparse.Namespace) -> int:
    """Sample the golden toy model with the Stepwise KSampler node; save the latent and a preview PNG."""
    import torch
    from safetensors.torch import save_file

    from ..nodes import StepwiseKSampler
    from .images import latent_to_rgb_png
    from .toy import load_toy_model

    model, conds = load_toy_model(Path(args.golden) / "toy_model.safetensors")
    latent = {"samples": torch.zeros(1, 4, args.height // 8, args.width // 8)}
    (out,) = StepwiseKSampler().sample(model, args.seed, args.steps, args.cfg, args.sampler, args.scheduler,
                                       [[conds["ctx_pos"], {}]], [[conds["ctx_neg"], {}]], latent, 1.0)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({"samples": out["samples"].contiguous()}, str(out_dir / "toy_latent.safetensors"))
    latent_to_rgb_png(out["samples"], model.latent_format, out_dir / "toy_latent2rgb.png")
    print(f"wrote {out_dir / 'toy_latent.safetensors'} and {out_dir / 'toy_latent2rgb.png'} "
          f"({args.sampler}/{args.scheduler}, {args.steps} steps, seed {args.seed})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stepwise", description="Stepwise sampler pack, standalone runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    toy = sub.add_parser("toy", help=_cmd_toy.__doc__)
    toy.add_argument("--golden", default="../shared/golden", help="directory holding toy_model.safetensors")
    toy.add_argument("--out", default="out")
    toy.add_argument("--sampler", default="dpmpp_2m")
    toy.add_argument("--scheduler", default="karras")
    toy.add_argument("--steps", type=int, default=20)
    toy.add_argument("--cfg", type=float, default=7.0)
    toy.add_argument("--seed", type=int, default=42)
    toy.add_argument("--width", type=int, default=512)
    toy.add_argument("--height", type=int, default=512)
    toy.set_defaults(func=_cmd_toy)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"stepwise: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
