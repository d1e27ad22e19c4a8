from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(os.environ.get("STEPWISE_GOLDEN", REPO.parent / "shared" / "golden"))
GOLDEN_080 = Path(os.environ.get("STEPWISE_GOLDEN_080", GOLDEN.parent / "golden-v0.8.0"))
GOLDEN_033 = Path(os.environ.get("STEPWISE_GOLDEN_033", GOLDEN.parent / "golden-v0.33.0"))
GOLDEN_SETS = {"0.3.64": GOLDEN, "0.8.0": GOLDEN_080, "0.33.0": GOLDEN_033}

warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not (GOLDEN / "cases.json").exists():
        pytest.fail(f"golden set not found at {GOLDEN} (set STEPWISE_GOLDEN); the golden tests must run")
    return GOLDEN


@pytest.fixture(scope="session")
def golden_set(golden_dir):
    return load_golden("0.3.64")


_LOADED: dict = {}


def load_golden(name: str):
    """A golden set by name ("0.3.64", "0.8.0", "0.33.0"), loaded once per session; all must be present."""
    from stepwise_sampler.golden import GoldenSet

    root = GOLDEN_SETS[name]
    if not (root / "cases.json").exists():
        pytest.fail(f"golden set {name} not found at {root} (set STEPWISE_GOLDEN / STEPWISE_GOLDEN_080 / "
                    f"STEPWISE_GOLDEN_033)")
    if name not in _LOADED:
        _LOADED[name] = GoldenSet.load(root)
    return _LOADED[name]


@pytest.fixture(scope="session")
def toy(golden_set):
    return golden_set.model, golden_set.toy_tensors


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(out_dir, input_dir, listen="127.0.0.1"):
    """`stepwise serve`'s app on a free loopback port in a background thread; yields its base URL."""
    import asyncio
    import threading
    import time
    import urllib.request

    from aiohttp import web

    from stepwise_sampler.standalone.serve import make_app

    app = make_app(out_dir, input_dir, listen=listen)
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/api/system_stats", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield base
    finally:
        loop.call_soon_threadsafe(loop.stop)


@pytest.fixture(autouse=True)
def _command_settings_not_leaked():
    """A command's flags (``--comfy-version``, ``--no-parameters``, limits) last for that command only: after every
    test the process-wide settings are what they were before it (``cli.main`` restores them itself)."""
    from stepwise_sampler.standalone.cli import command_settings

    saved = command_settings()
    yield
    assert command_settings() == saved, "a test left a process-wide setting changed"
