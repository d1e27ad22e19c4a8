"""Hardening II: the classes of bad input an outside probe found answer 4xx / exit 2 with a one-line reason naming
the input; no traceback, no 500, no memory blow-up, no half-done folder (see also test_migrate.py for folders)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="install the serve extra: pip install -e .[serve]")

from conftest import REPO, running_server  # noqa: E402
from test_hardening import _png_bytes, multipart, post_json, request, txt2img, wait_history  # noqa: E402

from stepwise_sampler.standalone.cli import main as cli_main  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("serve2")
    with running_server(work / "out", work / "in") as base:
        yield base, work


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text[:500]


# --- 1. file-system errors are 4xx, checked before the disk is touched ---------------------------------------------
@pytest.mark.parametrize("query", [
    {"filename": "a" * 300 + ".png"},
    {"filename": "x.png", "subfolder": "s" * 5000},
    {"filename": "x.png", "subfolder": "/".join(["d"] * 1500)},
    {"filename": "x.png", "subfolder": "a/" + "b" * 300},
    {"filename": "../x.png"}, {"filename": "x.png", "subfolder": "../.."}, {"filename": "/etc/passwd"},
    {"filename": "x\x00.png"}, {"filename": ""}, {"filename": "x.png", "type": "elsewhere"},
])
def test_view_of_bad_names_is_a_4xx(served, query):
    base, _ = served
    status, _, body = request(base, "GET", "/api/view?" + urllib.parse.urlencode(query))
    assert 400 <= status < 500, (query, status)
    _no_traceback(body.decode(errors="replace"))


def test_view_of_a_symlink_loop_is_404(served):
    base, work = served
    loop = work / "in" / "loop"
    loop.parent.mkdir(exist_ok=True)
    if not loop.is_symlink():
        os.symlink(loop, loop)
    status, _, body = request(base, "GET", "/api/view?type=input&filename=loop")
    assert status == 404
    status, _, body = request(base, "GET", "/api/view?type=input&subfolder=loop&filename=x.png")
    assert status == 404


@pytest.mark.parametrize("subfolder,reason", [
    ("afile", "is a file"), ("/".join(["d"] * 100), "folders deep"), ("/".join(["d"] * 1500), "longer than"), ("x" * 300, "longer than 255 bytes"),
    ("../escape", "outside"),
])
def test_upload_into_a_bad_subfolder_is_a_4xx(served, subfolder, reason):
    base, work = served
    (work / "in").mkdir(exist_ok=True)
    (work / "in" / "afile").write_text("I am a file")
    data, ctype = multipart({"image": ("ok.png", _png_bytes(), "image/png"), "subfolder": subfolder})
    status, _, body = request(base, "POST", "/api/upload/image", data, {"Content-Type": ctype})
    assert 400 <= status < 500 and reason in body.decode(), (status, body[:200])


def test_a_nul_in_a_multipart_header_is_a_400(served):
    base, _ = served
    boundary = "b0und"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\x00.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + _png_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, _, text = request(base, "POST", "/api/upload/image", body,
                              {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert 400 <= status < 500, (status, text[:200])


# --- 2. what a request stores can always be read back -------------------------------------------------------------
def test_deeply_nested_extra_data_is_refused_and_history_keeps_working(served):
    base, _ = served
    deep = '{"n": ' * 975 + "{}" + "}" * 975
    raw = json.dumps({"prompt": txt2img("deep"), "extra_data": {"extra_pnginfo": {"workflow": "DEEP"}}})
    raw = raw.replace('"DEEP"', deep)
    status, _, body = post_json(base, "/api/prompt", raw.encode())
    assert status == 400 and "nested" in body.decode()
    status, _, body = post_json(base, "/api/prompt", {"prompt": txt2img("shallow")})
    wait_history(base, json.loads(body)["prompt_id"])
    for path in ("/api/history", f"/api/history/{json.loads(body)['prompt_id']}", "/api/jobs", "/api/queue"):
        status, _, text = request(base, "GET", path)
        assert status == 200 and json.loads(text) is not None


def test_the_queue_is_bounded(tmp_path, monkeypatch):
    from stepwise_sampler.standalone.serve import state as srv

    monkeypatch.setattr(srv, "MAX_QUEUE", 2)
    with running_server(tmp_path / "o", tmp_path / "i") as base:
        codes = []
        for k in range(8):
            status, _, body = post_json(base, "/api/prompt", {"prompt": txt2img(f"q{k}", steps=30)})
            codes.append(status)
        assert 429 in codes and all(c in (200, 429) for c in codes)
        status, _, body = post_json(base, "/api/prompt", {"prompt": txt2img("q", steps=30)})
        if status == 429:
            assert "queue" in json.loads(body)["error"]


# --- 3. a small upload cannot cost gigabytes -------------------------------------------------------------------------
def _bilevel_png(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (width, height), 1).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_an_upload_over_the_pixel_budget_is_refused_from_its_header(served):
    base, _ = served
    data = _bilevel_png(12000, 12000)
    assert len(data) < 64 * 1024
    form, ctype = multipart({"image": ("huge.png", data, "image/png")})
    status, _, body = request(base, "POST", "/api/upload/image", form, {"Content-Type": ctype})
    assert status == 400 and "megapixels" in body.decode()


def test_load_image_within_the_pixel_limit_but_over_the_memory_budget_is_refused_before_decoding(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.png").write_bytes(_bilevel_png(6000, 6000))
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "big.png"}},
          "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x"}},
          "2": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["4", 2]}},
          "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["4", 2]}},
          "5": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "big"}}}
    (tmp_path / "wf.json").write_text(json.dumps(wf))
    # VmHWM is this process's own peak; ru_maxrss would include the forking parent's (Linux keeps it over exec)
    code = ("import sys\nfrom stepwise_sampler.standalone.cli import main\n"
            "rc = main(sys.argv[1:])\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print('PEAK', hwm, file=sys.stderr)\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, "run", str(tmp_path / "wf.json"), "--out",
                           str(tmp_path / "out"), "--input-dir", str(tmp_path / "in"), "--memory-budget", "300MB"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "node 1 (LoadImage) input image" in proc.stderr and "--memory-budget" in proc.stderr
    _no_traceback(proc.stderr)
    peak_kb = int(proc.stderr.split("PEAK")[-1].split()[0])
    assert peak_kb < 700 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB: the picture was decoded"
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_the_memory_check_uses_the_budget_not_what_is_free(monkeypatch):
    from stepwise_sampler.sampling import resources

    monkeypatch.setattr(resources, "_BUDGET", [None])
    total = resources.total_memory()
    assert resources.memory_budget() == int(total * resources.DEFAULT_BUDGET_FRACTION)
    resources.check_fits(total // 4, "small")
    with pytest.raises(ValueError, match="over the budget"):
        resources.check_fits(total, "latent_image: all of the memory")


# --- 4. long graphs run or get a node-named error ----------------------------------------------------------------
def _lora_chain(n: int, strength: float = 0.0) -> dict:
    p = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x"}}}
    prev = "4"
    for i in range(n):
        nid = str(100 + i)
        p[nid] = {"class_type": "LoraLoader", "inputs": {"model": [prev, 0], "clip": [prev, 1], "lora_name": "l",
                                                         "strength_model": strength, "strength_clip": 0.0}}
        prev = nid
    base = txt2img("chain", steps=2)
    base["5"]["inputs"]["clip"] = [prev, 1]
    base["6"]["inputs"]["model"] = [prev, 0]
    del base["4"]
    p.update(base)
    return p


def test_a_chain_of_3000_lora_loaders_runs(tmp_path, capsys):
    (tmp_path / "chain.json").write_text(json.dumps(_lora_chain(3000, 0.0001)))
    assert cli_main(["run", str(tmp_path / "chain.json"), "--out", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").glob("chain_*.png"))) == 1


def test_a_chain_of_3000_lora_loaders_is_accepted_by_serve(served):
    base, _ = served
    status, _, body = post_json(base, "/api/prompt", {"prompt": _lora_chain(3000)})
    assert status == 200, body[:300]
    assert wait_history(base, json.loads(body)["prompt_id"], timeout=120)["status"]["completed"] is True


def test_a_long_cycle_is_named(tmp_path, capsys):
    p = _lora_chain(5000)
    p["100"]["inputs"]["model"] = ["5099", 0]  # close the chain into a loop
    (tmp_path / "cycle.json").write_text(json.dumps(p))
    assert cli_main(["run", str(tmp_path / "cycle.json"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "node 5099: the workflow has a cycle" in err and "more)" in err and len(err) < 300


def test_a_long_chain_of_reroutes_in_the_editor_format(tmp_path, capsys):
    from stepwise_sampler.examples import EXAMPLES_DIR

    wf = json.loads((EXAMPLES_DIR / "txt2img.json").read_text())
    sampler = next(n for n in wf["nodes"] if n["type"] in ("KSampler", "StepwiseKSampler"))
    link_in = next(i for i in sampler["inputs"] if i["name"] == "model")["link"]
    link = next(lk for lk in wf["links"] if lk[0] == link_in)
    origin, slot = link[1], link[2]
    next_id = max(n["id"] for n in wf["nodes"]) + 1
    next_link = max(lk[0] for lk in wf["links"]) + 1
    prev_origin, prev_slot = origin, slot
    for k in range(5000):
        nid = next_id + k
        wf["nodes"].append({"id": nid, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": next_link}],
                            "outputs": [{"name": "", "type": "MODEL", "links": []}], "mode": 0})
        wf["links"].append([next_link, prev_origin, prev_slot, nid, 0, "MODEL"])
        next_link += 1
        prev_origin, prev_slot = nid, 0
    link[1], link[2] = prev_origin, prev_slot
    (tmp_path / "reroutes.json").write_text(json.dumps(wf))
    assert cli_main(["run", str(tmp_path / "reroutes.json"), "--out", str(tmp_path / "out")]) == 0


# --- 5. --from-png validates the recipe ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_png(tmp_path_factory):
    work = tmp_path_factory.mktemp("png")
    (work / "wf.json").write_text(json.dumps(txt2img("remake", steps=3)))
    assert cli_main(["run", str(work / "wf.json"), "--out", str(work / "out")]) == 0
    return next((work / "out").glob("remake_*.png"))


def _with_recipe(png: Path, recipe_text: str, dst: Path) -> Path:
    from PIL import Image, PngImagePlugin

    img = Image.open(png)
    info = PngImagePlugin.PngInfo()
    for key, value in img.text.items():
        info.add_text(key, recipe_text if key == "stepwise" else value)
    img.save(dst, pnginfo=info)
    return dst


@pytest.mark.parametrize("mutate,field", [
    (lambda r: [r], "stepwise"),
    (lambda r: {**r, "samplers": "euler"}, "samplers"),
    (lambda r: {**r, "samplers": 7}, "samplers"),
    (lambda r: {**r, "image": 99}, "image 99"),
    (lambda r: {**r, "image": "0"}, "image"),
    (lambda r: {**r, "image": -1}, "image"),
    (lambda r: {**r, "saved_by": ["9"]}, "saved_by"),
    (lambda r: {**r, "samplers": [{**r["samplers"][0], "profile": ["0.8.0"]}]}, "samplers[0].profile"),
    (lambda r: {**r, "samplers": [{**r["samplers"][0], "profile": "banana"}]}, "samplers[0].profile"),
    (lambda r: {**r, "samplers": [{**r["samplers"][0], "seed": "1"}]}, "samplers[0].seed"),
    (lambda r: {**r, "samplers": [3]}, "samplers[0]"),
    (lambda r: {**r, "version": 2}, "version"),
])
def test_from_png_with_a_malformed_recipe_exits_2_naming_the_field(saved_png, tmp_path, capsys, mutate, field):
    from PIL import Image

    recipe = json.loads(Image.open(saved_png).text["stepwise"])
    png = _with_recipe(saved_png, json.dumps(mutate(recipe)), tmp_path / "bad.png")
    assert cli_main(["run", "--from-png", str(png), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot re-make" in err and field in err, err
    _no_traceback(err)


def test_from_png_with_a_valid_recipe_still_matches(saved_png, tmp_path, capsys):
    assert cli_main(["run", "--from-png", str(saved_png), "--out", str(tmp_path / "o")]) == 0
    assert "pixels match" in capsys.readouterr().out


# --- 6. sweep values --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis,needle", [
    ("steps=inf", "'inf' is not a number"), ("steps=1e400", "outside the allowed range"),
    ("cfg=0:1e308:1e-308", "at most 256 per axis"), ("cfg=1e400", "not a finite number"),
    ("seed=0:18446744073709551615", "at most 256 per axis"), ("steps=" + "9" * 200, "longer than 100"),
    ("seed=18446744073709551616", "outside the allowed range"), ("steps=2.5", "not a whole number"),
])
def test_sweep_refuses_bad_values_naming_the_axis(tmp_path, capsys, axis, needle):
    wf = REPO / "examples" / "txt2img.json"
    assert cli_main(["sweep", str(wf), "--node", "5", "--x", axis, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "--x (node 5)" in err and needle in err, err
    _no_traceback(err)
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").iterdir())


def test_sweep_takes_the_whole_seed_range_exactly(tmp_path, capsys):
    from PIL import Image

    wf = REPO / "examples" / "txt2img.json"
    seeds = "18446744073709551615,9007199254740993"
    assert cli_main(["sweep", str(wf), "--node", "5", "--x", f"seed={seeds}", "--y", "steps=2",
                     "--out", str(tmp_path / "s")]) == 0
    index = json.loads((tmp_path / "s" / "sweep.json").read_text())
    ran = sorted(json.loads(Image.open(tmp_path / "s" / c["files"][0]).text["stepwise"])["samplers"][0]["seed"]
                 for c in index["cells"])
    assert ran == sorted(int(s) for s in seeds.split(","))


# --- 8. fit_schedule arguments ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,name", [
    ({"sigma_min": 1e-30}, "sigma_min or sigma_max is probably outside"), ({"sigma_min": 0.0}, "sigma_min"),
    ({"sigma_min": float("nan")}, "sigma_min"), ({"sigma_max": float("inf")}, "sigma_max"),
    ({"sigma_min": 20.0}, "sigma_min"), ({"steps": 0}, "steps"), ({"sampler_name": "euler_ancestral"}, "sampler_name"),
    ({"sigma_max": "big"}, "sigma_max"),
])
def test_fit_schedule_arguments_are_checked_and_named(kw, name):
    import torch

    from stepwise_sampler.sampling import fit_schedule

    args = {"steps": 6, "sampler_name": "uni_pc", "sigma_max": 14.6, "sigma_min": 0.03, **kw}

    def denoiser(x, sigma, **_):
        return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)

    with pytest.raises(ValueError, match=name):
        fit_schedule(denoiser, torch.randn(2, 4, 8, 8), args.pop("steps"), args.pop("sampler_name"), **args)


# --- 9. one rule for symlinks: saved through a user's symlinked folder, viewable there ---------------------------
def test_save_and_view_agree_on_a_symlinked_output_folder(tmp_path):
    elsewhere = tmp_path / "disk2"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(elsewhere, tmp_path / "out" / "linked")
    with running_server(tmp_path / "out", tmp_path / "in") as base:
        status, _, body = post_json(base, "/api/prompt", {"prompt": txt2img("linked/pic")})
        entry = wait_history(base, json.loads(body)["prompt_id"])
        image = entry["outputs"]["2"]["images"][0]
        assert image["subfolder"] == "linked" and (elsewhere / image["filename"]).is_file()
        status, headers, data = request(base, "GET", "/api/view?" + urllib.parse.urlencode(
            {"filename": image["filename"], "subfolder": "linked", "type": "output"}))
        assert status == 200 and data == (elsewhere / image["filename"]).read_bytes()
        # an escape is still refused, however it is spelled
        assert request(base, "GET", "/api/view?subfolder=linked/..%2F..&filename=x.png")[0] in (403, 400)
