"""The standalone runtime: models, core-node stand-ins, workflow executor and CLI for using the
pack without ComfyUI. Never imported by the ComfyUI path."""
