"""Every golden case through our nodes, at the golden README's tolerance."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from stepwise_sampler import golden
from conftest import GOLDEN_SETS, load_golden


def _cases(name):
    path = GOLDEN_SETS[name] / "cases.json"
    return [(name, c) for c in json.loads(path.read_text())["cases"]] if path.exists() else []


_CASES = [c for name in GOLDEN_SETS for c in _cases(name)]
SETS = list(GOLDEN_SETS)


@pytest.mark.slow
@pytest.mark.parametrize("set_name,case", _CASES, ids=[f"{n}:{c['id']}" for n, c in _CASES])
def test_case(set_name, case):
    res = golden.run_case(load_golden(set_name), case)
    assert res.status == "passed", "; ".join(res.problems)


@pytest.mark.parametrize("set_name,minimum", [("0.3.64", 681), ("0.8.0", 697), ("0.33.0", 697)])
def test_golden_set_is_complete(set_name, minimum):
    gs = load_golden(set_name)
    assert len([c for n, c in _CASES if n == set_name]) == len(gs.cases) >= minimum
    samplers = {c["params"]["sampler_name"] for c in gs.cases}
    assert samplers <= set(gs.meta["samplers"])
    assert gs.profile.comfyui_version == gs.meta["comfyui_version"]
    unknown = samplers - set(golden.SAMPLERS)
    assert not unknown, f"samplers without an implementation would be skipped: {unknown}"


@pytest.mark.parametrize("set_name", SETS)
def test_schedules_match_sigmas_json_within_one_ulp(set_name):
    report = golden.schedule_report(load_golden(set_name))
    assert report.problems == []
    assert report.checked >= 400 and report.bit_exact >= report.checked - 5


def test_within_ulp_rule():
    ref = torch.tensor([1.0, 14.614643096923828, 0.0, float("nan")])
    one_up = torch.nextafter(ref, torch.full_like(ref, 100.0))
    two_up = torch.nextafter(one_up, torch.full_like(ref, 100.0))
    one_up[2] = ref[2]
    two_up[2] = ref[2]
    one_up[3] = two_up[3] = float("nan")
    assert golden.within_ulp(one_up, ref) and not golden.same_floats(one_up, ref)
    assert not golden.within_ulp(two_up, ref)
    assert not golden.within_ulp(ref[:3], ref)


@pytest.mark.slow
@pytest.mark.parametrize("set_name", SETS)
def test_cross_case_checks(set_name):
    gs = load_golden(set_name)
    outputs = {}
    needed = {c[k] for c in gs.checks for k in ("a", "b")}
    for case in gs.cases:
        if case["id"] in needed:
            outputs[case["id"]] = golden.run_case(gs, case).output
    assert golden.check_relations(gs, outputs) == []


@pytest.mark.parametrize("set_name", ["0.8.0", "0.33.0"])
def test_error_cases_name_the_seed(set_name):
    gs = load_golden(set_name)
    errors = [c for c in gs.cases if c["status"] == "error"]
    assert len(errors) == 4
    for case in errors:
        res = golden.run_case(gs, case)
        assert res.status == "passed", res.problems


def test_profiles_differ_where_the_releases_differ():
    """The 0.3.64 profile fails the 0.8.0 cases that changed, and vice versa (the profile is doing the work)."""
    old, new = load_golden("0.3.64"), load_golden("0.8.0")
    case = next(c for c in new.cases if c["id"] == "ks_t2i_euler_ancestral_normal_cfg7")
    swapped = golden.GoldenSet(new.root, new.meta, new.cases, new.checks, new.tensors, new.sigmas, new.model,
                               new.toy_tensors, old.profile)
    assert golden.run_case(new, case).status == "passed"
    assert golden.run_case(swapped, case).status == "failed"


def test_compare_rule():
    ref = torch.tensor([100.0, float("nan"), 1.0])
    assert golden.compare(ref + 0.009, ref)[0]
    assert not golden.compare(ref + 0.011, ref)[0]
    assert not golden.compare(torch.tensor([100.0, 2.0, 1.0]), ref)[0]  # NaN position lost
    assert not golden.compare(ref[:2], ref)[0]


def _copy_golden(src, dst):
    for name in ("cases.json", "tensors.safetensors", "sigmas.json", "toy_model.safetensors"):
        shutil.copy(src / name, dst / name)


def test_runner_on_other_directory_and_detects_wrong_output(golden_dir, tmp_path, capsys, monkeypatch):
    """The runner takes any directory in the golden format; a corrupted reference must fail."""
    from safetensors.torch import load_file, save_file

    _copy_golden(golden_dir, tmp_path)
    meta = json.loads((tmp_path / "cases.json").read_text())
    keep = [c for c in meta["cases"] if c["id"] in ("ks_t2i_euler_normal_cfg7", "ks_t2i_dpmpp_2m_sde_karras_cfg1")]
    meta["cases"], meta["checks"] = keep, []
    (tmp_path / "cases.json").write_text(json.dumps(meta))
    assert golden.main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "golden: 2 passed, 0 failed, 0 skipped"

    tensors = {k: v.clone() for k, v in load_file(str(tmp_path / "tensors.safetensors")).items()}
    tensors["out/ks_t2i_euler_normal_cfg7"][0, 0, 0, 0] += 0.5
    save_file(tensors, str(tmp_path / "tensors.safetensors"))
    assert golden.main([str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1] == "golden: 1 passed, 1 failed, 0 skipped"


def test_runner_skips_unknown_sampler_by_name(golden_dir, tmp_path, capsys):
    _copy_golden(golden_dir, tmp_path)
    meta = json.loads((tmp_path / "cases.json").read_text())
    case = dict(next(c for c in meta["cases"] if c["id"] == "ks_t2i_euler_normal_cfg7"))
    case["params"] = dict(case["params"], sampler_name="future_sampler")
    meta["cases"], meta["checks"] = [case], []
    (tmp_path / "cases.json").write_text(json.dumps(meta))
    assert golden.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "future_sampler" in out and out.strip().splitlines()[-1] == "golden: 0 passed, 0 failed, 1 skipped"


def test_runner_bad_directory(tmp_path, capsys):
    assert golden.main([str(tmp_path)]) == 2
