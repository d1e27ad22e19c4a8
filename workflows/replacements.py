"""ComfyUI's node replacements (0.33: ``io.NodeReplace``, ``GET /node_replacements``) for the efficiency-nodes
samplers and script a workflow still names when that pack is not installed.

A replacement is plain data: the frontend offers it on load ("replace missing nodes") and moves links and widget
values by name; ComfyUI's server applies it to API prompts that name a missing class. ``stepwise migrate`` remains the
complete translation (value conversions, the Noise Control and XY Plot scripts, pre-Oct-2023 saves with a leading
``sampler_state`` widget): a replacement can only rename inputs and set constants.
"""
from __future__ import annotations

__all__ = ["NODE_REPLACEMENTS", "node_replacements", "NOT_REPLACED"]

_LINKS = ["model", "positive", "negative", "latent_image", "optional_vae", "script"]
_EFFICIENT_WIDGETS = ["seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise",
                      "preview_method", "vae_decode"]
_ADVANCED_WIDGETS = ["add_noise", "noise_seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler",
                     "start_at_step", "end_at_step", "return_with_leftover_noise", "preview_method", "vae_decode"]
#: efficiency-nodes' HighRes-Fix Script widgets as its saves hold them (a control slot after the seed)
_HIRES_WIDGETS = ["upscale_type", "hires_ckpt_name", "latent_upscaler", "pixel_upscaler", "upscale_by",
                  "use_same_seed", "seed", "control_after_generate", "hires_steps", "denoise", "iterations",
                  "use_controlnet", "control_net_name", "strength", "preprocessor", "preprocessor_imgs"]
_SIX_OUTPUTS = [{"new_idx": i, "old_idx": i} for i in range(6)]


def _same(names: list[str]) -> list[dict]:
    return [{"new_id": n, "old_id": n} for n in names if n != "control_after_generate"]


#: old class -> (new class, old widget ids in widgets_values order, input mapping, output mapping)
NODE_REPLACEMENTS: dict[str, dict] = {
    "KSampler (Efficient)": {
        "new_node_id": "StepwiseKSamplerEfficient",
        "old_widget_ids": _EFFICIENT_WIDGETS,
        "input_mapping": _same(_LINKS + _EFFICIENT_WIDGETS),
        "output_mapping": _SIX_OUTPUTS,
    },
    "KSampler Adv. (Efficient)": {
        "new_node_id": "StepwiseKSamplerAdvancedEfficient",
        "old_widget_ids": _ADVANCED_WIDGETS,
        "input_mapping": _same(_LINKS + _ADVANCED_WIDGETS),
        "output_mapping": _SIX_OUTPUTS,
    },
    "HighRes-Fix Script": {
        "new_node_id": "StepwiseHiResFixScript",
        "old_widget_ids": _HIRES_WIDGETS,
        "input_mapping": [{"new_id": "upscale_by", "old_id": "upscale_by"},
                          {"new_id": "upscale_method", "old_id": "latent_upscaler"},
                          {"new_id": "hires_steps", "old_id": "hires_steps"},
                          {"new_id": "denoise", "old_id": "denoise"},
                          {"new_id": "hires_seed", "set_value": -1}],
        "output_mapping": [{"new_idx": 0, "old_idx": 0}],
    },
}

#: efficiency-nodes classes a replacement cannot express (``stepwise migrate`` translates them)
NOT_REPLACED = {
    "Noise Control Script": "its seed noise becomes a Noise (Stepwise) node wired into the sampler",
    "XY Plot": "its XY Input nodes become one XY Plot (Stepwise) widget set",
}


def node_replacements() -> list[dict]:
    """The replacements in ``io.NodeReplace.as_dict()`` form (what ``GET /node_replacements`` lists per old id)."""
    return [{"old_node_id": old, **spec} for old, spec in NODE_REPLACEMENTS.items()]
