"""The pack's example workflows (editor format); ``build.py`` regenerates them."""
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
