"""The hardening probes: `stepwise serve` refuses what ComfyUI refuses and survives any request;
`stepwise run` checks before sampling, writes nothing on failure and names the node and input."""
from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="install the serve extra: pip install -e .[serve]")

from conftest import running_server  # noqa: E402

EVIL = "http://evil.example"


def _png_bytes(size=(16, 16), colour=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def request(base, method, path, body=None, headers=None, timeout=20):
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post_json(base, path, value, headers=None):
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return request(base, "POST", path, data, {"Content-Type": "application/json", **(headers or {})})


def multipart(fields: dict) -> tuple[bytes, str]:
    boundary = "----stepwise-test-boundary"
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{boundary}\r\n".encode())
        if isinstance(value, tuple):
            filename, data, ctype = value
            out.write(f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode())
            out.write(f"Content-Type: {ctype}\r\n\r\n".encode())
            out.write(data)
        else:
            out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode())
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def txt2img(prefix="api", steps=2):
    return {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x"}},
            "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "red circle", "clip": ["4", 1]}},
            "6": {"class_type": "StepwiseKSampler", "inputs": {"seed": 1, "steps": steps, "cfg": 7.0,
                  "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0, "model": ["4", 0],
                  "positive": ["5", 0], "negative": ["5", 0], "latent_image": ["1", 0]}},
            "3": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["4", 2]}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix}}}


def wait_history(base, pid, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        status, _, body = request(base, "GET", f"/api/history/{pid}")
        hist = json.loads(body)
        if pid in hist:
            return hist[pid]
        time.sleep(0.05)
    raise AssertionError(f"prompt {pid} did not finish within {timeout} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("harden")
    (work / "out").mkdir()
    (work / "out" / "page.html").write_text("<script>alert(1)</script>")
    (work / "out" / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    (work / "out" / "ok.png").write_bytes(_png_bytes())
    with running_server(work / "out", work / "in") as base:
        yield base, work


# --- foreign origins and hosts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path,body,ctype", [
    ("/api/prompt", json.dumps({"prompt": txt2img()}).encode(), "application/json"),
    ("/api/prompt", json.dumps({"prompt": txt2img()}).encode(), "text/plain"),  # no preflight in a browser
    ("/api/interrupt", b"", "text/plain"),
    ("/api/settings", b'{"a": 1}', "text/plain"),
    ("/api/queue", b'{"clear": true}', "application/json"),
    ("/api/history", b'{"clear": true}', "application/json"),
])
def test_foreign_origin_is_refused(served, path, body, ctype):
    base, _ = served
    status, _, text = request(base, "POST", path, body, {"Origin": EVIL, "Content-Type": ctype})
    assert status == 403 and b"Origin" in text


def test_foreign_origin_upload_and_null_origin_are_refused(served):
    base, work = served
    data, ctype = multipart({"image": ("x.png", _png_bytes(), "image/png")})
    assert request(base, "POST", "/api/upload/image", data, {"Origin": EVIL, "Content-Type": ctype})[0] == 403
    assert request(base, "POST", "/api/interrupt", b"", {"Origin": "null"})[0] == 403
    assert not (work / "in" / "x.png").exists()


def test_foreign_origin_websocket_is_refused(served):
    base, _ = served
    headers = {"Origin": EVIL, "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert request(base, "GET", "/ws?clientId=x", headers=headers)[0] == 403


def test_foreign_host_is_refused_on_a_loopback_bind(served):
    base, _ = served
    status, _, text = request(base, "GET", "/api/queue", headers={"Host": "evil.example"})
    assert status == 403 and b"Host" in text
    status, _, _ = request(base, "POST", "/api/prompt", json.dumps({"prompt": txt2img()}).encode(),
                           {"Host": "attacker.test:8188", "Content-Type": "application/json"})
    assert status == 403


def test_same_origin_and_no_origin_are_accepted(served):
    base, _ = served
    port = base.rsplit(":", 1)[1]
    for origin in (base, f"http://localhost:{port}"):
        host = origin.split("//")[1]
        status, _, _ = request(base, "GET", "/api/queue", headers={"Origin": origin, "Host": host})
        assert status == 200, origin
    assert request(base, "GET", "/api/queue")[0] == 200
    # the same host on another port is another origin
    assert request(base, "GET", "/api/queue", headers={"Origin": "http://127.0.0.1:1"})[0] == 403


def test_preflight_grants_nothing(served):
    base, _ = served
    status, headers, _ = request(base, "OPTIONS", "/api/prompt", headers={"Origin": EVIL,
                                                                         "Access-Control-Request-Method": "POST"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_origin_check_unit():
    from stepwise_sampler.standalone.serve import check_request_origin, is_loopback_host

    assert is_loopback_host("localhost") and is_loopback_host("127.0.0.2") and is_loopback_host("[::1]")
    assert not is_loopback_host("evil.example") and not is_loopback_host("10.0.0.1") and not is_loopback_host("")
    ok = {"Host": "127.0.0.1:8188", "Origin": "http://127.0.0.1:8188"}
    assert check_request_origin(ok, True) is None
    assert check_request_origin({"Host": "127.0.0.1:8188", "Origin": EVIL}, True)
    assert check_request_origin({"Host": "192.168.1.5:8188", "Origin": EVIL}, False)  # any bind
    assert check_request_origin({"Host": "192.168.1.5:8188", "Origin": "http://192.168.1.5:8188"}, False) is None
    assert check_request_origin({"Host": "evil.example"}, True)
    assert check_request_origin({"Host": "evil.example"}, False) is None
    assert check_request_origin({"Host": "a:b:c"}, True)


def test_listen_warning():
    from stepwise_sampler.standalone.serve import listen_warning

    assert listen_warning("127.0.0.1", 8188, "o", "i") is None
    warning = listen_warning("0.0.0.0", 8188, "o", "i")
    assert warning and "anyone" in warning and "0.0.0.0" in warning


# --- the executor survives whatever a prompt holds --------------------------------------------------------------
@pytest.mark.parametrize("extra", [{"extra_pnginfo": "x"}, {"extra_pnginfo": {"workflow": 5}}, "text", [1, 2]])
def test_bad_extra_data_is_refused(served, extra):
    base, _ = served
    status, _, body = post_json(base, "/api/prompt", {"prompt": txt2img(), "extra_data": extra})
    assert status == 400 and "extra_data" in json.loads(body)["error"]["details"]


def test_executor_keeps_running_after_odd_prompts(served):
    base, _ = served
    odd = [{"prompt": txt2img(), "client_id": 5}, {"prompt": txt2img(), "prompt_id": {"a": 1}},
           {"prompt": txt2img(), "front": "yes"}, {"prompt": {"1": {"class_type": "SaveImage", "inputs": "abc"}}},
           {"prompt": {"1": {"class_type": 7, "inputs": {}}}}, {"prompt": [1, 2, 3]}, {"prompt": {"1": "x"}}]
    for body in odd:
        status, _, text = post_json(base, "/api/prompt", body)
        assert 400 <= status < 500, (body, status, text)
    status, _, body = post_json(base, "/api/prompt", {"prompt": txt2img("alive"), "client_id": "t"})
    assert status == 200
    entry = wait_history(base, json.loads(body)["prompt_id"])
    assert entry["status"]["completed"] is True


def test_a_prompt_failing_at_run_time_is_reported_and_the_next_one_runs(served):
    base, work = served
    (work / "in").mkdir(exist_ok=True)
    (work / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    whole = _png_bytes((64, 64))
    (work / "in" / "truncated.png").write_bytes(whole[:len(whole) // 2])  # a readable header, then nothing
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "broken.png"}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    status, _, body = post_json(base, "/api/prompt", {"prompt": prompt})
    assert status == 400 and "not a readable image" in body.decode()  # refused before it is queued
    prompt["1"]["inputs"]["image"] = "truncated.png"
    status, _, body = post_json(base, "/api/prompt", {"prompt": prompt})
    assert status == 200
    entry = wait_history(base, json.loads(body)["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    error = next(m[1] for m in entry["status"]["messages"] if m[0] == "execution_error")
    assert "node 1" in error["exception_message"]
    status, _, body = post_json(base, "/api/prompt", {"prompt": txt2img("after")})
    assert wait_history(base, json.loads(body)["prompt_id"])["status"]["completed"] is True


# --- malformed requests get a 4xx with a reason --------------------------------------------------------------------
@pytest.mark.parametrize("path,body", [
    ("/api/queue", b"x"), ("/api/queue", b"[1]"), ("/api/queue", b'{"delete": "abc"}'),
    ("/api/history", b"{"), ("/api/history", b'{"delete": [{}]}'), ("/api/settings", b"1"),
    ("/api/settings", b"\xff\xfe"), ("/api/settings/Comfy.X", b"nope"), ("/api/upload/image", b"raw bytes"),
    ("/api/prompt", b'{"prompt": ' * 5000 + b"1" + b"}" * 5000),
])
def test_malformed_bodies_get_400(served, path, body):
    base, _ = served
    status, _, text = request(base, "POST", path, body, {"Content-Type": "application/json"})
    assert 400 <= status < 500, (path, status, text)
    assert text, "a reason is given"


def test_history_max_items_must_be_a_number(served):
    base, _ = served
    assert request(base, "GET", "/api/history?max_items=abc")[0] == 400
    assert request(base, "GET", "/api/history?max_items=1")[0] == 200


def test_history_is_bounded(served):
    base, _ = served
    big = "x" * (20 * 1024 * 1024)
    status, _, _ = post_json(base, "/api/prompt", {"prompt": txt2img(), "extra_data": {"blob": big}})
    assert status == 413  # over the prompt body limit
    payload = {"prompt": txt2img("small"), "extra_data": {"blob": "y" * (4 * 1024 * 1024),
                                                           "extra_pnginfo": {"workflow": {"nodes": []}, "junk": "z" * 1000}}}
    status, _, body = post_json(base, "/api/prompt", payload)
    assert status == 200
    entry = wait_history(base, json.loads(body)["prompt_id"])
    assert len(json.dumps(entry)) < 100_000, "extra data beyond the workflow is not kept"
    from stepwise_sampler.standalone.serve import state as srv

    assert srv.MAX_HISTORY <= 1000 and srv.MAX_HISTORY_BYTES <= 256 * 1024 * 1024 and srv.MAX_QUEUE <= 1000


# --- uploads ----------------------------------------------------------------------------------------------------------
def test_uploads_must_be_images_and_do_not_overwrite(served):
    base, work = served
    for name, data, ctype in (("page.html", b"<script>alert(1)</script>", "text/html"),
                              ("x.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
                              ("fake.png", b"not an image", "image/png"), ("empty.png", b"", "image/png")):
        data_, ctype_ = multipart({"image": (name, data, ctype)})
        status, _, text = request(base, "POST", "/api/upload/image", data_, {"Content-Type": ctype_})
        assert status == 400 and b"image" in text, name
    first, ctype = multipart({"image": ("pic.png", _png_bytes(colour=(1, 2, 3)), "image/png")})
    assert json.loads(request(base, "POST", "/api/upload/image", first, {"Content-Type": ctype})[2])["name"] == "pic.png"
    second, ctype = multipart({"image": ("pic.png", _png_bytes(colour=(9, 9, 9)), "image/png")})
    name = json.loads(request(base, "POST", "/api/upload/image", second, {"Content-Type": ctype})[2])["name"]
    assert name == "pic (1).png"
    from PIL import Image

    assert Image.open(work / "in" / "pic.png").getpixel((0, 0)) == (1, 2, 3), "the first upload is intact"
    third, ctype = multipart({"image": ("pic.png", _png_bytes(colour=(7, 7, 7)), "image/png"), "overwrite": "true"})
    assert json.loads(request(base, "POST", "/api/upload/image", third, {"Content-Type": ctype})[2])["name"] == "pic.png"
    assert Image.open(work / "in" / "pic.png").getpixel((0, 0)) == (7, 7, 7)
    sneaky, ctype = multipart({"image": ("s.png", _png_bytes(), "image/png"), "subfolder": "../../.."})
    assert request(base, "POST", "/api/upload/image", sneaky, {"Content-Type": ctype})[0] in (400, 403)


# --- serving user files -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["page.html", "drawing.svg"])
def test_active_content_is_served_as_a_download(served, name):
    base, _ = served
    status, headers, _ = request(base, "GET", f"/api/view?filename={name}&type=output")
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith("attachment")
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_images_are_served_inline(served):
    base, _ = served
    status, headers, body = request(base, "GET", "/api/view?filename=ok.png&type=output")
    assert status == 200 and headers["Content-Type"] == "image/png" and body[:4] == b"\x89PNG"
    assert headers["Content-Disposition"].startswith("inline")


def test_images_saved_under_a_folder_prefix_can_be_viewed(served):
    base, _ = served
    status, _, body = post_json(base, "/api/prompt", {"prompt": txt2img("split/two_nodes")})
    entry = wait_history(base, json.loads(body)["prompt_id"])
    image = entry["outputs"]["2"]["images"][0]
    assert image["subfolder"] == "split" and image["filename"].startswith("two_nodes_")
    status, _, data = request(base, "GET", f"/api/view?filename={image['filename']}&type=output&subfolder=split")
    assert status == 200 and data[:4] == b"\x89PNG"


# --- stepwise run ----------------------------------------------------------------------------------------------------------
def _write(tmp_path, prompt, name="wf.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(prompt))
    return path


def _run_cli(args, capsys):
    from stepwise_sampler.standalone.cli import main

    code = main(args)
    return code, capsys.readouterr()


def test_out_pointing_at_a_file_fails_before_sampling(tmp_path, capsys, monkeypatch):
    from stepwise_sampler.nodes import ksampler

    calls = []
    monkeypatch.setattr(ksampler, "common_ksampler", lambda *a, **k: calls.append(1))
    (tmp_path / "afile").write_text("x")
    code, cap = _run_cli(["run", str(_write(tmp_path, txt2img())), "--out", str(tmp_path / "afile")], capsys)
    assert code == 2 and len(cap.err.strip().splitlines()) == 1 and "--out" in cap.err and "file" in cap.err
    code, cap = _run_cli(["run", str(_write(tmp_path, txt2img())), "--out", str(tmp_path / "afile" / "sub")], capsys)
    assert code == 2 and "--out" in cap.err
    assert calls == [], "nothing was sampled"


def test_unwritable_out_fails_before_sampling(tmp_path, capsys):
    code, cap = _run_cli(["run", str(_write(tmp_path, txt2img())), "--out", "/proc/stepwise-out"], capsys)
    assert code == 2 and len(cap.err.strip().splitlines()) == 1 and "--out" in cap.err


def test_missing_input_image_fails_before_sampling(tmp_path, capsys):
    prompt = txt2img()
    prompt["7"] = {"class_type": "LoadImage", "inputs": {"image": "nope.png"}}
    prompt["8"] = {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}}
    code, cap = _run_cli(["run", str(_write(tmp_path, prompt)), "--out", str(tmp_path / "o"),
                          "--input-dir", str(tmp_path)], capsys)
    assert code == 2 and "node 7" in cap.err and "image" in cap.err and "not found" in cap.err
    assert not (tmp_path / "o").exists()


def test_a_failing_second_branch_leaves_nothing_behind(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    prompt = txt2img("first")
    prompt["7"] = {"class_type": "LoadImage", "inputs": {"image": "broken.png"}}
    prompt["8"] = {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "second"}}
    out = tmp_path / "o"
    code, cap = _run_cli(["run", str(_write(tmp_path, prompt)), "--out", str(out), "--input-dir",
                          str(tmp_path / "in")], capsys)
    assert code == 2 and "node 7" in cap.err
    assert not out.exists() or not any(out.rglob("*.png")), "the first branch's image was not left behind"
    code, cap = _run_cli(["run", str(_write(tmp_path, txt2img("first"))), "--out", str(out)], capsys)
    assert code == 0 and len(list(out.rglob("*.png"))) == 1


@pytest.mark.parametrize("size,batch,word", [(16384, 1, "width"), (512, 4096, "batch_size")])
def test_impossible_sizes_fail_early_naming_node_and_input(tmp_path, capsys, size, batch, word, monkeypatch):
    from stepwise_sampler.sampling import resources

    monkeypatch.setattr(resources, "_BUDGET", [8 * 2 ** 30])
    prompt = txt2img()
    prompt["1"]["inputs"].update(width=size, height=size, batch_size=batch)
    start = time.perf_counter()
    code, cap = _run_cli(["run", str(_write(tmp_path, prompt)), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "node 1 (EmptyLatentImage) input " + word in cap.err and "GB" in cap.err
    assert time.perf_counter() - start < 10


def test_sampler_refuses_a_latent_too_large_for_memory(toy, monkeypatch):
    import torch

    from stepwise_sampler.nodes import StepwiseKSampler
    from stepwise_sampler.sampling import resources
    from stepwise_sampler.models.mixture import DemoModel

    monkeypatch.setattr(resources, "_BUDGET", [2 ** 30])
    with pytest.raises(ValueError, match=r"^latent_image: .*GB"):
        StepwiseKSampler().sample(DemoModel(), 1, 2, 7.0, "euler", "karras", [[torch.zeros(1, 77, 24), {}]],
                                  [[torch.zeros(1, 77, 24), {}]], {"samples": torch.zeros(1, 4, 1024, 1024)}, 1.0)


def test_errors_name_the_node_and_input(tmp_path, capsys):
    prompt = txt2img()
    prompt["6"]["inputs"]["sampler_name"] = ["4", 0]  # a combo linked to a MODEL
    code, cap = _run_cli(["run", str(_write(tmp_path, prompt)), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "node 6" in cap.err and "sampler_name" in cap.err and "MODEL" in cap.err
    assert "object at 0x" not in cap.err and "<" not in cap.err
    prompt = txt2img()
    prompt["3"]["inputs"] = "abc"
    code, cap = _run_cli(["run", str(_write(tmp_path, prompt)), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "node 3" in cap.err and "inputs" in cap.err
