"""ComfyUI 0.33's conventions: node replacements for efficiency-nodes and subgraphs in saved workflows (run, migrate,
sweep). The subgraph files here follow the frontend's workflow schema (``definitions.subgraphs``, input/output nodes
-10/-20, promoted widgets as instance inputs with a ``widget``); ``tests/data/subgraph_*.json`` were saved by the real
editor (frontend 1.48.7)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from stepwise_sampler.standalone.workflow import WorkflowError, ui_to_prompt
from stepwise_sampler.workflows.replacements import NODE_REPLACEMENTS, node_replacements
from stepwise_sampler.standalone.uiformat import wrap_in_subgraph
from stepwise_sampler.workflows.subgraphs import flatten

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DATA = Path(__file__).resolve().parent / "data"
SHARED = REPO.parent / "shared" / "workflows"


def _strip_prefix(prompt_nodes: dict, prefix: str) -> dict:
    out = {}
    for nid, node in prompt_nodes.items():
        inputs = {k: ([v[0].removeprefix(prefix), v[1]] if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)
                      else v) for k, v in node["inputs"].items()}
        out[nid.removeprefix(prefix)] = {**node, "inputs": inputs}
    return out


def test_a_subgraph_runs_as_the_same_prompt_with_instance_ids():
    wf = json.loads((EXAMPLES / "txt2img.json").read_text())
    flat = ui_to_prompt(wf).nodes
    sub = wrap_in_subgraph(wf, {5, 6})
    nested = ui_to_prompt(sub).nodes
    assert set(nested) == {"1", "2", "3", "4", "7", "100:5", "100:6"}
    assert _strip_prefix(nested, "100:") == flat
    # the original (with its subgraph) is what the images carry
    assert "definitions" in ui_to_prompt(sub).workflow


def test_promoted_widget_value_reaches_the_inner_node_and_unset_keeps_the_inner_value():
    wf = json.loads((EXAMPLES / "txt2img.json").read_text())
    sub = wrap_in_subgraph(wf, {5, 6}, promote=((5, "seed"),))
    inner_seed = ui_to_prompt(wf).nodes["5"]["inputs"]["seed"]
    assert ui_to_prompt(sub).nodes["100:5"]["inputs"]["seed"] == inner_seed  # nothing stored on the instance
    instance = next(n for n in sub["nodes"] if n["id"] == 100)
    instance["widgets_values"] = [4242]
    assert ui_to_prompt(sub).nodes["100:5"]["inputs"]["seed"] == 4242


def test_nested_subgraphs_and_bypassed_instances():
    wf = json.loads((EXAMPLES / "txt2img.json").read_text())
    inner = wrap_in_subgraph(wf, {5}, instance_id=50)
    # wrap the instance 50 and the decoder into an outer subgraph 200
    outer = wrap_in_subgraph(inner, {50, 6}, instance_id=200)
    outer["definitions"]["subgraphs"] += inner["definitions"]["subgraphs"]
    nodes = ui_to_prompt(outer).nodes
    assert "200:50:5" in nodes and "200:6" in nodes
    assert nodes["200:6"]["inputs"]["samples"] == ["200:50:5", 0]
    assert _strip_prefix(_strip_prefix(nodes, "200:"), "50:") == ui_to_prompt(wf).nodes
    # a muted instance: its inner nodes do not run, and what needs them has a missing input
    muted = copy.deepcopy(inner)
    next(n for n in muted["nodes"] if n["id"] == 50)["mode"] = 2
    assert not any(k.startswith("50:") for k in ui_to_prompt(muted).nodes)


def test_a_subgraph_containing_itself_is_refused_by_name():
    wf = json.loads((EXAMPLES / "txt2img.json").read_text())
    sub = wrap_in_subgraph(wf, {5, 6})
    definition = sub["definitions"]["subgraphs"][0]
    definition["nodes"].append({"id": 99, "type": definition["id"], "mode": 0, "inputs": [], "outputs": []})
    with pytest.raises(WorkflowError, match="Sampler group.*instance of itself"):
        ui_to_prompt(sub)


def test_stepwise_run_and_sweep_inside_a_subgraph(tmp_path):
    from stepwise_sampler.standalone.cli import main

    wf = json.loads((EXAMPLES / "txt2img.json").read_text())
    sub = wrap_in_subgraph(wf, {5, 6}, promote=((5, "seed"),))
    for n in sub["definitions"]["subgraphs"][0]["nodes"]:
        if n["type"] == "StepwiseKSampler":
            n["widgets_values"][2] = 4  # steps: a quick run
    next(n for n in sub["nodes"] if n["type"] == "EmptyLatentImage")["widgets_values"][:2] = [64, 64]
    path = tmp_path / "sub.json"
    path.write_text(json.dumps(sub))
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 0
    assert list((tmp_path / "run").glob("*.png"))
    assert main(["sweep", str(path), "--node", "100:5", "--x", "seed=1,2", "--out", str(tmp_path / "sweep")]) == 0
    cells = sorted((tmp_path / "sweep").rglob("*.png"))
    assert len(cells) >= 2
    # each cell's embedded workflow holds its seed on the instance's promoted widget
    from PIL import Image

    seeds = set()
    for png in cells:
        info = Image.open(png).info
        if "workflow" in info:
            saved = json.loads(info["workflow"])
            instance = next((n for n in saved["nodes"] if n["id"] == 100), None)
            if instance is not None:
                seeds.add(instance["widgets_values"][0])
    assert {1, 2} <= seeds


def test_migrate_reaches_into_subgraphs():
    from stepwise_sampler.workflows.migrate import migrate_workflow

    wf = json.loads((SHARED / "efficiency" / "HiRes_Fix_LatentUpscale.workflow.json").read_text())
    sampler = next(n for n in wf["nodes"] if n["type"] == "KSampler (Efficient)")
    out, report = migrate_workflow(wrap_in_subgraph(wf, {sampler["id"]}, instance_id=900))
    inner = out["definitions"]["subgraphs"][0]["nodes"]
    assert [n["type"] for n in inner] == ["StepwiseKSamplerEfficient"]
    entry = next(c for c in report.changed if c["node"] == sampler["id"])
    assert entry["subgraph"] == "Sampler group"
    assert any("in subgraph 'Sampler group'" in line for line in report.lines())
    # --only with an execution id picks the inner node
    _, only = migrate_workflow(wrap_in_subgraph(wf, {sampler["id"]}, instance_id=900),
                               only={f"900:{sampler['id']}"})
    assert [c["node"] for c in only.changed] == [sampler["id"]]


# --- node replacements ------------------------------------------------------------------------------------------

def _by_name_frontend(old: dict, replacement: dict, new_cls) -> dict:
    """What the frontend's replaceWithMapping leaves in the new node's widgets (by name), from the old node's
    widgets_values and the replacement's old_widget_ids."""
    from stepwise_sampler.standalone.workflow import _widget_slots

    values = {}
    for m in replacement["input_mapping"]:
        if "set_value" in m:
            values[m["new_id"]] = m["set_value"]
        elif m["old_id"] in replacement["old_widget_ids"]:
            idx = replacement["old_widget_ids"].index(m["old_id"])
            if idx < len(old["widgets_values"]):
                values[m["new_id"]] = old["widgets_values"][idx]
    return {k: v for k, v in values.items() if k in _widget_slots(new_cls)}


@pytest.mark.parametrize("old_type", sorted(NODE_REPLACEMENTS))
def test_replacements_name_real_inputs_and_outputs(old_type):
    from stepwise_sampler.nodes import NODE_CLASS_MAPPINGS

    spec = NODE_REPLACEMENTS[old_type]
    cls = NODE_CLASS_MAPPINGS[spec["new_node_id"]]
    types = cls.INPUT_TYPES()
    names = set(types.get("required", {})) | set(types.get("optional", {}))
    for m in spec["input_mapping"]:
        assert m["new_id"] in names, (old_type, m)
        if "old_id" in m:
            assert m["old_id"] in spec["old_widget_ids"] or m["old_id"] in \
                ("model", "positive", "negative", "latent_image", "optional_vae", "script")
    for m in spec.get("output_mapping") or []:
        assert m["new_idx"] < len(cls.RETURN_TYPES)


def test_replacement_matches_migrate_for_a_current_efficiency_save():
    """A KSampler (Efficient) saved by a current efficiency-nodes (no leading sampler_state) gets the same widget values
    from the replacement as from `stepwise migrate`."""
    from stepwise_sampler.nodes import NODE_CLASS_MAPPINGS
    from stepwise_sampler.workflows.migrate import migrate_workflow

    wf = json.loads((SHARED / "efficiency" / "HiRes_Fix_LatentUpscale.workflow.json").read_text())
    node = next(n for n in wf["nodes"] if n["type"] == "KSampler (Efficient)")
    node["widgets_values"] = node["widgets_values"][1:]  # today's saves
    spec = {"old_node_id": node["type"], **NODE_REPLACEMENTS[node["type"]]}
    cls = NODE_CLASS_MAPPINGS[spec["new_node_id"]]
    replaced = _by_name_frontend(node, spec, cls)
    migrated, _ = migrate_workflow(wf)
    new = next(n for n in migrated["nodes"] if n["id"] == node["id"])
    from stepwise_sampler.standalone.workflow import _widget_slots

    by_name = dict(zip(_widget_slots(cls), new["widgets_values"]))
    for name, value in replaced.items():
        assert by_name[name] == value, name


def test_serve_lists_the_replacements(tmp_path):
    pytest.importorskip("aiohttp")
    import urllib.request

    from conftest import running_server

    with running_server(tmp_path / "out", tmp_path / "in") as base:
        got = json.loads(urllib.request.urlopen(base + "/node_replacements").read())
        features = json.loads(urllib.request.urlopen(base + "/features").read())
    assert features["node_replacements"] is True
    assert set(got) == set(NODE_REPLACEMENTS)
    assert got["KSampler (Efficient)"][0]["new_node_id"] == "StepwiseKSamplerEfficient"
    assert len(node_replacements()) == len(NODE_REPLACEMENTS)


def test_register_replacements_uses_comfyuis_registration():
    """Inside ComfyUI 0.33 the replacements go through its manager (a stand-in manager with its register signature);
    older ComfyUI (no manager) gets nothing and no error."""
    import sys
    import types

    from stepwise_sampler.host import register_replacements

    class NodeReplace:
        def __init__(self, new_node_id, old_node_id, old_widget_ids=None, input_mapping=None, output_mapping=None):
            self.new_node_id, self.old_node_id = new_node_id, old_node_id

    registered = []
    io = types.SimpleNamespace(NodeReplace=NodeReplace)
    latest = types.ModuleType("comfy_api.latest")
    latest.io = io
    saved = {k: sys.modules.get(k) for k in ("comfy_api", "comfy_api.latest")}
    sys.modules["comfy_api"] = types.ModuleType("comfy_api")
    sys.modules["comfy_api.latest"] = latest
    try:
        server = types.SimpleNamespace(node_replace_manager=types.SimpleNamespace(register=registered.append))
        assert register_replacements(server) == len(NODE_REPLACEMENTS)
        assert {r.old_node_id for r in registered} == set(NODE_REPLACEMENTS)
        assert register_replacements(types.SimpleNamespace()) == 0
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_every_node_and_input_says_what_it_is():
    from stepwise_sampler.nodes import NODE_CLASS_MAPPINGS

    for name, cls in NODE_CLASS_MAPPINGS.items():
        assert getattr(cls, "DESCRIPTION", ""), name
        for section in ("required", "optional"):
            for key, spec in cls.INPUT_TYPES().get(section, {}).items():
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                assert opts.get("tooltip"), f"{name}.{key}"


def test_advanced_flags_and_search_aliases_like_core_0_33():
    from stepwise_sampler.nodes import StepwiseKSampler, StepwiseKSamplerAdvanced

    types = StepwiseKSamplerAdvanced.INPUT_TYPES()
    for key in ("add_noise", "start_at_step", "end_at_step", "return_with_leftover_noise"):
        assert types["required"][key][1]["advanced"] is True
    assert "txt2img" in StepwiseKSampler.SEARCH_ALIASES
    # the widget order stays core's (the flags are presentation only)
    assert list(types["required"])[:4] == ["model", "add_noise", "noise_seed", "steps"]
