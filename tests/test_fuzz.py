"""Property-based fuzzing (hypothesis), bounded in time:

- the sampler nodes over the whole widget space and odd latents: a result with no NaN from finite input,
  or a ValueError naming the input, never another exception type;
- the workflow loader over random and mutated workflows: a workflow or a WorkflowError, nothing else;
- `stepwise serve`'s /prompt over mutated workflows: a 4xx or an accepted prompt, never a 500, and after a
  soak of mutated prompts (each one executed) the server still runs prompts.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="install the test extra: pip install -e .[test]")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from stepwise_sampler.nodes import StepwiseKSampler, StepwiseKSamplerAdvanced  # noqa: E402
from stepwise_sampler.sampling import SAMPLER_NAMES  # noqa: E402
from stepwise_sampler.schedulers import SCHEDULER_NAMES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "workflows"
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

INPUT_NAMES = ("seed", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "denoise", "start_at_step",
               "end_at_step", "add_noise", "return_with_leftover_noise", "latent_image", "positive", "negative")

BAD = st.sampled_from([None, "x", "", [], {}, math.nan, math.inf, -math.inf, True, -1, 2 ** 70, 1.5])


def maybe_bad(good):
    return st.one_of(good, good, good, good, good, good, good, good, BAD)


@st.composite
def latents(draw):
    batch = draw(st.integers(1, 3))
    channels = draw(st.sampled_from([4, 4, 4, 1, 3]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kind = draw(st.sampled_from(["zeros", "random", "random", "nan", "inf", "huge"]))
    samples = torch.zeros(batch, channels, h, w)
    if kind != "zeros":
        gen = torch.Generator().manual_seed(draw(st.integers(0, 1000)))
        samples = torch.randn(batch, channels, h, w, generator=gen) * draw(st.sampled_from([0.1, 1.0, 30.0]))
    if kind == "nan":
        samples[0, 0, 0, 0] = math.nan
    elif kind == "inf":
        samples[-1, -1, -1, -1] = math.inf
    elif kind == "huge":
        samples = samples * 1e30
    latent = {"samples": samples}
    if draw(st.booleans()):
        mh, mw = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        lead = draw(st.sampled_from([(), (1,), (batch,), (1, 1), (batch, 1)]))
        latent["noise_mask"] = torch.rand(*lead, mh, mw, generator=torch.Generator().manual_seed(3))
    if draw(st.integers(0, 4)) == 0:
        latent["batch_index"] = draw(st.lists(st.integers(0, 5), min_size=batch, max_size=batch))
    return latent


def _finite(latent) -> bool:
    s = latent["samples"]
    return bool(torch.isfinite(s).all()) and s.abs().max().item() < 1e20


def _check_outcome(call, latent, allow_nan: bool):
    try:
        out = call()
    except ValueError as exc:
        message = str(exc)
        assert any(name in message for name in INPUT_NAMES), f"ValueError names no input: {message}"
        return
    except Exception as exc:  # noqa: BLE001 - the property under test
        raise AssertionError(f"{type(exc).__name__} instead of a ValueError: {exc}") from exc
    samples = (out["result"] if isinstance(out, dict) else out)[0]["samples"]
    if _finite(latent) and not allow_nan:
        assert not torch.isnan(samples).any(), "NaN from finite input"


def _kl_optimal_one_step(scheduler, steps, denoise=1.0):
    # ComfyUI's kl_optimal divides by (steps - 1): one step is an all-NaN schedule, as in the golden set
    if scheduler != "kl_optimal" or not isinstance(steps, int):
        return False
    if isinstance(denoise, (int, float)) and not isinstance(denoise, bool) and 0 < denoise <= 0.9999:
        return int(steps / denoise) == 1
    return steps == 1


@FUZZ
@given(sampler=maybe_bad(st.sampled_from(SAMPLER_NAMES)), scheduler=maybe_bad(st.sampled_from(SCHEDULER_NAMES)),
       steps=maybe_bad(st.integers(1, 8)), cfg=maybe_bad(st.floats(0, 100)), denoise=maybe_bad(st.floats(0, 1)),
       seed=maybe_bad(st.integers(0, 2 ** 64 - 1)), latent=latents())
def test_ksampler_widget_space(toy, sampler, scheduler, steps, cfg, denoise, seed, latent):
    model, conds = toy
    pos, neg = [[conds["ctx_pos"], {}]], [[conds["ctx_neg"], {}]]
    _check_outcome(lambda: StepwiseKSampler().sample(model, seed, steps, cfg, sampler, scheduler, pos, neg, latent,
                                                     denoise),
                   latent, _kl_optimal_one_step(scheduler, steps, denoise))


@FUZZ
@given(sampler=maybe_bad(st.sampled_from(SAMPLER_NAMES)), scheduler=maybe_bad(st.sampled_from(SCHEDULER_NAMES)),
       steps=maybe_bad(st.integers(1, 8)), cfg=maybe_bad(st.floats(0, 100)), seed=maybe_bad(st.integers(0, 2 ** 64 - 1)),
       add_noise=maybe_bad(st.sampled_from(["enable", "disable"])), start=maybe_bad(st.integers(0, 10)),
       end=maybe_bad(st.one_of(st.integers(0, 10), st.just(10000))),
       leftover=maybe_bad(st.sampled_from(["enable", "disable"])), latent=latents())
def test_ksampler_advanced_widget_space(toy, sampler, scheduler, steps, cfg, seed, add_noise, start, end, leftover,
                                        latent):
    model, conds = toy
    pos, neg = [[conds["ctx_pos"], {}]], [[conds["ctx_neg"], {}]]
    # leftover noise is not NaN but can be large; only NaN is a failure
    _check_outcome(lambda: StepwiseKSamplerAdvanced().sample(model, add_noise, seed, steps, cfg, sampler, scheduler,
                                                             pos, neg, latent, start, end, leftover),
                   latent, _kl_optimal_one_step(scheduler, steps))


# --- workflows ---------------------------------------------------------------------------------------------------------
def _seed_workflows() -> list:
    paths = sorted((REPO / "examples").glob("*.json")) + sorted(SHARED.glob("*/*.json"))
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


SEEDS = _seed_workflows()
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 40), st.floats(-2, 50), st.sampled_from([math.nan, math.inf]),
                      st.text(max_size=8), st.sampled_from(["euler", "karras", "enable", "MODEL", "LATENT"]))
JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                            max_size=3), max_leaves=6)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_workflows(draw):
    wf = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(wf) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = wf
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "delete", "duplicate"]))
        try:
            if action == "replace":
                parent[path[-1]] = draw(JSON)
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, list):
                parent.append(copy.deepcopy(parent[path[-1]]))
        except (KeyError, IndexError, TypeError):
            pass
    return wf


def _small(wf):
    """Keep a mutated workflow cheap to run: images at most 64 px, at most 6 steps."""
    def visit(v):
        if isinstance(v, dict):
            for k, x in list(v.items()):
                if k in ("width", "height", "empty_latent_width", "empty_latent_height") and isinstance(x, int):
                    v[k] = max(-8, min(x, 64))
                elif k in ("steps", "hires_steps", "batch_size") and isinstance(x, int):
                    v[k] = min(x, 6 if k != "batch_size" else 2)
                else:
                    visit(x)
        elif isinstance(v, list):
            for x in v:
                visit(x)
    visit(wf)
    nodes = wf.get("nodes") if isinstance(wf, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, dict) and isinstance(node.get("widgets_values"), list):
            node["widgets_values"] = [min(x, 64) if isinstance(x, int) and not isinstance(x, bool) and x > 64 else x
                                      for x in node["widgets_values"]]
    return wf


@FUZZ
@given(wf=st.one_of(mutated_workflows(), JSON))
def test_workflow_loader_never_crashes(wf, tmp_path_factory):
    from stepwise_sampler.standalone.core_nodes import RunContext, use_context
    from stepwise_sampler.standalone.workflow import WorkflowError, execute, parse_workflow

    try:
        prompt = parse_workflow(wf)
        with use_context(RunContext(output_dir=Path("/nonexistent-out"), input_dir=Path("/nonexistent-in"))):
            execute(prompt, validate_only=True)
    except WorkflowError:
        pass


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(wf=mutated_workflows())
def test_mutated_workflows_run_or_fail_cleanly(wf, tmp_path_factory):
    from stepwise_sampler.host import Observer, observe
    from stepwise_sampler.standalone.core_nodes import RunContext, use_context
    from stepwise_sampler.standalone.workflow import WorkflowError, execute, parse_workflow

    out = tmp_path_factory.mktemp("fuzzrun")
    try:
        prompt = parse_workflow(_small(wf))
        with use_context(RunContext(output_dir=out, input_dir=out, notice=lambda m: None, defer_writes=True)), \
                observe(Observer()):
            execute(prompt, notice=lambda m: None)
    except WorkflowError:
        pass


def _api_prompts():
    from stepwise_sampler.standalone.workflow import WorkflowError, parse_workflow

    prompts = []
    for wf in SEEDS:
        try:
            prompts.append(parse_workflow(wf).nodes)
        except WorkflowError:
            pass
    return prompts


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    from conftest import running_server

    work = tmp_path_factory.mktemp("fuzzserve")
    with running_server(work / "out", work / "in") as base:
        yield base


def test_serve_soak_with_mutated_prompts(fuzz_server):
    """Mutated workflows (UI and API format) posted to /prompt: never a 500; every accepted one is executed;
    afterwards the server still runs a valid prompt to completion."""
    import random
    import urllib.error
    import urllib.request

    from test_hardening import post_json, request, txt2img, wait_history

    base = fuzz_server
    rng = random.Random(1234)
    accepted, statuses = [], {}
    deadline = time.time() + 120
    for i in range(150):
        if time.time() > deadline:
            break
        wf = _small(_mutate_ui(rng) if i % 3 else _mutate_api(rng))
        body = {"prompt": wf, "client_id": "fuzz"} if rng.random() < 0.8 else wf
        status, _, text = post_json(base, "/api/prompt", body)
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, text[:300]
        if status == 200:
            accepted.append(json.loads(text)["prompt_id"])
        if rng.random() < 0.05:
            request(base, "POST", "/api/interrupt", b"")
    for pid in accepted:
        wait_history(base, pid, timeout=120)
    status, _, text = post_json(base, "/api/prompt", {"prompt": txt2img("after_soak")})
    assert status == 200
    assert wait_history(base, json.loads(text)["prompt_id"])["status"]["completed"] is True
    assert statuses.get(400, 0) > 0 and len(accepted) >= 10, statuses  # both kinds were exercised


ODD_VALUES = [None, -1, 0, 3, 1e9, "x", "", [1, 0], ["999", 0], [7], {"a": 1}, True, 0.5, math.nan, "euler", [], {}]


def _mutate_ui(rng):
    wf = copy.deepcopy(rng.choice(SEEDS))
    for _ in range(rng.randint(1, 4)):
        paths = [p for p in _paths(wf) if p]
        path = rng.choice(paths)
        parent = wf
        for key in path[:-1]:
            parent = parent[key]
        if rng.random() < 0.3:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
    return wf


def _mutate_api(rng):
    prompts = _api_prompts()
    prompt = copy.deepcopy(rng.choice(prompts))
    nid = rng.choice(list(prompt))
    inputs = prompt[nid]["inputs"]
    if rng.random() < 0.5:  # a plausible edit that mostly validates: the executor must run odd but valid prompts
        for node in prompt.values():
            for key, value in node["inputs"].items():
                if key in ("sampler_name",):
                    node["inputs"][key] = rng.choice(SAMPLER_NAMES)
                elif key == "scheduler":
                    node["inputs"][key] = rng.choice(SCHEDULER_NAMES)
                elif key in ("seed", "noise_seed"):
                    node["inputs"][key] = rng.choice([0, 2 ** 64 - 1, rng.randrange(2 ** 64)])
                elif key in ("cfg", "denoise") and isinstance(value, (int, float)):
                    node["inputs"][key] = rng.choice([0.0, 1.0, 0.3, 12.0]) if key == "cfg" else rng.random()
                elif key in ("start_at_step", "end_at_step") and isinstance(value, int):
                    node["inputs"][key] = rng.randint(0, 25)
        return prompt
    if inputs and rng.random() < 0.7:
        key = rng.choice(list(inputs))
        inputs[key] = rng.choice([None, -1, 0, 3, 1e9, "x", [nid, 0], ["999", 0], [nid, 7], {"a": 1}, True, 0.5])
    else:
        prompt[nid]["class_type"] = rng.choice(["KSampler", "SaveImage", "Nope", "LoadImage", "VAEDecode"])
    return prompt


# --- hardening II classes: file names, depth, recipes, sweep values, folders -----------------------------------------
NAME_PARTS = st.sampled_from(["a", "x.png", "..", ".", "", "/", "\\", "\x00", "%2e%2e", "é", "a" * 300, "b" * 60,
                              "loop", "afile", "sub", "~", "CON", " ", "\n", "*", "?"])
ROUTES = ["/api/view", "/view", "/api/upload/image", "/api/prompt", "/api/history", "/api/queue", "/api/jobs",
          "/api/settings", "/api/settings/x", "/api/object_info/x", "/api/stepwise/sigmas", "/api/stepwise/migrate",
          "/api/jobs/x", "/api/history/x", "/api/interrupt", "/api/userdata/x.json"]


@st.composite
def names(draw):
    return "".join(draw(st.lists(NAME_PARTS, min_size=0, max_size=draw(st.integers(0, 40)))))


@st.composite
def json_values(draw):
    depth = draw(st.integers(0, 200))
    leaf = draw(st.sampled_from(["1", '"x"', "null", "[]", "{}", "true", "1e400", '"' + "y" * 50 + '"']))
    kind = draw(st.sampled_from(["list", "obj"]))
    return ("[" * depth + leaf + "]" * depth) if kind == "list" else ('{"a":' * depth + leaf + "}" * depth)


@pytest.fixture(scope="module")
def fs_server(tmp_path_factory):
    import os

    from conftest import running_server

    work = tmp_path_factory.mktemp("fsfuzz")
    (work / "in").mkdir()
    (work / "in" / "afile").write_text("file")
    os.symlink(work / "in" / "loop", work / "in" / "loop")
    with running_server(work / "out", work / "in") as base:
        yield base


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(ROUTES), method=st.sampled_from(["GET", "POST"]), filename=names(), subfolder=names(),
       kind=st.sampled_from(["output", "input", "temp", "x", ""]), body=json_values())
def test_no_route_answers_500_to_odd_names_and_bodies(fs_server, route, method, filename, subfolder, kind, body):
    import urllib.parse

    from test_hardening import multipart, request

    query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": kind, "steps": filename,
                                    "scheduler": subfolder})
    if route.endswith("upload/image") and method == "POST":
        from test_hardening import _png_bytes

        data, ctype = multipart({"image": (filename or "x.png", _png_bytes(), "image/png"), "subfolder": subfolder,
                                 "type": kind})
    else:
        data, ctype = (body.encode() if method == "POST" else None), "application/json"
    status, _, text = request(fs_server, method, f"{route}?{query}", data, {"Content-Type": ctype})
    assert status < 500, (route, method, status, text[:300])
    assert b"Traceback" not in text


@FUZZ
@given(doc=st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 2 ** 70), st.floats(allow_nan=True),
                                  st.text(max_size=12)),
                        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                st.dictionaries(st.sampled_from(
                                                    ["format", "version", "samplers", "image", "saved_by", "profile",
                                                     "seed", "steps", "sigmas", "sampler", "node_id"]), inner,
                                                    max_size=6)), max_leaves=20))
def test_recipe_validation_accepts_or_names_a_field(doc):
    from stepwise_sampler.workflows.recipe import RecipeError, validate_recipe

    try:
        validate_recipe(doc)
    except RecipeError as exc:
        assert str(exc).startswith("cannot re-make: ")


@FUZZ
@given(text=st.lists(st.sampled_from(list("0123456789.:+-xe*, \n") + ["inf", "nan", "1e400", "E", "9" * 30]),
                    max_size=40).map("".join),
       value_type=st.sampled_from(["int", "float"]), base=st.one_of(st.none(), st.integers(-10, 10), st.floats(-5, 5)))
def test_sweep_values_parse_or_name_the_axis(text, value_type, base):
    from stepwise_sampler.workflows.sweep import MAX_VALUES, parse_values

    try:
        values = parse_values("axis", text, base=base, value_type=value_type)
    except ValueError as exc:
        assert str(exc).startswith("axis: "), exc
        return
    assert 1 <= len(values) <= MAX_VALUES
    for v in values:
        assert isinstance(v, int if value_type == "int" else float) and not isinstance(v, bool)
        assert value_type == "int" or math.isfinite(v)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(files=st.lists(st.sampled_from(["tutorial", "tutorial", "bad", "deep", "notwf", "symlink", "bak"]),
                      min_size=1, max_size=5))
def test_migrate_in_place_is_all_or_nothing(tmp_path_factory, files):
    import os
    import shutil

    from stepwise_sampler.standalone.migrate import MigrationFailed, migrate_folder

    folder = tmp_path_factory.mktemp("mig")
    tutorials = sorted((SHARED / "tutorial").glob("*.json"))
    for k, kind in enumerate(files):
        path = folder / f"f{k}.json"
        if kind == "tutorial":
            shutil.copy(tutorials[k % len(tutorials)], path)
        elif kind == "bad":
            path.write_text("{nope")
        elif kind == "deep":
            path.write_text("[" * 50000 + "]" * 50000)
        elif kind == "notwf":
            path.write_text('{"just": "data"}')
        elif kind == "symlink":
            os.symlink(tutorials[0], path)
        elif kind == "bak":
            shutil.copy(tutorials[0], path)
            (folder / f"f{k}.json.bak").write_text("older")
    before = {p.name: (p.read_bytes() if not p.is_symlink() else os.readlink(p)) for p in folder.iterdir()}
    try:
        result = migrate_folder(folder)
    except MigrationFailed as exc:
        after = {p.name: (p.read_bytes() if not p.is_symlink() else os.readlink(p)) for p in folder.iterdir()}
        assert after == before, "a failed folder is left exactly as it was"
        assert any(s == "failed" for s in exc.result.status.values())
        return
    assert "bad" not in files and "deep" not in files
    for path, state in result.status.items():
        if state == "changed":
            assert result.backups[path].read_bytes() == before[path.name]
        else:
            assert (path.read_bytes() if not path.is_symlink() else os.readlink(path)) == before[path.name]
    for name, data in before.items():
        if name.endswith(".bak"):
            assert (folder / name).read_bytes() == data, "an existing backup is never overwritten"
    assert not list(folder.glob(".*.tmp"))
