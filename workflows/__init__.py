"""Workflow-level libraries, used by the nodes, the ComfyUI host and the standalone runtime alike: migration of
saved workflows onto Stepwise nodes, recipes (what a run decided, in PNG metadata), widget checking and mapping
(a node's INPUT_TYPES as the rule), and sweep axes and values."""
