"""``stepwise migrate --stages``: a chain of KSampler Advanced nodes that split one run (the first adds noise and
returns its leftover noise at step s, the next starts at s without adding noise, same seed/steps/sampler/scheduler) is
folded into one Stages (Stepwise) node with ``switch_unit: step``. Editor format only.

The Stages node always hands over seamlessly, so the folded run equals the chain in ``split_mode: seamless``; a chain
in ComfyUI's split (``comfy``) restarts multistep samplers' history and ancestral noise at each node, so its numbers
change with the fold (a note says so for each fold).
"""
from __future__ import annotations

import copy
from typing import Any

__all__ = ["fold_stages", "ADVANCED_TYPES", "STAGES_WIDGETS"]

ADVANCED_TYPES = ("KSamplerAdvanced", "StepwiseKSamplerAdvanced")
_ADV_WIDGETS = ["add_noise", "noise_seed", "noise_seed:control", "steps", "cfg", "sampler_name", "scheduler",
                "start_at_step", "end_at_step", "return_with_leftover_noise", "split_mode"]
_MAX = 4
#: samplers without history or noise: ComfyUI's split and a seamless one give the same numbers
SPLIT_INVARIANT = ("euler", "heun", "heunpp2", "dpm_2", "exp_heun_2_x0")
#: Stages (Stepwise)'s widgets_values slots (a test holds this to the node's INPUT_TYPES) and their defaults
STAGES_WIDGETS = ["seed", "seed:control", "steps", "cfg", "sampler_name", "scheduler", "denoise", "switch_unit",
                  "until_1", "cfg_2", "until_2", "cfg_3", "until_3", "cfg_4"]
STAGES_DEFAULTS = {"seed:control": "fixed", "cfg_2": -1.0, "until_2": -1.0, "cfg_3": -1.0, "until_3": -1.0,
                   "cfg_4": -1.0}


_PRIMITIVES = ("PrimitiveNode", "PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveBoolean")
_CONTEXT: dict = {}


def _widgets(node: dict | None) -> dict | None:
    """An Advanced node's widgets by name, with values a primitive node feeds in place of the node's own."""
    values = node.get("widgets_values") if node else None
    if not isinstance(values, list) or len(values) < 10:
        return None
    named = dict(zip(_ADV_WIDGETS, values))
    named.setdefault("split_mode", "comfy")
    nodes, links = _CONTEXT.get("nodes", {}), _CONTEXT.get("links", {})
    for slot in node.get("inputs") or []:
        if isinstance(slot, dict) and slot.get("name") in named and slot.get("link") in links:
            src = nodes.get(links[slot["link"]][1], {})
            if src.get("type") in _PRIMITIVES and src.get("widgets_values"):
                named[slot["name"]] = src["widgets_values"][0]
    return named


def _links(wf: dict) -> dict:
    out = {}
    for link in wf.get("links") or []:
        if isinstance(link, list) and len(link) >= 5:
            out[link[0]] = link
    return out


def _input(node: dict, name: str) -> dict | None:
    return next((i for i in node.get("inputs") or [] if isinstance(i, dict) and i.get("name") == name), None)


def _origin(links: dict, node: dict, name: str) -> tuple | None:
    slot = _input(node, name)
    link = links.get(slot.get("link")) if slot else None
    return (link[1], link[2]) if link else None


_SOCKETS = ("model", "positive", "negative", "latent_image", "noise", "sigmas", "sampler")


def _plain_widgets(node: dict, nodes: dict, links: dict) -> bool:
    """Every widget input that is linked comes from a primitive (whose value the node's widgets_values mirror)."""
    for slot in node.get("inputs") or []:
        if not isinstance(slot, dict) or slot.get("name") in _SOCKETS or slot.get("link") is None:
            continue
        link = links.get(slot["link"])
        if link is None or nodes.get(link[1], {}).get("type") not in _PRIMITIVES:
            return False
    return True


def _chain_from(start: dict, nodes: dict, links: dict) -> list[dict]:
    """The longest foldable chain beginning at ``start`` (at least two nodes, else [])."""
    chain = [start]
    while len(chain) < _MAX:
        last = chain[-1]
        w = _widgets(last)
        out = (last.get("outputs") or [{}])[0]
        consumers = list(out.get("links") or [])
        if w is None or w["return_with_leftover_noise"] != "enable" or len(consumers) != 1:
            break
        link = links.get(consumers[0])
        nxt = nodes.get(link[3]) if link else None
        nw = _widgets(nxt) if nxt is not None and nxt.get("type") in ADVANCED_TYPES and nxt.get("mode", 0) == 0 \
            else None
        if nw is None or _input(nxt, "latent_image") is None or _input(nxt, "latent_image").get("link") != consumers[0]:
            break
        first = _widgets(chain[0])
        if any(nw[k] != first[k] for k in ("steps", "sampler_name", "scheduler")) or not _plain_widgets(nxt, nodes, links) or \
                nw["add_noise"] != "disable" or nw["start_at_step"] != w["end_at_step"] or \
                any(_input(nxt, k) is not None and _input(nxt, k).get("link") is not None
                    for k in ("noise", "sigmas", "sampler")):
            break
        chain.append(nxt)
    if len(chain) < 2:
        return []
    first, final = _widgets(chain[0]), _widgets(chain[-1])
    if first["add_noise"] != "enable" or first["start_at_step"] != 0 or not _plain_widgets(chain[0], nodes, links) or \
            any(_input(chain[0], k) is not None and _input(chain[0], k).get("link") is not None
                for k in ("noise", "sigmas", "sampler")):
        return []
    if final["return_with_leftover_noise"] == "enable" and final["end_at_step"] < final["steps"]:
        chain = chain[:-1]  # the last one stops early with leftover noise: not a whole run; fold the rest
        while len(chain) >= 2 and _widgets(chain[-1])["return_with_leftover_noise"] == "enable":
            return []
    return chain if len(chain) >= 2 else []


def fold_stages(wf: dict) -> tuple[dict, list[dict]]:
    """(folded copy, one report entry per fold). A workflow without a foldable chain comes back unchanged."""
    if not isinstance(wf, dict) or not isinstance(wf.get("nodes"), list):
        raise ValueError("--stages: folds workflows in the editor's format (nodes/links); this is the API format")
    wf = copy.deepcopy(wf)
    nodes = {n.get("id"): n for n in wf["nodes"] if isinstance(n, dict)}
    links = _links(wf)
    _CONTEXT.update(nodes=nodes, links=links)
    folded: set = set()
    report = []
    for node in list(wf["nodes"]):
        if not isinstance(node, dict) or node.get("type") not in ADVANCED_TYPES or node.get("id") in folded or \
                node.get("mode", 0) != 0:
            continue
        feeder = _origin(links, node, "latent_image")
        if feeder is not None and nodes.get(feeder[0], {}).get("type") in ADVANCED_TYPES and \
                _chain_from(nodes[feeder[0]], nodes, links):
            continue  # not the head of its chain
        chain = _chain_from(node, nodes, links)
        if not chain:
            continue
        report.append(_fold(wf, nodes, links, chain))
        folded |= {n.get("id") for n in chain}
    return wf, report


def _fold(wf: dict, nodes: dict, links: dict, chain: list[dict]) -> dict:
    head, widgets = chain[0], [_widgets(n) for n in chain]
    source = " + ".join(f"{n.get('type')} {n.get('id')}" for n in chain)
    first = widgets[0]
    values: dict[str, Any] = {
        "seed": first["noise_seed"], "seed:control": first["noise_seed:control"], "steps": first["steps"],
        "cfg": first["cfg"], "sampler_name": first["sampler_name"], "scheduler": first["scheduler"], "denoise": 1.0,
        "switch_unit": "step", "until_1": float(first["end_at_step"]),
    }
    inputs = [{"name": n, "type": t, "link": (_input(head, n) or {}).get("link")}
              for n, t in (("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                           ("latent_image", "LATENT"))]
    dead_links, notes = set(), []
    previous = {k: _origin(links, head, k) for k in ("model", "positive", "negative")}
    for k, (node, w) in enumerate(zip(chain[1:], widgets[1:]), start=2):
        values[f"cfg_{k}"] = float(w["cfg"])
        if k < len(chain):
            values[f"until_{k}"] = float(w["end_at_step"])
        for name, typ in (("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING")):
            slot = _input(node, name)
            link_id = slot.get("link") if slot else None
            origin = _origin(links, node, name)
            if origin is not None and origin != previous[name]:
                inputs.append({"name": f"{name}_{k}", "type": typ, "link": link_id})
                previous[name] = origin
            elif link_id is not None:
                dead_links.add(link_id)
        latent_link = (_input(node, "latent_image") or {}).get("link")
        dead_links.add(latent_link)
    for node in chain:  # primitives feeding widgets: their values are in the Stages widgets now
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict) and slot.get("name") not in _SOCKETS and slot.get("link") is not None:
                dead_links.add(slot["link"])
    stochastic_or_multistep = first["sampler_name"] not in SPLIT_INVARIANT
    if len({w["noise_seed"] for w in widgets}) > 1 and stochastic_or_multistep:
        notes.append("the later nodes' noise_seed is not used: a seamless run keeps the first node's noise")
    if any(w["split_mode"] != "seamless" for w in widgets) and stochastic_or_multistep:
        notes.append("the chain split in ComfyUI's way (split_mode comfy); Stages continues one run seamlessly, so "
                     "multistep and ancestral samplers give other (single-run) numbers")
    # wire: new inputs' links now end at the head (slot = position), the last node's outputs start at the head
    for slot, entry in enumerate(inputs):
        link = links.get(entry["link"])
        if link is not None:
            link[3], link[4] = head["id"], slot
    tail = chain[-1]
    tail_links = list(((tail.get("outputs") or [{}])[0]).get("links") or [])
    for lid in tail_links:
        if lid in links:
            links[lid][1], links[lid][2] = head["id"], 0
    head["type"] = "StepwiseStages"
    head["inputs"] = inputs
    head["outputs"] = [{"name": "LATENT", "type": "LATENT", "links": tail_links}]
    head["widgets_values"] = [values.get(name, STAGES_DEFAULTS.get(name)) for name in STAGES_WIDGETS]
    props = head.setdefault("properties", {})
    props["Node name for S&R"] = "StepwiseStages"
    props["stepwise_folded_from"] = [{"id": n.get("id"), "type": n.get("type"), "widgets_values": n.get("widgets_values")}
                                     for n in chain]
    removed = {n.get("id") for n in chain[1:]}
    wf["nodes"] = [n for n in wf["nodes"] if not (isinstance(n, dict) and n.get("id") in removed)]
    wf["links"] = [l for l in wf["links"] if not (isinstance(l, list) and l and l[0] in dead_links)]
    for n in wf["nodes"]:  # outputs that fed dropped links
        for out in n.get("outputs") or []:
            if out.get("links"):
                out["links"] = [x for x in out["links"] if x not in dead_links]
    return {"node": head["id"], "title": head.get("title"), "from": source, "to": "StepwiseStages", "notes": notes}
