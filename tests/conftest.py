from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(os.environ.get("STEPWISE_GOLDEN", REPO.parent / "shared" / "golden"))

warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not (GOLDEN / "cases.json").exists():
        pytest.fail(f"golden set not found at {GOLDEN} (set STEPWISE_GOLDEN); the golden tests must run")
    return GOLDEN


@pytest.fixture(scope="session")
def golden_set(golden_dir):
    from stepwise_sampler.golden import GoldenSet

    return GoldenSet.load(golden_dir)


@pytest.fixture(scope="session")
def toy(golden_set):
    return golden_set.model, golden_set.toy_tensors
