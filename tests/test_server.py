"""`stepwise serve`'s HTTP API: what the editor needs, ComfyUI-shaped errors, and no path traversal."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="install the serve extra: pip install -e .[serve]")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conftest import running_server

    work = tmp_path_factory.mktemp("serve")
    (work / "out").mkdir()
    (work / "out" / "result.png").write_bytes(b"\x89PNG fake")
    (work / "secret.txt").write_text("do not serve")
    with running_server(work / "out", work / "in") as base:
        yield base, work


def _get(base, path):
    try:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _post(base, path, body: bytes):
    req = urllib.request.Request(base + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_object_info_lists_our_nodes_and_the_stand_ins(server):
    base, _ = server
    status, body = _get(base, "/api/object_info")
    info = json.loads(body)
    assert status == 200
    for name in ("StepwiseKSampler", "StepwiseKSamplerAdvancedEfficient", "KSampler", "CheckpointLoaderSimple",
                 "SaveImage"):
        assert name in info
    ks = info["StepwiseKSampler"]
    assert ks["display_name"] == "KSampler (Stepwise)" and ks["input_order"]["required"][0] == "model"
    assert info["SaveImage"]["output_node"] is True
    status, body = _get(base, "/api/extensions")
    assert "/extensions/stepwise/stepwise.js" in json.loads(body)


def test_schedule_route_and_its_validation(server):
    base, _ = server
    status, body = _get(base, "/stepwise/sigmas?scheduler=karras&steps=10&start=2&end=6&leftover=enable")
    data = json.loads(body)
    assert status == 200 and len(data["sigmas"]) == 11 and data["start"] == 2 and data["end"] == 6
    assert data["used"][-1] > 0, "leftover noise keeps the last sigma"
    for bad, word in (("scheduler=nope&steps=5", "scheduler"), ("scheduler=karras&steps=0", "steps"),
                      ("scheduler=karras&steps=100000", "steps"), ("scheduler=karras&steps=5&denoise=2", "denoise"),
                      ("scheduler=karras&steps=x", "steps")):
        status, body = _get(base, f"/api/stepwise/sigmas?{bad}")
        assert status == 400 and word in json.loads(body)["error"]


def test_bad_prompts_get_comfyui_style_errors_and_the_server_keeps_running(server):
    base, _ = server
    status, body = _post(base, "/api/prompt", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_prompt"
    status, body = _post(base, "/api/prompt", json.dumps({"nothing": 1}).encode())
    assert status == 400 and body["error"]["type"] == "no_prompt"
    prompt = {"1": {"class_type": "FancyNode", "inputs": {}}}
    status, body = _post(base, "/api/prompt", json.dumps({"prompt": prompt}).encode())
    assert status == 400 and "1" in body["node_errors"] and "FancyNode" in body["node_errors"]["1"]["errors"][0]["message"]
    prompt = {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 5, "height": 64, "batch_size": 1}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
              "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["4", 2]}},
              "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x"}}}
    status, body = _post(base, "/api/prompt", json.dumps({"prompt": prompt}).encode())
    err = body["node_errors"]["1"]["errors"][0]
    assert status == 400 and err["extra_info"]["input_name"] == "width" and "16..16384" in err["message"]
    assert _get(base, "/api/system_stats")[0] == 200


def test_a_prompt_runs_and_lands_in_history(server):
    base, work = server
    prompt = {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
              "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x"}},
              "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "red circle", "clip": ["4", 1]}},
              "6": {"class_type": "StepwiseKSampler", "inputs": {"seed": 1, "steps": 4, "cfg": 7.0,
                    "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0, "model": ["4", 0],
                    "positive": ["5", 0], "negative": ["5", 0], "latent_image": ["1", 0]}},
              "3": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["4", 2]}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "api"}}}
    status, body = _post(base, "/api/prompt", json.dumps({"prompt": prompt, "client_id": "t"}).encode())
    assert status == 200
    pid = body["prompt_id"]
    for _ in range(200):
        hist = json.loads(_get(base, f"/api/history/{pid}")[1])
        if pid in hist:
            break
        time.sleep(0.05)
    entry = hist[pid]
    assert entry["status"]["completed"] is True
    summary = entry["outputs"]["6"]["stepwise"][0]
    assert summary["points"][0][1] > 14 and summary["steps"] == 4 and len(summary["points"]) == 5
    image = entry["outputs"]["2"]["images"][0]
    status, data = _get(base, f"/api/view?filename={image['filename']}&type=output&subfolder=")
    assert status == 200 and data[:4] == b"\x89PNG"


@pytest.mark.parametrize("query", ["filename=../secret.txt&type=output", "filename=secret.txt&type=output&subfolder=..",
                                   "filename=..%2Fsecret.txt&type=output", "filename=/etc/passwd&type=output",
                                   "filename=result.png&type=output&subfolder=%2Fetc"])
def test_view_never_serves_outside_its_folders(server, query):
    base, _ = server
    status, body = _get(base, f"/api/view?{query}")
    assert status in (400, 403, 404) and b"do not serve" not in body and b"root:" not in body


def test_view_serves_outputs_and_rejects_unknown_types(server):
    base, _ = server
    assert _get(base, "/api/view?filename=result.png&type=output")[0] == 200
    assert _get(base, "/api/view?filename=result.png&type=secrets")[0] == 400
