"""sampling/, schedulers/ and preview/ stay pure torch: no comfy import, statically or at runtime."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_no_comfy_imports_in_core_folders():
    offenders = []
    for folder in ("sampling", "schedulers", "preview"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                offenders += [f"{path.relative_to(REPO)}: {n}" for n in names
                              if n.split(".")[0] in ("comfy", "comfy_extras", "nodes", "latent_preview", "folder_paths")]
    assert offenders == []


def test_importing_the_pack_and_running_the_core_does_not_import_comfy():
    code = ("import sys, torch, stepwise_sampler, stepwise_sampler.golden; "
            "from stepwise_sampler.sampling import SAMPLERS; "
            "assert not [m for m in sys.modules if m == 'comfy' or m.startswith('comfy.')], 'comfy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


#: the layers, top first: a package may import its own modules and those of any later layer, never an earlier one
LAYERS = [("standalone", "examples"), ("nodes",), ("host",), ("workflows", "models"), ("sampling",),
          ("schedulers", "preview")]


def _layer(package: str) -> int | None:
    return next((k for k, names in enumerate(LAYERS) if package in names), None)


def test_layers_import_downward_only():
    """Relative imports at any depth (module level or inside functions) go to the same or a lower layer."""
    offenders = []
    for names in LAYERS:
        for folder in names:
            for path in (REPO / folder).rglob("*.py"):
                rel = path.relative_to(REPO)
                here = _layer(rel.parts[0])
                for node in ast.walk(ast.parse(path.read_text())):
                    if not isinstance(node, ast.ImportFrom) or node.level == 0:
                        continue
                    base = list(rel.parts[:-1])
                    base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                    target = (base + (node.module.split(".") if node.module else []))
                    if not target:
                        continue
                    there = _layer(target[0])
                    if there is not None and here is not None and there < here:
                        offenders.append(f"{rel}:{node.lineno} imports {'.'.join(target)}")
    assert offenders == []
