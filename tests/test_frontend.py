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


def test_real_browser():
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
    env = {**os.environ, "PYTHON": sys.executable, "CHROMIUM": CHROMIUM}
    proc = subprocess.run(["npm", "test"], cwd=browser, capture_output=True, text=True, env=env, timeout=900)
    summary = "\n".join(line for line in proc.stdout.splitlines() if line.startswith(("ok", "not ok", "# ")) and
                        "127.0.0.1" not in line)
    assert proc.returncode == 0, summary + proc.stdout[-4000:] + proc.stderr[-2000:]
    assert (browser / "artifacts" / "04-after-run.png").exists()
