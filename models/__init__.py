"""The models the pack ships for its standalone runtime, demo, tests and benchmarks, and the world they come from:
the exact mixture (:mod:`.mixture`, ground truth for exactness) and the trained network ``stepwise-tiny``
(:mod:`.tiny`, what few-step sampling looks like on a real model)."""
