"""Migration onto Stepwise nodes (`stepwise migrate`, the editor's route) and recipe metadata (`stepwise` PNG chunk,
`stepwise run --from-png`)."""
from __future__ import annotations

import copy
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy
import pytest
from PIL import Image, PngImagePlugin

from stepwise_sampler.workflows.migrate import MIGRATED_FROM, SAMPLER_TYPES, migrate_workflow
from stepwise_sampler.standalone.cli import main as cli_main, remake_from_png, run_workflow_file
from stepwise_sampler.standalone.demo import draw_picture
from stepwise_sampler.standalone.workflow import WorkflowError, load_workflow
from conftest import REPO, running_server

SHARED = REPO.parent / "shared" / "workflows"
TUTORIAL_FILES = sorted((SHARED / "tutorial").glob("*.json"))
EFFICIENCY_FILES = sorted((SHARED / "efficiency").glob("*.json"))
EFFICIENCY_TYPES = {"KSampler (Efficient)", "KSampler Adv. (Efficient)", "HighRes-Fix Script", "Noise Control Script"}


@pytest.fixture
def input_dir(tmp_path):
    d = tmp_path / "input"
    d.mkdir()
    draw_picture("star", "yellow", "sky", "center").save(d / "vivi (1).png")  # the tutorial's image is not shipped
    return d


def _types(data) -> list[str]:
    if "nodes" in data:
        return [n["type"] for n in data["nodes"]]
    return [n["class_type"] for n in data.values()]


def _pixels(paths) -> list[numpy.ndarray]:
    return [numpy.asarray(Image.open(p).convert("RGB")) for p in sorted(paths)]


def _migrate_to(src: Path, dst: Path) -> dict:
    migrated, report = migrate_workflow(json.loads(src.read_text()))
    dst.write_text(json.dumps(migrated))
    return report.as_dict()


# --- core workflows: same pixels --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", TUTORIAL_FILES, ids=[p.stem for p in TUTORIAL_FILES])
def test_tutorial_workflow_migrates_to_identical_pixels(path, tmp_path, input_dir):
    original = json.loads(path.read_text())
    migrated_path = tmp_path / "migrated.json"
    report = _migrate_to(path, migrated_path)
    migrated = json.loads(migrated_path.read_text())
    assert not set(_types(migrated)) & set(SAMPLER_TYPES), "no core sampler is left"
    n_samplers = sum(t in SAMPLER_TYPES for t in _types(original))
    assert len(report["changed"]) == n_samplers >= 1 and not report["not_migrated"]
    _, ctx_a = run_workflow_file(path, tmp_path / "a", input_dir, quiet=True)
    _, ctx_b = run_workflow_file(migrated_path, tmp_path / "b", input_dir, quiet=True)
    a, b = _pixels(ctx_a.written), _pixels(ctx_b.written)
    assert len(a) == len(b) >= 1
    for x, y in zip(a, b):
        assert x.shape == y.shape and numpy.array_equal(x, y)


@pytest.mark.parametrize("path", TUTORIAL_FILES[:2], ids=[p.stem for p in TUTORIAL_FILES[:2]])
def test_migration_keeps_links_widgets_titles_colours_positions_groups(path):
    original = json.loads(path.read_text())
    migrated, report = migrate_workflow(original)
    assert original == json.loads(path.read_text()), "the input is not modified"
    assert migrated["links"] == original["links"] and migrated.get("groups") == original.get("groups")
    before = {n["id"]: n for n in original["nodes"]}
    for node in migrated["nodes"]:
        old = before[node["id"]]
        for key in ("pos", "size", "color", "bgcolor", "title", "inputs", "outputs", "widgets_values", "mode"):
            assert node.get(key) == old.get(key), (node["id"], key)
        if old["type"] in SAMPLER_TYPES:
            assert node["type"] == "Stepwise" + old["type"]
            assert node["properties"][MIGRATED_FROM] == {"type": old["type"], "widgets_values": old["widgets_values"]}
            assert node["properties"]["Node name for S&R"] == node["type"]
        else:
            assert node == old
    # control_after_generate ("randomize", "fixed", ...) stays in its slot
    samplers = [n for n in migrated["nodes"] if n["type"].startswith("StepwiseKSampler")]
    assert any(v in ("randomize", "fixed", "increment", "decrement") for n in samplers for v in n["widgets_values"])


@pytest.mark.parametrize("path", TUTORIAL_FILES + EFFICIENCY_FILES, ids=[p.name for p in TUTORIAL_FILES + EFFICIENCY_FILES])
def test_migrating_twice_changes_nothing(path):
    once, first = migrate_workflow(json.loads(path.read_text()))
    twice, second = migrate_workflow(copy.deepcopy(once))
    assert twice == once
    assert first.changed and not second.changed


def test_api_format_core_samplers_migrate_and_match(tmp_path, input_dir):
    from stepwise_sampler.standalone.workflow import ui_to_prompt

    path = SHARED / "tutorial" / "SD1.5_KSampler_(Advanced)-divide.json"
    api = ui_to_prompt(json.loads(path.read_text())).nodes
    (tmp_path / "api.json").write_text(json.dumps(api))
    report = _migrate_to(tmp_path / "api.json", tmp_path / "api_migrated.json")
    migrated = json.loads((tmp_path / "api_migrated.json").read_text())
    assert {c["from"] for c in report["changed"]} == {"KSampler", "KSamplerAdvanced"}
    assert not set(_types(migrated)) & set(SAMPLER_TYPES)
    for nid, node in migrated.items():
        if nid in {c["node"] for c in report["changed"]}:
            assert node["inputs"] == api[nid]["inputs"] and node["_meta"][MIGRATED_FROM]["class_type"]
    _, a = run_workflow_file(tmp_path / "api.json", tmp_path / "a", input_dir, quiet=True)
    _, b = run_workflow_file(tmp_path / "api_migrated.json", tmp_path / "b", input_dir, quiet=True)
    assert all(numpy.array_equal(x, y) for x, y in zip(_pixels(a.written), _pixels(b.written)))


# --- efficiency-nodes workflows ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", EFFICIENCY_FILES, ids=[p.name for p in EFFICIENCY_FILES])
def test_efficiency_workflow_migrates_and_runs(path, tmp_path):
    migrated_path = tmp_path / "migrated.json"
    report = _migrate_to(path, migrated_path)
    migrated = json.loads(migrated_path.read_text())
    left = set(_types(migrated)) & (set(SAMPLER_TYPES) | EFFICIENCY_TYPES)
    assert not left, f"still there: {left}"
    assert report["changed"]
    results, ctx = run_workflow_file(migrated_path, tmp_path / "out", tmp_path, quiet=True)
    samplers = [v for v in results.values() if isinstance(v, tuple) and len(v) == 6]
    assert samplers and all(out[5].ndim == 4 for out in samplers)
    assert ctx.written and all(p.exists() for p in ctx.written)
    if "Tiled_Upscaler" in path.name:
        (line,) = report["not_migrated"]
        assert line["type"] == "Tiled Upscaler Script" and "bypassed" in line["reason"]
        node = next(n for n in migrated["nodes"] if n["type"] == "Tiled Upscaler Script")
        assert node["mode"] == 4
    else:
        assert not report["not_migrated"]


def test_highres_fix_script_becomes_ours_with_its_settings(tmp_path):
    path = SHARED / "efficiency" / "HiResFix_Script.workflow.json"
    original = json.loads(path.read_text())
    migrated, report = migrate_workflow(original)
    old = next(n for n in original["nodes"] if n["type"] == "HighRes-Fix Script")
    new = next(n for n in migrated["nodes"] if n["id"] == old["id"])
    assert new["type"] == "StepwiseHiResFixScript"
    v = old["widgets_values"]
    assert new["widgets_values"][0] == pytest.approx(v[4])  # upscale_by
    assert new["widgets_values"][2:4] == [v[8], pytest.approx(v[9])]  # hires_steps, denoise
    results, _ = run_workflow_file(_write(tmp_path / "m.json", migrated), tmp_path / "out", tmp_path, quiet=True)
    sampler = next(k for k, n in ((str(n["id"]), n) for n in migrated["nodes"])
                   if n["type"] == "StepwiseKSamplerEfficient")
    base = next(n for n in original["nodes"] if n["type"] == "Efficient Loader")["widgets_values"]
    width = base[-3]
    assert results[sampler][3]["samples"].shape[-1] == round(width * v[4] / 8)  # the second pass ran upscaled


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def _noise_script_graph() -> dict:
    """An efficiency graph: Noise Control Script -> HighRes-Fix Script -> KSampler (Efficient) (scripts chained)."""
    base = json.loads((SHARED / "efficiency" / "HiResFix_Script.workflow.json").read_text())
    hires = next(n for n in base["nodes"] if n["type"] == "HighRes-Fix Script")
    sampler = next(n for n in base["nodes"] if n["type"] == "KSampler (Efficient)")
    link_in = next(i["link"] for i in sampler["inputs"] if i["name"] == "script")
    new_id, new_link = max(n["id"] for n in base["nodes"]) + 1, max(l[0] for l in base["links"]) + 1
    noise = {"id": new_id, "type": "Noise Control Script", "pos": [10, 700], "size": [300, 200], "flags": {},
             "order": 0, "mode": 0, "title": "my noise", "color": "#223",
             "inputs": [{"name": "script", "type": "SCRIPT", "link": None}],
             "outputs": [{"name": "SCRIPT", "type": "SCRIPT", "links": [link_in]}],
             "properties": {"Node name for S&R": "Noise Control Script"},
             "widgets_values": ["gpu", False, True, 1234, "fixed", 0.25]}
    # hires -> noise.script ; noise -> sampler.script
    hires_out = hires["outputs"][0]
    for link in base["links"]:
        if link[0] == link_in:
            link[1], link[2] = new_id, 0
    hires_out["links"] = [new_link]
    noise["inputs"][0]["link"] = new_link
    base["links"].append([new_link, hires["id"], 0, new_id, 0, "SCRIPT"])
    base["nodes"].append(noise)
    return base


def test_noise_control_script_becomes_noise_node_on_the_noise_input(tmp_path):
    graph = _noise_script_graph()
    migrated, report = migrate_workflow(graph)
    noise = next(n for n in migrated["nodes"] if n.get("title") == "my noise")
    sampler = next(n for n in migrated["nodes"] if n["type"] == "StepwiseKSamplerEfficient")
    hires = next(n for n in migrated["nodes"] if n["type"] == "StepwiseHiResFixScript")
    assert noise["type"] == "StepwiseNoise" and noise["outputs"][0]["type"] == "NOISE" and noise["color"] == "#223"
    assert noise["widgets_values"] == [0, "fixed", "comfy", 1234, 0.25]  # add_seed_noise -> a 0.25 variation
    links = {l[0]: l for l in migrated["links"]}
    by_name = {i["name"]: i for i in sampler["inputs"]}
    noise_link = links[by_name["noise"]["link"]]
    assert noise_link[1] == noise["id"] and noise_link[5] == "NOISE"
    assert sampler["inputs"][noise_link[4]]["name"] == "noise"
    script_link = links[by_name["script"]["link"]]
    assert script_link[1] == hires["id"], "the script chained into the noise script now feeds the sampler"
    changed = {c["from"] for c in report.changed}
    assert changed == {"KSampler (Efficient)", "HighRes-Fix Script", "Noise Control Script"}
    notes = next(c["notes"] for c in report.changed if c["from"] == "Noise Control Script")
    assert any("rng_source" in n for n in notes)
    results, ctx = run_workflow_file(_write(tmp_path / "m.json", migrated), tmp_path / "out", tmp_path, quiet=True)
    assert ctx.written
    again, rep2 = migrate_workflow(migrated)
    assert again == migrated and not rep2.changed


def test_noise_control_script_in_api_format(tmp_path):
    from stepwise_sampler.standalone.workflow import ui_to_prompt

    base = json.loads((SHARED / "efficiency" / "HiRes_Fix_LatentUpscale.prompt.json").read_text())
    sampler_id = next(k for k, v in base.items() if v["class_type"] == "KSampler (Efficient)")
    base["900"] = {"class_type": "Noise Control Script", "inputs": {"rng_source": "cpu", "cfg_denoiser": False,
                                                                    "add_seed_noise": True, "seed": 7,
                                                                    "weight": 0.1}}
    base[sampler_id]["inputs"]["script"] = ["900", 0]
    migrated, report = migrate_workflow(base)
    assert migrated["900"]["class_type"] == "StepwiseNoise"
    assert migrated["900"]["inputs"] == {"noise_seed": 0, "batch_mode": "comfy", "variation_seed": 7,
                                         "variation_strength": 0.1}
    assert migrated[sampler_id]["inputs"]["noise"] == ["900", 0] and "script" not in migrated[sampler_id]["inputs"]
    results, ctx = run_workflow_file(_write(tmp_path / "m.json", migrated), tmp_path / "out", tmp_path, quiet=True)
    assert ctx.written


def test_only_the_chosen_nodes_migrate():
    path = SHARED / "tutorial" / "SD1.5_KSampler_(Advanced)-divide.json"
    data = json.loads(path.read_text())
    ids = [n["id"] for n in data["nodes"] if n["type"] in SAMPLER_TYPES]
    migrated, report = migrate_workflow(data, {ids[0]})
    assert [c["node"] for c in report.changed] == [ids[0]]
    kinds = {n["id"]: n["type"] for n in migrated["nodes"]}
    assert kinds[ids[0]].startswith("Stepwise") and not kinds[ids[1]].startswith("Stepwise")


@pytest.mark.parametrize("bad", [[], {"nodes": "x"}, {"1": {"inputs": {}}}, "text"])
def test_not_a_workflow_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="not a ComfyUI workflow"):
        migrate_workflow(bad)


# --- the CLI --------------------------------------------------------------------------------------------------------
def test_cli_migrate_file_and_report(tmp_path, capsys):
    src = SHARED / "tutorial" / "SD1.5_KSampler_(Advanced)-divide.json"
    assert cli_main(["migrate", str(src), str(tmp_path / "out.json"), "--report", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "KSamplerAdvanced -> StepwiseKSamplerAdvanced" in out and "wrote" in out
    report = json.loads((tmp_path / "r.json").read_text())
    n_samplers = sum(t in SAMPLER_TYPES for t in _types(json.loads(src.read_text())))
    assert len(report["changed"]) == n_samplers == 3 and report["not_migrated"] == []
    assert not set(_types(json.loads((tmp_path / "out.json").read_text()))) & set(SAMPLER_TYPES)


def test_cli_migrate_refuses_to_overwrite_its_input(tmp_path, capsys):
    src = tmp_path / "w.json"
    shutil.copy(SHARED / "tutorial" / "SD1.5_KSampler_(Advanced)-divide.json", src)
    before = src.read_bytes()
    assert cli_main(["migrate", str(src), str(src)]) == 2
    assert "--in-place" in capsys.readouterr().err and src.read_bytes() == before


def test_cli_migrate_bad_json_names_the_file(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{nope")
    assert cli_main(["migrate", str(tmp_path / "bad.json"), str(tmp_path / "o.json")]) == 2
    assert "bad.json: not JSON" in capsys.readouterr().err and not (tmp_path / "o.json").exists()


def test_cli_migrate_in_place_is_all_or_nothing_and_keeps_backups(tmp_path, capsys):
    folder = tmp_path / "flows"
    folder.mkdir()
    for p in TUTORIAL_FILES[:3] + EFFICIENCY_FILES[:1]:
        shutil.copy(p, folder / p.name)
    (folder / "broken.json").write_text("[")
    (folder / "deep.json").write_text("[" * 100000 + "]" * 100000)
    originals = {p.name: p.read_bytes() for p in folder.glob("*.json")}
    # one unreadable file: nothing is changed, every file is reported
    assert cli_main(["migrate", "--in-place", str(folder)]) == 2
    captured = capsys.readouterr()
    assert "broken.json: failed: not JSON" in captured.out and "deep.json: failed: nested too deeply" in captured.out
    assert "nothing was changed" in captured.err
    assert all(f"{name}: would be migrated" in captured.out for name in originals if name not in
               ("broken.json", "deep.json"))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == originals, "the folder is untouched"
    (folder / "broken.json").unlink()
    (folder / "deep.json").unlink()
    originals = {p.name: p.read_bytes() for p in folder.glob("*.json")}
    assert cli_main(["migrate", "--in-place", str(folder)]) == 0
    out = capsys.readouterr().out
    for name, data in originals.items():
        assert f"{name}: migrated (backup: {name}.bak)" in out
        assert (folder / (name + ".bak")).read_bytes() == data
        assert not set(_types(json.loads((folder / name).read_text()))) & set(SAMPLER_TYPES)
    # a second pass changes nothing and keeps the first backups
    snapshot = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert cli_main(["migrate", "--in-place", str(folder)]) == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == snapshot
    assert not list(folder.glob(".*.tmp")), "no temporary file is left behind"


def test_cli_migrate_in_place_never_overwrites_a_backup_and_skips_symlinks(tmp_path, capsys):
    folder = tmp_path / "flows"
    folder.mkdir()
    src = TUTORIAL_FILES[0]
    shutil.copy(src, folder / "a.json")
    (folder / "a.json.bak").write_text("an older backup")
    (folder / "a.json.bak.1").write_text("an even older one")
    elsewhere = tmp_path / "elsewhere.json"
    shutil.copy(TUTORIAL_FILES[1], elsewhere)
    (folder / "linked.json").symlink_to(elsewhere)
    before_linked = elsewhere.read_bytes()
    assert cli_main(["migrate", "--in-place", str(folder), "--report", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "a.json: migrated (backup: a.json.bak.2)" in out
    assert (folder / "a.json.bak").read_text() == "an older backup"
    assert (folder / "a.json.bak.1").read_text() == "an even older one"
    assert (folder / "a.json.bak.2").read_bytes() == src.read_bytes()
    assert "linked.json: skipped: a symlink" in out
    assert (folder / "linked.json").is_symlink() and elsewhere.read_bytes() == before_linked
    report = json.loads((tmp_path / "r.json").read_text())
    assert report[str(folder / "linked.json")]["status"] == "skipped"


def test_cli_migrate_into_a_folder_says_so(tmp_path, capsys):
    assert cli_main(["migrate", str(TUTORIAL_FILES[0]), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "Is a directory" not in err
    assert list(tmp_path.iterdir()) == []


def test_run_points_at_migrate_for_efficiency_scripts(tmp_path):
    with pytest.raises(WorkflowError, match="stepwise migrate"):
        load_workflow(SHARED / "efficiency" / "HiResFix_Script.workflow.json")


# --- recipes --------------------------------------------------------------------------------------------------------
def _recipe(png: Path) -> dict:
    return json.loads(Image.open(png).text["stepwise"])


def test_every_saved_png_carries_a_recipe_with_the_sigmas_that_ran(tmp_path, input_dir):
    from stepwise_sampler import __version__
    from stepwise_sampler.schedulers import calculate_sigmas
    from stepwise_sampler.models.mixture import DemoModel

    sampling = DemoModel().model_sampling

    path = SHARED / "tutorial" / "SD1.5_KSampler_(Advanced)-divide.json"
    _, ctx = run_workflow_file(path, tmp_path / "out", input_dir, quiet=True)
    data = json.loads(path.read_text())
    api = load_workflow(path).nodes
    assert len(ctx.written) == 2
    for png in ctx.written:
        doc = _recipe(png)
        assert doc["format"] == "stepwise-recipe" and doc["version"] == 1 and doc["stepwise"] == __version__
        assert doc["saved_by"] in api and doc["image"] == 0
        assert doc["samplers"], png
        for r in doc["samplers"]:
            node = api[r["node_id"]]["inputs"]
            assert r["seed"] == node.get("seed", node.get("noise_seed"))
            assert r["sampler"] == node["sampler_name"] and r["scheduler"] == node["scheduler"]
            assert r["profile"] in ("0.3.64", "0.8.0", "0.33.0") and r["split_mode"] == "comfy"
            assert r["models"] and r["models"][0]["ckpt_name"]
            full = calculate_sigmas(sampling, r["scheduler"], node["steps"]).tolist()
            start = r["start_at_step"] or 0
            end = min(r["end_at_step"] if r["end_at_step"] is not None else node["steps"], node["steps"])
            want = full[start:end + 1]
            if r["return_with_leftover_noise"] is False and end < node["steps"]:
                want[-1] = 0.0
            assert r["sigmas"] == pytest.approx(want, rel=1e-6), r["node_id"]
    counts = sorted(len(_recipe(p)["samplers"]) for p in ctx.written)
    assert counts == [1, 2], "the single run's image names one sampler, the split's two"
    assert data  # the tutorial file stays as it was


def test_recipe_records_the_seed_after_randomize(tmp_path, input_dir):
    path = SHARED / "tutorial" / "SD1.5_image2image_KSampler.json"
    data = json.loads(path.read_text())
    ks = next(n for n in data["nodes"] if n["type"] == "KSampler")
    ks["widgets_values"][0], ks["widgets_values"][1] = 424242, "randomize"
    _, ctx = run_workflow_file(_write(tmp_path / "w.json", data), tmp_path / "out", input_dir, quiet=True)
    (png,) = ctx.written
    (r,) = _recipe(png)["samplers"]
    assert r["seed"] == 424242 and r["denoise"] == pytest.approx(ks["widgets_values"][6])


def test_efficient_recipe_and_seamless_split_mode(tmp_path):
    from stepwise_sampler.examples.build import HERE

    results, ctx = run_workflow_file(HERE / "seamless_split.json", tmp_path / "out", tmp_path, quiet=True)
    docs = [_recipe(p) for p in ctx.written if "stepwise" in Image.open(p).text]
    assert docs and len(docs) == len(ctx.written)
    modes = {r["split_mode"] for d in docs for r in d["samplers"]}
    assert "seamless" in modes


def test_from_png_remakes_the_image_exactly(tmp_path, input_dir, capsys):
    path = SHARED / "tutorial" / "SD1.5_KSampler_(Advanced)-add_noise.json"
    _, ctx = run_workflow_file(path, tmp_path / "out", input_dir, quiet=True)
    png = sorted(ctx.written)[-1]
    result = remake_from_png(png, tmp_path / "again", input_dir)
    assert result["match"] and result["max_diff"] == 0 and result["remade"].exists()
    assert cli_main(["run", "--from-png", str(png), "--out", str(tmp_path / "cli"),
                     "--input-dir", str(input_dir)]) == 0
    assert "pixels match" in capsys.readouterr().out


def test_from_png_reports_a_changed_image(tmp_path, input_dir, capsys):
    path = SHARED / "tutorial" / "SD1.5_image2image_KSampler.json"
    _, ctx = run_workflow_file(path, tmp_path / "out", input_dir, quiet=True)
    (png,) = ctx.written
    img = Image.open(png)
    info = PngImagePlugin.PngInfo()
    for k, v in img.text.items():
        info.add_text(k, v)
    arr = numpy.asarray(img.convert("RGB")).copy()
    arr[0, 0] = 255 - arr[0, 0]
    tampered = tmp_path / "tampered.png"
    Image.fromarray(arr).save(tampered, pnginfo=info)
    assert cli_main(["run", "--from-png", str(tampered), "--out", str(tmp_path / "cli"),
                     "--input-dir", str(input_dir)]) == 1
    out = capsys.readouterr().out
    assert "pixels differ" in out and "max |difference|" in out


def test_from_png_without_a_workflow_is_a_clear_error(tmp_path, capsys):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert cli_main(["run", "--from-png", str(plain), "--out", str(tmp_path / "o")]) == 2
    assert "holds no workflow" in capsys.readouterr().err
    (tmp_path / "nope.png").write_bytes(b"not a png")
    assert cli_main(["run", "--from-png", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err


# --- the editor's route in `stepwise serve` --------------------------------------------------------------------------
def _post(url: str, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_serve_migrate_route(tmp_path):
    graph = json.loads((SHARED / "efficiency" / "LoRA_Stacking.workflow.json").read_text())
    with running_server(tmp_path / "out", tmp_path / "in") as base:
        status, body = _post(base + "/api/stepwise/migrate", {"workflow": graph})
        assert status == 200 and body["changed"] == 1
        assert body["workflow"] == migrate_workflow(graph)[0]
        assert any("KSampler Adv. (Efficient) -> StepwiseKSamplerAdvancedEfficient" in l for l in body["report"])
        assert _post(base + "/stepwise/migrate", {"workflow": "x"})[0] == 400
        assert _post(base + "/stepwise/migrate", {"workflow": graph, "nodes": "all"})[0] == 400
        assert _post(base + "/stepwise/migrate", b"{not json")[0] == 400
        status, _ = _post(base + "/stepwise/migrate", {"workflow": graph}, {"Origin": "http://evil.example"})
        assert status == 403


# --- efficiency-nodes' XY Plot -> XY Plot (Stepwise) ------------------------------------------------------------------
def _xy_graph(x_input: tuple[str, list], y_input: tuple[str, list] | None, flip: str = "False") -> dict:
    """HiResFix_Script.workflow.json with its HighRes-Fix Script replaced by an efficiency XY Plot fed by XY Inputs."""
    base = json.loads((SHARED / "efficiency" / "HiResFix_Script.workflow.json").read_text())
    hires = next(n for n in base["nodes"] if n["type"] == "HighRes-Fix Script")
    hires.update(type="XY Plot", widgets_values=[0, flip, "Horizontal", "True", "Plot"], title="my plot",
                 inputs=[{"name": "dependencies", "type": "DEPENDENCIES", "link": None},
                         {"name": "X", "type": "XY", "link": None}, {"name": "Y", "type": "XY", "link": None}])
    hires["properties"] = {"Node name for S&R": "XY Plot"}
    next_id, next_link = max(n["id"] for n in base["nodes"]) + 1, max(l[0] for l in base["links"]) + 1
    for k, (slot, spec) in enumerate((("X", x_input), ("Y", y_input))):
        if spec is None:
            continue
        kind, values = spec
        node = {"id": next_id + k, "type": kind, "pos": [0, 900 + 200 * k], "size": [300, 150], "flags": {},
                "order": 0, "mode": 0, "inputs": [], "outputs": [{"name": "X or Y", "type": "XY",
                                                                 "links": [next_link + k]}],
                "properties": {"Node name for S&R": kind}, "widgets_values": values}
        base["nodes"].append(node)
        base["links"].append([next_link + k, node["id"], 0, hires["id"], 1 + k, "XY"])
        hires["inputs"][1 + k]["link"] = next_link + k
    return base


SAMPLER_INPUT = ("XY Input: Sampler/Scheduler", ["sampler", 3, "euler", "None", "dpmpp_2m", "None", "uni_pc", "None"]
                 + ["None"] * 94)
STEPS_INPUT = ("XY Input: Steps", ["steps", 2, 4, 8, 0, 10, 10, 20, 10, 20])


def test_efficiency_xy_plot_migrates_and_runs(tmp_path):
    graph = _xy_graph(SAMPLER_INPUT, STEPS_INPUT)
    migrated, report = migrate_workflow(graph)
    plot = next(n for n in migrated["nodes"] if n.get("title") == "my plot")
    assert plot["type"] == "StepwiseXYPlot"
    assert plot["widgets_values"] == ["sampler_name", "euler, dpmpp_2m, uni_pc", "steps", "4, 8", "none", ""]
    assert plot["properties"][MIGRATED_FROM]["type"] == "XY Plot"
    kinds = _types(migrated)
    assert not {"XY Plot", "XY Input: Sampler/Scheduler", "XY Input: Steps"} & set(kinds)
    assert {l[5] for l in migrated["links"]} .isdisjoint({"XY", "DEPENDENCIES"})
    assert any("XY Input: Steps -> axis steps: 4, 8" in n for c in report.changed for n in c["notes"])
    results, ctx = run_workflow_file(_write(tmp_path / "m.json", migrated), tmp_path / "out", tmp_path, quiet=True)
    sampler = next(str(n["id"]) for n in migrated["nodes"] if n["type"] == "StepwiseKSamplerEfficient")
    assert results[sampler][3]["samples"].shape[0] == 6  # 3 samplers x 2 step counts
    again, second = migrate_workflow(migrated)
    assert again == migrated and not second.changed


@pytest.mark.parametrize("x, y, flip, want", [
    (("XY Input: Seeds++ Batch", [4]), None, "False", ["seed", "+1 x4", "none", ""]),
    (("XY Input: CFG Scale", [3, 5.0, 9.0]), ("XY Input: Denoise", [2, 0.5, 1.0]), "False",
     ["cfg", "5, 7, 9", "denoise", "0.5, 1"]),
    (("XY Input: CFG Scale", [2, 5.0, 9.0]), ("XY Input: Add/Return Noise", ["add_noise"]), "True",
     ["add_noise", "enable, disable", "cfg", "5, 9"]),
    (("XY Input: Steps", ["end_at_step", 3, 10, 20, 0, 10, 10, 20, 10, 20]), None, "False",
     ["end_at_step", "10, 15, 20", "none", ""]),
])
def test_xy_inputs_become_axes(x, y, flip, want):
    migrated, _ = migrate_workflow(_xy_graph(x, y, flip))
    plot = next(n for n in migrated["nodes"] if n.get("title") == "my plot")
    assert plot["widgets_values"][:4] == want


def test_xy_plot_with_an_axis_we_lack_is_reported_and_left():
    graph = _xy_graph(("XY Input: Checkpoint", ["Ckpt Names", 1, "a.safetensors"]), None)
    migrated, report = migrate_workflow(graph)
    plot = next(n for n in migrated["nodes"] if n.get("title") == "my plot")
    assert plot["type"] == "XY Plot"
    (line,) = [r for r in report.not_migrated if r["type"] == "XY Plot"]
    assert "'XY Input: Checkpoint' has no Stepwise axis" in line["reason"]


def test_xy_plot_in_api_format(tmp_path):
    from stepwise_sampler.standalone.workflow import ui_to_prompt

    api = json.loads((SHARED / "efficiency" / "HiRes_Fix_LatentUpscale.prompt.json").read_text())
    sampler_id = next(k for k, v in api.items() if v["class_type"] == "KSampler (Efficient)")
    api["900"] = {"class_type": "XY Input: CFG Scale", "inputs": {"batch_count": 2, "first_cfg": 4.0, "last_cfg": 8.0}}
    api["901"] = {"class_type": "XY Plot", "inputs": {"grid_spacing": 0, "XY_flip": "False", "X": ["900", 0],
                                                       "Y_label_orientation": "Horizontal", "cache_models": "True",
                                                       "ksampler_output_image": "Plot"}}
    api[sampler_id]["inputs"]["script"] = ["901", 0]
    migrated, report = migrate_workflow(api)
    assert "900" not in migrated and migrated["901"]["class_type"] == "StepwiseXYPlot"
    assert migrated["901"]["inputs"]["x_values"] == "4, 8"
    results, ctx = run_workflow_file(_write(tmp_path / "m.json", migrated), tmp_path / "out", tmp_path, quiet=True)
    assert results[sampler_id][3]["samples"].shape[0] == 2
