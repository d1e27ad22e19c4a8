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


def check_writable_dir(path: str | Path, option: str) -> Path:
    """A folder we will be able to write into, checked without creating anything: it is a folder, or the
    nearest existing ancestor is a folder we can create files in (probed, then removed)."""
    import tempfile

    from .workflow import WorkflowError

    p = Path(path)
    if p.is_symlink() and not p.exists():
        import os

        raise WorkflowError(f"{option}: {p} is a symlink to {os.readlink(p)}, which does not exist; create that "
                            f"folder or choose another")
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


def provide_inputs(prompt, input_dir: Path, notice) -> None:
    """The examples' input pictures a workflow's LoadImage nodes ask for, drawn if missing (a fresh clone)."""
    from .demo import provide_example_inputs

    wanted = {n["inputs"].get("image") for n in prompt.nodes.values() if n.get("class_type") == "LoadImage"}
    if wanted - {None}:
        provide_example_inputs(input_dir, wanted, notice)


def run_workflow_file(path: str | Path, out: str | Path, input_dir: str | Path, preview: str | Path | None = None,
                      quiet: bool = False):
    """Execute a saved workflow with the demo model; returns (results, RunContext).

    Everything that can be checked before sampling is (the workflow, every widget, input images, the output
    folders); images are written only after the whole workflow succeeded, so a failure leaves nothing."""
    from ..host import Observer, observe
    from .core_nodes import RunContext, show_on_node, use_context
    from ..models.world import DEMO_LATENT_FORMAT
    from .progress import RunProgress
    from .workflow import WorkflowError, execute, load_workflow

    prompt = load_workflow(path)
    check_writable_dir(out, "--out")
    if preview:
        check_writable_dir(preview, "--preview")
    input_path = Path(input_dir)
    if input_path.exists() and not input_path.is_dir():
        raise WorkflowError(f"--input-dir: {input_path} is a file, not a folder")
    ctx = RunContext(output_dir=Path(out), input_dir=input_path, defer_writes=True)
    provide_inputs(prompt, input_path, ctx.notice)
    with use_context(ctx):
        execute(prompt, validate_only=True)
    progress = RunProgress(preview_dir=Path(preview) if preview else None, latent_format=DEMO_LATENT_FORMAT,
                           quiet=quiet)
    observer = Observer(on_step=progress.on_step, on_preview=progress.on_preview, show_images=show_on_node,
                        on_progress_text=progress.on_progress_text)
    with use_context(ctx), observe(observer):
        try:
            results = execute(prompt, on_node=progress.set_node, notice=ctx.notice, on_plan=progress.plan)
            progress.finish_node()
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


def remake_from_png(png: str | Path, out: str | Path, input_dir: str | Path, quiet: bool = True) -> dict:
    """Re-run the workflow embedded in a PNG (its ``prompt``, else ``workflow`` chunk) with the profile its
    ``stepwise`` recipe names, and compare the re-made image with the PNG's pixels."""
    import json

    import numpy
    from PIL import Image

    from ..host import Observer, observe
    from ..host.profile import current_profile, set_standalone_profile
    from ..workflows.recipe import RecipeError, validate_recipe
    from .core_nodes import RunContext, show_on_node, use_context
    from .workflow import WorkflowError, execute, parse_workflow

    path = Path(png)
    try:
        img = Image.open(path)
        img.load()
    except (OSError, ValueError) as exc:
        raise WorkflowError(f"--from-png: cannot read {path} ({exc})") from None
    text = getattr(img, "text", {}) or {}
    source = text.get("prompt") or text.get("workflow")
    if not source and text.get("parameters"):
        return remake_from_parameters(path, text["parameters"], out, input_dir)
    if not source:
        raise WorkflowError(f"--from-png: {path} holds no workflow (no 'prompt', 'workflow' or 'parameters' chunk)")
    try:
        data = json.loads(source)
        recipe = json.loads(text["stepwise"]) if "stepwise" in text else {}
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"--from-png: {path}: a metadata chunk is not JSON ({exc.msg})") from None
    except RecursionError:
        raise WorkflowError(f"--from-png: {path}: a metadata chunk is nested too deeply") from None
    try:
        recipe = validate_recipe(recipe)
    except RecipeError as exc:
        raise WorkflowError(f"--from-png: {path}: {exc}") from None
    prompt = parse_workflow(data)
    if "workflow" in text:
        try:
            prompt.workflow = json.loads(text["workflow"])
        except json.JSONDecodeError:
            pass
    profiles = {r.get("profile") for r in recipe.get("samplers", []) if r.get("profile")}
    before = current_profile()
    if len(profiles) == 1:
        wanted = profiles.pop()
        try:
            set_standalone_profile(wanted)
        except ValueError as exc:
            raise WorkflowError(f"--from-png: {path}: cannot re-make: samplers[0].profile "
                                f"{str(exc).split(': ', 1)[1]}") from None
    check_writable_dir(out, "--out")
    ctx = RunContext(output_dir=Path(out), input_dir=Path(input_dir), notice=(lambda m: None) if quiet else print)
    outputs: dict[str, dict] = {}
    try:
        with use_context(ctx), observe(Observer(show_images=show_on_node)):
            execute(prompt, on_output=lambda nid, ui: outputs.__setitem__(nid, ui), notice=ctx.notice)
    finally:
        set_standalone_profile(before)
    saved_by, index = recipe.get("saved_by"), recipe.get("image") or 0
    candidates = [saved_by] if saved_by in outputs else [nid for nid, ui in outputs.items() if ui.get("images")]
    if not candidates:
        raise WorkflowError("--from-png: the re-run saved no image to compare")
    shown = outputs[candidates[0]].get("images") or []
    if index >= len(shown):
        raise WorkflowError(f"--from-png: {path}: cannot re-make: image {index} is out of range (node "
                            f"{candidates[0]} saved {len(shown)} image(s))")
    entry = shown[index]
    folder = Path(out) if entry.get("type") != "temp" else (ctx.temp_dir or Path(out) / "temp")
    remade_path = folder / entry.get("subfolder", "") / entry["filename"]
    a = numpy.asarray(img.convert("RGB"), dtype=numpy.int16)
    b = numpy.asarray(Image.open(remade_path).convert("RGB"), dtype=numpy.int16)
    same = a.shape == b.shape and bool((a == b).all())
    diff = int(numpy.abs(a - b).max()) if a.shape == b.shape else None
    return {"match": same, "max_diff": diff, "remade": remade_path, "node": candidates[0], "image": index}


def remake_from_parameters(path: Path, parameters: str, out, input_dir) -> dict:
    """An AUTOMATIC1111/Forge/Civitai PNG (only a ``parameters`` chunk): its recipe imported as a workflow and run."""
    import json
    import tempfile

    from .a1111_import import import_parameters
    from .workflow import WorkflowError

    try:
        wf, report = import_parameters(parameters)
    except ValueError as exc:
        raise WorkflowError(f"--from-png: {path}: cannot re-make: {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        flow = Path(tmp) / "imported.json"
        flow.write_text(json.dumps(wf))
        _, ctx = run_workflow_file(flow, out, input_dir, quiet=True)
    return {"imported": True, "report": report, "written": list(ctx.written)}


def _cmd_run(args: argparse.Namespace) -> int:
    """Execute a saved ComfyUI workflow (UI or API format) with the embedded demo model."""
    if args.from_png:
        result = remake_from_png(args.from_png, args.out, args.input_dir, quiet=False)
        if result.get("imported"):
            for line in result["report"]:
                print(f"import: {line}")
            for path in result["written"]:
                print(f"wrote {path}")
            print(f"re-made from AUTOMATIC1111 settings (another model and text encoder: pixels are not compared)")
            return 0
        if result["match"]:
            print(f"pixels match: {args.from_png} re-made exactly as {result['remade']}")
            return 0
        detail = "the sizes differ" if result["max_diff"] is None else f"max |difference| {result['max_diff']} of 255"
        print(f"pixels differ: {args.from_png} vs {result['remade']} ({detail})")
        return 1
    if not args.workflow:
        raise ValueError("run: give a workflow .json, or --from-png IMAGE.png")
    _, ctx = run_workflow_file(args.workflow, args.out, args.input_dir, args.preview)
    for path in ctx.written:
        print(f"wrote {path}")
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    """Move saved workflows onto Stepwise nodes (core and efficiency-nodes samplers and scripts)."""
    import json

    from .migrate import MigrationFailed, migrate_file, migrate_folder

    if args.in_place:
        folder = Path(args.source)
        if not folder.is_dir():
            raise ValueError(f"--in-place: {folder} is not a folder")
        try:
            result = migrate_folder(folder, stages=args.stages)
        except MigrationFailed as exc:
            for line in exc.result.lines():
                print(line)
            if args.report:
                Path(args.report).write_text(json.dumps(exc.result.as_dict(), indent=1) + "\n", encoding="utf-8")
            raise
        for line in result.lines():
            print(line)
        summary = result.as_dict()
    else:
        if not args.target:
            raise ValueError("migrate: give IN.json OUT.json, or --in-place FOLDER")
        if Path(args.target).resolve() == Path(args.source).resolve():
            raise ValueError("migrate: OUT.json is IN.json; use --in-place to rewrite (with a backup)")
        report = migrate_file(Path(args.source), Path(args.target), stages=args.stages)
        for line in report.lines():
            print(line)
        print(f"wrote {args.target}")
        summary = report.as_dict()
    if args.report:
        Path(args.report).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    """Sweep a sampler node's settings over X/Y(/Z) and write every cell, the grid and sweep.json."""
    from .sweep import plan_sweep, run_sweep
    from .workflow import load_workflow

    check_writable_dir(args.out, "--out")
    prompt = load_workflow(args.workflow)
    provide_inputs(prompt, Path(args.input_dir), lambda m: print(f"stepwise: {m}", file=sys.stderr))
    axes = {slot: value for slot, value in (("x", args.x), ("y", args.y), ("z", args.z)) if value is not None}
    plan = plan_sweep(prompt, args.node, axes)
    print(f"sweep: node {plan.node_id} ({plan.class_type}), {len(plan.cells)} cells, images from node "
          f"{plan.image_node}", file=sys.stderr)
    index = run_sweep(plan, args.out, args.input_dir, ray=args.ray, workers=args.workers)
    for grid in index["grids"]:
        print(f"wrote {Path(args.out) / grid}")
    print(f"wrote {len(index['cells']) - index['failed']} cells in {Path(args.out) / 'cells'} and "
          f"{Path(args.out) / 'sweep.json'}")
    if index["failed"]:
        print(f"stepwise: {index['failed']} cell(s) failed (drawn as failed in the grid; see sweep.json)",
              file=sys.stderr)
        return 1
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    """Build a workflow from an AUTOMATIC1111/Forge/Civitai recipe (a PNG's parameters, or the text)."""
    from .a1111_import import write_import

    target = Path(args.target)
    if target.is_dir():
        raise ValueError(f"OUT: {target} is a folder; give the workflow's file name (e.g. {target / 'imported.json'})")
    for line in write_import(args.source, target):
        print(line)
    print(f"wrote {target}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Run the example workflows shipped in examples/ and write their images and a contact sheet."""
    from .demo import run_demo

    run_demo(Path(args.out))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    """Serve the ComfyUI editor with Stepwise's nodes on the demo model (to try and test the pack)."""
    from .serve import serve

    serve(args.port, args.listen, args.out, args.input_dir, args.frontend)
    return 0


def _apply_limits(args: argparse.Namespace) -> None:
    from ..sampling.resources import set_memory_budget
    from .limits import parse_size, set_max_image_pixels

    if getattr(args, "max_image_pixels", None) is not None:
        set_max_image_pixels(args.max_image_pixels)
    if getattr(args, "memory_budget", None) is not None:
        set_memory_budget(parse_size(args.memory_budget, "--memory-budget"))
    if getattr(args, "no_parameters", False):
        from .core_nodes import WRITE_PARAMETERS

        WRITE_PARAMETERS[0] = False


def command_settings() -> tuple:
    """The process-wide settings a command's flags set (--comfy-version, --max-image-pixels, --memory-budget,
    --no-parameters), as one value :func:`restore_command_settings` puts back."""
    from ..host import profile
    from ..sampling import resources
    from . import core_nodes, limits

    return profile._STANDALONE[0], limits._LIMIT[0], resources._BUDGET[0], core_nodes.WRITE_PARAMETERS[0]


def restore_command_settings(saved: tuple) -> None:
    from ..host import profile
    from ..sampling import resources
    from . import core_nodes, limits

    profile._STANDALONE[0], limits._LIMIT[0], resources._BUDGET[0], core_nodes.WRITE_PARAMETERS[0] = saved


def main(argv: list[str] | None = None) -> int:
    """A command's flags last for that command only: ``main`` called twice in one process (tests, a script) does not
    carry one call's flags into the next."""
    saved = command_settings()
    try:
        return _main(argv)
    finally:
        restore_command_settings(saved)


def _main(argv: list[str] | None) -> int:
    from ..host.profile import set_standalone_profile
    from ..sampling.profile import NEWEST
    from .workflow import WorkflowError

    parser = argparse.ArgumentParser(prog="stepwise", description="Stepwise sampler pack, standalone runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help=_cmd_demo.__doc__)
    demo.add_argument("--out", default="out", help="output folder (default: out)")
    demo.set_defaults(func=_cmd_demo)
    run = sub.add_parser("run", help=_cmd_run.__doc__)
    run.add_argument("workflow", nargs="?", help="a workflow .json file (saved from the editor, or API format)")
    run.add_argument("--from-png", metavar="IMAGE", help="re-run the workflow embedded in a PNG and report whether "
                     "the pixels match (exit 0 if they do, 1 if not)")
    run.add_argument("--out", default="output", help="where SaveImage writes (default: output)")
    run.add_argument("--input-dir", default="input", help="where LoadImage reads (default: input)")
    run.add_argument("--preview", default=None, help="also write each sampler step's latent preview here")
    run.set_defaults(func=_cmd_run)
    mig = sub.add_parser("migrate", help=_cmd_migrate.__doc__)
    mig.add_argument("source", help="a workflow .json (or, with --in-place, a folder of them)")
    mig.add_argument("target", nargs="?", help="where to write the migrated workflow")
    mig.add_argument("--in-place", action="store_true", help="rewrite every .json of the folder (backups: *.json.bak)")
    mig.add_argument("--report", help="also write the report as JSON here")
    mig.add_argument("--stages", action="store_true",
                     help="also fold split KSampler Advanced chains (leftover noise at step s -> start at s) into one "
                          "Stages (Stepwise) node")
    mig.set_defaults(func=_cmd_migrate)
    sw = sub.add_parser("sweep", help=_cmd_sweep.__doc__)
    sw.add_argument("workflow", help="a workflow .json file (editor or API format)")
    sw.add_argument("--node", required=True, help="the id of the sampler node to sweep")
    values_help = ("NAME=VALUES: a widget of the node (seed, steps, cfg, sampler_name, ...) or positive/negative "
                   "(search and replace: the first value is searched); values 'a,b', '10:30:5', '+1x4', '*'")
    sw.add_argument("--x", required=True, metavar="NAME=VALUES", help=values_help)
    sw.add_argument("--y", metavar="NAME=VALUES", help="a second axis (rows)")
    sw.add_argument("--z", metavar="NAME=VALUES", help="a third axis (one grid per value)")
    sw.add_argument("--out", default="sweep", help="output folder (default: sweep)")
    sw.add_argument("--input-dir", default="input", help="where LoadImage reads (default: input)")
    sw.add_argument("--ray", metavar="ADDRESS", default=None, help="fan the cells out on Ray: 'local' starts a "
                    "local cluster, 'auto' or ray://host:port joins one (needs the ray extra)")
    sw.add_argument("--workers", type=int, default=None, help="Ray workers (default: the cluster's CPUs, or GPUs)")
    sw.set_defaults(func=_cmd_sweep)
    srv = sub.add_parser("serve", help=_cmd_serve.__doc__)
    srv.add_argument("--port", type=int, default=8188)
    srv.add_argument("--listen", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.add_argument("--out", default="output", help="output folder (default: output)")
    srv.add_argument("--input-dir", default="input", help="input folder for LoadImage (default: input)")
    srv.add_argument("--frontend", default=None, help="a ComfyUI frontend folder (an unpacked "
                     "comfyui_frontend_package wheel) instead of the installed one; also $STEPWISE_FRONTEND")
    srv.set_defaults(func=_cmd_serve)
    imp = sub.add_parser("import", help=_cmd_import.__doc__)
    imp.add_argument("source", help="a PNG with a 'parameters' chunk, or a text file with the recipe")
    imp.add_argument("target", help="where to write the workflow .json")
    imp.set_defaults(func=_cmd_import)
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
    for sub_parser in (demo, run, srv, sw):
        sub_parser.add_argument("--comfy-version", default=None, metavar="VERSION",
                                help="reproduce this ComfyUI release's numbers (default: the newest profile, "
                                     f"{NEWEST.comfyui_version}; e.g. 0.3.64)")
    for sub_parser in (run, srv, sw):
        sub_parser.add_argument("--max-image-pixels", type=int, default=None, metavar="N",
                                help="refuse input images with more pixels, read from their header before decoding "
                                     "(default 64000000)")
        sub_parser.add_argument("--memory-budget", default=None, metavar="SIZE",
                                help="refuse work planned to need more memory (e.g. 8GB; default: half of this "
                                     "machine's memory)")
        sub_parser.add_argument("--no-parameters", action="store_true",
                                help="do not write AUTOMATIC1111's 'parameters' text into saved images")
    args = parser.parse_args(argv)
    try:
        if getattr(args, "comfy_version", None):
            profile = set_standalone_profile(args.comfy_version)
            from ..sampling.profile import PROFILES

            checked = "a checked profile" if profile.comfyui_version in PROFILES else \
                f"between the checked profiles {', '.join(PROFILES)}"
            print(f"stepwise: reproducing the numbers of ComfyUI {profile.comfyui_version} ({checked})",
                  file=sys.stderr)
        _apply_limits(args)
        return args.func(args)
    except RecursionError:
        print("stepwise: error: the input is nested too deeply", file=sys.stderr)
        return 2
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
