"""Every golden case through our nodes, at the golden README's tolerance."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from stepwise_sampler import golden
from conftest import GOLDEN

_CASES = json.loads((GOLDEN / "cases.json").read_text())["cases"] if (GOLDEN / "cases.json").exists() else []


@pytest.mark.parametrize("case", _CASES, ids=[c["id"] for c in _CASES])
def test_case(golden_set, case):
    res = golden.run_case(golden_set, case)
    assert res.status == "passed", "; ".join(res.problems)


def test_golden_set_is_complete(golden_set):
    assert len(_CASES) == len(golden_set.cases) >= 681
    samplers = {c["params"]["sampler_name"] for c in golden_set.cases}
    assert samplers <= set(golden_set.meta["samplers"])


def test_schedules_match_sigmas_json(golden_set):
    assert golden.check_schedules(golden_set) == []


def test_cross_case_checks(golden_set):
    outputs = {}
    needed = {c[k] for c in golden_set.checks for k in ("a", "b")}
    for case in golden_set.cases:
        if case["id"] in needed:
            outputs[case["id"]] = golden.run_case(golden_set, case).output
    assert golden.check_relations(golden_set, outputs) == []


def test_compare_rule():
    ref = torch.tensor([100.0, float("nan"), 1.0])
    assert golden.compare(ref + 0.009, ref)[0]
    assert not golden.compare(ref + 0.011, ref)[0]
    assert not golden.compare(torch.tensor([100.0, 2.0, 1.0]), ref)[0]  # NaN position lost
    assert not golden.compare(ref[:2], ref)[0]


def _copy_golden(src, dst):
    for name in ("cases.json", "tensors.safetensors", "sigmas.json", "toy_model.safetensors"):
        shutil.copy(src / name, dst / name)


def test_runner_on_other_directory_and_detects_wrong_output(golden_dir, tmp_path, capsys):
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
