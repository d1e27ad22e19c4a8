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


class _Progress:
    """A tqdm bar per sampler node, and per-step latent previews written to a folder on request."""

    def __init__(self, preview_dir: Path | None, latent_format, quiet: bool = False) -> None:
        self.preview_dir = preview_dir
        self.latent_format = latent_format
        self.quiet = quiet
        self.node = ("", "")
        self.bar = None
        self.own_previews: set[str] = set()

    def on_preview(self, step: int, total: int, image) -> None:
        """A node's own (throttled, method-specific) preview, e.g. from an Efficient node."""
        self.own_previews.add(self.node[1])
        if self.preview_dir is not None:
            from PIL import Image

            from .images import save_png

            save_png(Image.fromarray(image.numpy()), self.preview_dir / f"node{self.node[0]}_step{step + 1:03}.png")

    def set_node(self, nid: str, class_type: str) -> None:
        self.close()
        self.node = (nid, class_type)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_step(self, step: int, x0, x, total: int) -> None:
        from tqdm.auto import tqdm

        if self.bar is None and not self.quiet:
            self.bar = tqdm(total=total, desc=f"node {self.node[0]} {self.node[1]}", unit="step", leave=True)
        if self.bar is not None:
            self.bar.n = step + 1
            self.bar.refresh()
            if step + 1 >= total:
                self.close()
        if self.preview_dir is not None and self.node[1] not in self.own_previews:
            from .images import latent_to_rgb_png

            fmt = self.latent_format
            latent = x0[:1].detach().float().cpu() / fmt.scale_factor + fmt.shift_factor  # x0 is in model space
            latent_to_rgb_png(latent, fmt, self.preview_dir / f"node{self.node[0]}_step{step + 1:03}.png")


def check_writable_dir(path: str | Path, option: str) -> Path:
    """A folder we will be able to write into, checked without creating anything: it is a folder, or the
    nearest existing ancestor is a folder we can create files in (probed, then removed)."""
    import tempfile

    from .workflow import WorkflowError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise WorkflowError(f"{option}: {p} is a file, not a folder")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise WorkflowError(f"{option}: {p} cannot be created: {probe} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".stepwise-probe-", dir=str(probe))
        import os

        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise WorkflowError(f"{option}: cannot write into {probe} ({exc.strerror or exc})") from None
    return p


def run_workflow_file(path: str | Path, out: str | Path, input_dir: str | Path, preview: str | Path | None = None,
                      quiet: bool = False):
    """Execute a saved workflow with the demo model; returns (results, RunContext).

    Everything that can be checked before sampling is (the workflow, every widget, input images, the output
    folders); images are written only after the whole workflow succeeded, so a failure leaves nothing."""
    from ..nodes.bridge import Observer, observe
    from .core_nodes import RunContext, show_on_node, use_context
    from .demo_model import DEMO_LATENT_FORMAT
    from .workflow import WorkflowError, execute, load_workflow

    prompt = load_workflow(path)
    check_writable_dir(out, "--out")
    if preview:
        check_writable_dir(preview, "--preview")
    input_path = Path(input_dir)
    if input_path.exists() and not input_path.is_dir():
        raise WorkflowError(f"--input-dir: {input_path} is a file, not a folder")
    ctx = RunContext(output_dir=Path(out), input_dir=input_path, defer_writes=True)
    with use_context(ctx):
        execute(prompt, validate_only=True)
    progress = _Progress(Path(preview) if preview else None, DEMO_LATENT_FORMAT, quiet=quiet)
    observer = Observer(on_step=progress.on_step, on_preview=progress.on_preview, show_images=show_on_node)
    with use_context(ctx), observe(observer):
        try:
            results = execute(prompt, on_node=progress.set_node, notice=ctx.notice)
        except BaseException:
            ctx.discard()
            raise
        finally:
            progress.close()
        try:
            ctx.commit()
        except OSError as exc:
            raise WorkflowError(f"--out: writing the images failed ({exc.strerror or exc}); nothing was kept") from None
    return results, ctx


def _cmd_run(args: argparse.Namespace) -> int:
    """Execute a saved ComfyUI workflow (UI or API format) with the embedded demo model."""
    _, ctx = run_workflow_file(args.workflow, args.out, args.input_dir, args.preview)
    for path in ctx.written:
        print(f"wrote {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Run the example workflows shipped in examples/ and write their images and a contact sheet."""
    from .demo import run_demo

    run_demo(Path(args.out))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    """Serve the ComfyUI editor with Stepwise's nodes on the demo model (to try and test the pack)."""
    from .server import serve

    serve(args.port, args.listen, args.out, args.input_dir, args.frontend)
    return 0


def main(argv: list[str] | None = None) -> int:
    from ..nodes.profile import set_standalone_profile
    from ..sampling.profile import NEWEST
    from .workflow import WorkflowError

    parser = argparse.ArgumentParser(prog="stepwise", description="Stepwise sampler pack, standalone runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help=_cmd_demo.__doc__)
    demo.add_argument("--out", default="out", help="output folder (default: out)")
    demo.set_defaults(func=_cmd_demo)
    run = sub.add_parser("run", help=_cmd_run.__doc__)
    run.add_argument("workflow", help="a workflow .json file (saved from the editor, or API format)")
    run.add_argument("--out", default="output", help="where SaveImage writes (default: output)")
    run.add_argument("--input-dir", default="input", help="where LoadImage reads (default: input)")
    run.add_argument("--preview", default=None, help="also write each sampler step's latent preview here")
    run.set_defaults(func=_cmd_run)
    srv = sub.add_parser("serve", help=_cmd_serve.__doc__)
    srv.add_argument("--port", type=int, default=8188)
    srv.add_argument("--listen", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.add_argument("--out", default="output", help="output folder (default: output)")
    srv.add_argument("--input-dir", default="input", help="input folder for LoadImage (default: input)")
    srv.add_argument("--frontend", default=None, help="a ComfyUI frontend folder (an unpacked "
                     "comfyui_frontend_package wheel) instead of the installed one; also $STEPWISE_FRONTEND")
    srv.set_defaults(func=_cmd_serve)
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
    for sub_parser in (demo, run, srv):
        sub_parser.add_argument("--comfy-version", default=None, metavar="VERSION",
                                help="reproduce this ComfyUI release's numbers (default: the newest profile, "
                                     f"{NEWEST.comfyui_version}; e.g. 0.3.64)")
    args = parser.parse_args(argv)
    try:
        if getattr(args, "comfy_version", None):
            set_standalone_profile(args.comfy_version)
        return args.func(args)
    except (WorkflowError, ValueError, OSError, RuntimeError, MemoryError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, OSError) and not isinstance(exc, WorkflowError):
            message = f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
        print(f"stepwise: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stepwise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
