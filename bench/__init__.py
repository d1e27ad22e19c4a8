"""Stepwise benchmarks: `python -m bench` (see README). Peers are measured in the same run."""
