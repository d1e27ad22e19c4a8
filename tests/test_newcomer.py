"""What a newcomer meets: every example and every README command works as written from an empty folder, the pictures
carry their recipe, logs to a file are readable lines, the profile flag says what it does, and path mistakes get one
clear line."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
from PIL import Image

from conftest import REPO
from stepwise_sampler.examples import EXAMPLES_DIR
from stepwise_sampler.standalone.cli import main as cli_main

EXAMPLES = sorted(p.stem for p in EXAMPLES_DIR.glob("*.json"))


def _stepwise(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """`stepwise ARGS` as a user runs it, output to a pipe."""
    return subprocess.run([sys.executable, "-m", "stepwise_sampler.standalone.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_runs_as_written_from_an_empty_folder(tmp_path, name):
    """`stepwise run examples/NAME.json` in a fresh folder: no input/ yet (pictures an example loads are drawn on
    demand), images written, each with its prompt, workflow and recipe."""
    (tmp_path / "examples").symlink_to(EXAMPLES_DIR)
    proc = _stepwise(["run", f"examples/{name}.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = [Path(line.split("wrote ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("wrote ")]
    shown = list((tmp_path / "output" / "temp").rglob("*.png")) if (tmp_path / "output" / "temp").exists() else []
    assert written or shown, proc.stdout
    for path in [p if p.is_absolute() else tmp_path / p for p in written] + shown:
        text = Image.open(path).text
        assert {"prompt", "workflow", "stepwise"} <= set(text), (path, sorted(text))
        recipe = json.loads(text["stepwise"])
        assert recipe["format"] == "stepwise-recipe" and recipe["samplers"], path


@pytest.mark.slow
def test_every_example_ships_a_thumbnail_made_from_its_own_output(tmp_path):
    """NAME.jpg beside NAME.json (the templates dialog's convention), close to what the example makes now."""
    from stepwise_sampler.examples.build import THUMBNAIL, example_image

    for name in EXAMPLES:
        thumb = EXAMPLES_DIR / f"{name}.jpg"
        assert thumb.is_file(), f"{thumb.name} is missing (python -m stepwise_sampler.examples.build)"
        shipped = Image.open(thumb).convert("RGB")
        assert 128 <= max(shipped.size) <= THUMBNAIL  # 256-pixel examples (the trained network's) are not upscaled
        made = example_image(name, tmp_path / name)
        made.thumbnail((THUMBNAIL, THUMBNAIL))
        assert made.size == shipped.size, name
        diff = numpy.abs(numpy.asarray(made, dtype=numpy.int16) - numpy.asarray(shipped, dtype=numpy.int16))
        assert diff.mean() < 6, f"{name}.jpg is not the example's current output (mean |diff| {diff.mean():.1f})"


def _readme_commands() -> list[str]:
    """Every concrete `stepwise ...` command the README shows (code blocks and inline code), placeholders excluded."""
    text = (REPO / "README.md").read_text()
    found = re.findall(r"`(stepwise [^`]+)`", text) + re.findall(r"^\$? ?(stepwise [^\n]+)$", text, flags=re.M)
    commands = []
    for cmd in found:
        cmd = cmd.strip()
        if re.search(r"[A-Z]{2,}\.|\[|\||FOLDER|NAME=|WORKFLOW|IMAGE|DIR\b|ADDRESS|VERSION|HOST|ID\b|\.\.\.|…", cmd):
            continue  # a usage line with placeholders, not a command to run
        if cmd.startswith("stepwise serve"):
            continue  # a server: the browser tests run it
        if not re.search(r"\.json\b|\.png\b|\.txt\b|^stepwise demo|--help", cmd):
            continue  # the name of a command or flag in a sentence, not an invocation
        if cmd not in commands:
            commands.append(cmd)
    return commands


@pytest.mark.slow
def test_every_readme_command_works_as_written(tmp_path):
    commands = _readme_commands()
    assert any(c.startswith("stepwise run") for c in commands) and any(c.startswith("stepwise sweep") for c in commands)
    work = tmp_path / "clone"  # a fresh folder laid out like a clone: examples/ here, ../shared beside it
    work.mkdir()
    (work / "examples").symlink_to(EXAMPLES_DIR)
    if (REPO.parent / "shared").exists():
        (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    for cmd in commands:
        proc = _stepwise(shlex.split(cmd)[1:], work)
        assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-1500:]}"


def test_logs_to_a_pipe_are_plain_lines_with_overall_progress(tmp_path):
    (tmp_path / "examples").symlink_to(EXAMPLES_DIR)
    proc = _stepwise(["run", "examples/split.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "\r" not in proc.stderr
    starts = [line for line in proc.stderr.splitlines() if line.endswith(": start")]
    done = [line for line in proc.stderr.splitlines() if re.search(r": done in \d+\.\d+ s$", line)]
    assert starts and len(starts) == len(done)
    total = int(re.match(r"\[1/(\d+)\]", starts[0]).group(1))
    assert starts[-1].startswith(f"[{total}/{total}]")
    assert not re.search(r"\d{4,}\.\d+step/s", proc.stderr), "no absurd first-step rates"


def test_progress_shows_periodic_step_lines_for_long_nodes():
    import io

    import torch

    from stepwise_sampler.standalone.progress import RunProgress

    out = io.StringIO()
    p = RunProgress(stream=out, tty=False, step_interval=0.0)
    p.plan(["1", "2"])
    p.set_node("2", "KSampler")
    for i in range(4):
        p.on_step(i, torch.zeros(1), torch.zeros(1), 4)
    p.finish_node()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[2/2] node 2 KSampler: start"
    assert "[2/2] node 2 KSampler: step 1/4" in lines and "[2/2] node 2 KSampler: step 3/4" in lines
    assert lines[-1].startswith("[2/2] node 2 KSampler: done in ")


@pytest.mark.parametrize("version,ok", [("9.9.9", False), ("0.0.1", False), ("banana", False), ("0.3.64", True),
                                        ("0.6.0", True)])
def test_comfy_version_takes_known_profiles_only_and_says_which(tmp_path, capsys, version, ok):
    wf = REPO / "examples" / "txt2img.json"
    rc = cli_main(["run", str(wf), "--out", str(tmp_path / "o"), "--comfy-version", version])
    err = capsys.readouterr().err
    if ok:
        assert rc == 0 and f"reproducing the numbers of ComfyUI {version}" in err
    else:
        assert rc == 2 and "known profiles: 0.3.64, 0.8.0" in err and "Traceback" not in err


def test_out_as_a_dangling_symlink_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "out").symlink_to(tmp_path / "nowhere")
    rc = cli_main(["run", str(REPO / "examples" / "txt2img.json"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "is a symlink to" in err and "does not exist" in err and "File exists" not in err


def test_the_test_extra_does_not_pull_ray():
    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = meta["project"]["optional-dependencies"]
    assert not any(req.startswith("ray") for req in extras["test"])
    assert any(req.startswith("ray") for req in extras["ray"])
    assert '.[ray]' in (REPO / ".ci" / "run").read_text(), "CI installs the ray extra so the Ray tests run there"
