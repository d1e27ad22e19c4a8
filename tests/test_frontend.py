"""The JS side: unit tests of js/lib (node's test runner) and the real-browser tests (tests/browser).

They need Node.js, and for the browser tests Debian's chromium. Without them they are skipped,
unless STEPWISE_REQUIRE_BROWSER=1 (set by .ci/run, which installs both), in which case they fail.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REQUIRED = os.environ.get("STEPWISE_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _need(ok: bool, what: str) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{what} is required (STEPWISE_REQUIRE_BROWSER=1) but missing")
        pytest.skip(f"{what} is not installed")


def test_js_unit_tests():
    _need(shutil.which("node") is not None, "node")
    proc = subprocess.run(["node", "--test", "js/tests/"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "# fail 0" in proc.stdout


NEWEST_FRONTEND = "1.58.1"  # the newest comfyui-frontend-package on the registry when this was written
COMFY_033_FRONTEND = "1.48.7"  # the frontend ComfyUI 0.33.0 pins
FRONTENDS = ["installed", COMFY_033_FRONTEND, NEWEST_FRONTEND]


def frontend_dir(version: str) -> Path | None:
    """An unpacked comfyui_frontend_package wheel of ``version`` (downloaded once into tests/browser/.frontends)."""
    if version == "installed":
        return None
    target = REPO / "tests" / "browser" / ".frontends" / version
    if (target / "comfyui_frontend_package" / "static" / "index.html").exists():
        return target
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                               f"comfyui-frontend-package=={version}"], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            _need(False, f"comfyui-frontend-package {version} (pip download failed: {proc.stderr[-300:]})")
        with zipfile.ZipFile(wheels[0]) as z:
            z.extractall(target)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("renderer", ["classic", "vue"])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_real_browser(frontend, renderer):
    _need(shutil.which("npm") is not None, "npm")
    _need(Path(CHROMIUM).exists(), "chromium")
    try:
        import aiohttp  # noqa: F401
        import comfyui_frontend_package  # noqa: F401
    except ImportError:
        _need(False, "the serve extra (pip install -e .[serve])")
    browser = REPO / "tests" / "browser"
    if not (browser / "node_modules" / "playwright-core").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=browser, check=True, capture_output=True)
    env = {**os.environ, "PYTHON": sys.executable, "CHROMIUM": CHROMIUM, "RENDERER": renderer,
           "FRONTEND_LABEL": frontend}
    env.pop("STEPWISE_FRONTEND", None)
    folder = frontend_dir(frontend)
    if folder is not None:
        env["STEPWISE_FRONTEND"] = str(folder)
    proc = subprocess.run(["npm", "test"], cwd=browser, capture_output=True, text=True, env=env, timeout=900)
    summary = "\n".join(line for line in proc.stdout.splitlines() if line.startswith(("ok", "not ok", "# ")) and
                        "127.0.0.1" not in line)
    assert proc.returncode == 0, summary + proc.stdout[-4000:] + proc.stderr[-2000:]
    assert (browser / "artifacts" / f"{frontend}-{renderer}" / "06-after-run.png").exists()
