"""Golden runner: replay ComfyUI-recorded KSampler/KSamplerAdvanced cases through our nodes.

Usage: ``python -m stepwise_sampler.golden DIR [--only SUBSTRING] [-v]``

DIR holds ``cases.json``, ``tensors.safetensors``, ``sigmas.json`` and ``toy_model.safetensors``
(the golden format). Each case runs through ``StepwiseKSampler``/``StepwiseKSamplerAdvanced`` on the
toy model and is compared with the recorded output at the golden README's tolerance
(``max|out - golden| <= 1e-4 * max(1, max|golden|)``, NaN positions equal), together with the
sigma slice, the initial noise and the callback steps/tensors. The raw and KSampler schedules of
``sigmas.json`` (each value within 1 float32 ulp, the golden rule, since ``pow`` rounds differently per CPU
instruction set; how many are bit-exact is reported) and the cross-case ``checks`` are verified as well; each
mismatch counts as a failure. The set's ``comfyui_version`` picks the behaviour profile (``sampling.profile``).
The last line is ``golden: N passed, M failed, K skipped`` (N, K count cases); exit 0 iff M == 0.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .nodes import StepwiseKSampler, StepwiseKSamplerAdvanced
from .host import Observer, observe
from .sampling.registry import discards_penultimate
from .host.profile import use_profile
from .sampling import SAMPLERS
from .sampling.profile import Profile, profile_for_version
from .schedulers import DiscreteModelSampling, calculate_sigmas, ksampler_sigmas
from .standalone.toy import load_toy_model

__all__ = ["GoldenSet", "CaseResult", "run_case", "run_golden", "main"]

REL_TOL = 1e-4
NODES = {"KSampler": StepwiseKSampler, "KSamplerAdvanced": StepwiseKSamplerAdvanced}


def _float(v: Any) -> float:
    if isinstance(v, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[v]
    return float(v)


def _as_tensor(values: list) -> torch.Tensor:
    return torch.tensor([_float(v) for v in values], dtype=torch.float32)


def within_ulp(a: torch.Tensor, b: torch.Tensor, ulps: int = 1) -> bool:
    """Every value within ``ulps`` float32 spacing of the reference (NaN == NaN, inf == inf)."""
    if a.shape != b.shape:
        return False
    a, b = a.float(), b.float()
    if not torch.equal(torch.isnan(a), torch.isnan(b)):
        return False
    finite = torch.isfinite(b) & ~torch.isnan(b)
    if not torch.equal(a[~finite & ~torch.isnan(b)], b[~finite & ~torch.isnan(b)]):
        return False
    spacing = torch.from_numpy(__import__("numpy").spacing(b[finite].abs().numpy())).float()
    return bool(((a[finite] - b[finite]).abs() <= ulps * spacing).all())


def same_floats(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Exact float32 equality with NaN == NaN."""
    return a.shape == b.shape and bool(torch.equal(torch.isnan(a), torch.isnan(b))) and \
        bool(torch.equal(torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0)))


def compare(out: torch.Tensor, ref: torch.Tensor) -> tuple[bool, str]:
    """The golden README's rule: NaN positions equal, then max|d| <= 1e-4 * max(1, max|ref|)."""
    if tuple(out.shape) != tuple(ref.shape):
        return False, f"shape {tuple(out.shape)} != {tuple(ref.shape)}"
    out, ref = out.detach().float().cpu(), ref.float()
    nan_o, nan_r = torch.isnan(out), torch.isnan(ref)
    if not torch.equal(nan_o, nan_r):
        return False, f"NaN positions differ ({int(nan_o.sum())} vs {int(nan_r.sum())})"
    finite = ~nan_r
    if not bool(finite.any()):
        return True, "all NaN"
    diff = (out[finite] - ref[finite]).abs().max().item()
    scale = max(1.0, ref[finite].abs().max().item())
    ok = diff <= REL_TOL * scale
    return ok, f"max|d|={diff:.3g} (limit {REL_TOL * scale:.3g})"


@dataclass
class GoldenSet:
    root: Path
    meta: dict
    cases: list[dict]
    checks: list[dict]
    tensors: dict[str, torch.Tensor]
    sigmas: dict
    model: Any
    toy_tensors: dict[str, torch.Tensor]
    profile: Profile = None  # type: ignore[assignment]

    @classmethod
    def load(cls, root: str | Path) -> "GoldenSet":
        from safetensors.torch import load_file

        root = Path(root)
        missing = [n for n in ("cases.json", "tensors.safetensors", "toy_model.safetensors") if not (root / n).exists()]
        if missing:
            raise FileNotFoundError(f"{root}: not a golden directory, missing {', '.join(missing)}")
        meta = json.loads((root / "cases.json").read_text())
        tensors = {k: v.clone() for k, v in load_file(str(root / "tensors.safetensors")).items()}
        model, toy = load_toy_model(root / "toy_model.safetensors")
        sig_path = root / "sigmas.json"
        sigmas = json.loads(sig_path.read_text()) if sig_path.exists() else {}
        profile = profile_for_version(meta.get("comfyui_version", "0.3.64"))
        return cls(root, meta, meta["cases"], meta.get("checks", []), tensors, sigmas, model, toy, profile)

    def tensor(self, name: str) -> torch.Tensor:
        if name in self.toy_tensors:
            return self.toy_tensors[name]
        return self.tensors[name]


@dataclass
class CaseResult:
    id: str
    status: str  # "passed" | "failed" | "skipped"
    problems: list[str] = field(default_factory=list)
    output: torch.Tensor | None = None


def _conditioning(gs: GoldenSet, name: str):
    return [[gs.tensor(name), {}]]


def run_case(gs: GoldenSet, case: dict) -> CaseResult:
    cid = case["id"]
    params = dict(case["params"])
    if params.get("sampler_name") not in SAMPLERS:
        return CaseResult(cid, "skipped", [f"sampler {params.get('sampler_name')!r} not implemented"])
    inputs = case["inputs"]
    latent: dict[str, Any] = {"samples": gs.tensor(inputs["latent_samples"]).clone()}
    if inputs.get("batch_index") is not None:
        latent["batch_index"] = list(inputs["batch_index"])
    if inputs.get("noise_mask") is not None:
        latent["noise_mask"] = gs.tensor(inputs["noise_mask"]).clone()
    node_cls = NODES[case["node"]]
    want_tensors = "callback_x0" in case
    steps_seen: list[list[int]] = []
    x0s: list[torch.Tensor] = []
    xs: list[torch.Tensor] = []

    def on_step(step: int, x0: torch.Tensor, x: torch.Tensor, total: int) -> None:
        steps_seen.append([step, total])
        if want_tensors:
            x0s.append(x0.detach().cpu().clone())
            xs.append(x.detach().cpu().clone())

    observer = Observer(on_step=on_step)
    problems: list[str] = []
    try:
        with observe(observer), use_profile(gs.profile):
            (out,) = getattr(node_cls(), node_cls.FUNCTION)(
                gs.model, positive=_conditioning(gs, inputs["positive"]),
                negative=_conditioning(gs, inputs["negative"]), latent_image=latent, **params)
    except ValueError as exc:
        if case["status"] == "error":
            expected_seed = str(params.get("seed", params.get("noise_seed")))
            if "seed" in str(exc) and expected_seed in str(exc):
                return CaseResult(cid, "passed")
            return CaseResult(cid, "failed", [f"error message does not name the seed: {exc}"])
        return CaseResult(cid, "failed", [f"raised {type(exc).__name__}: {exc}"])
    except Exception as exc:  # noqa: BLE001 - a failing case must not stop the run
        return CaseResult(cid, "failed", [f"raised {type(exc).__name__}: {exc}"])
    if case["status"] == "error":
        return CaseResult(cid, "failed", ["expected a ValueError naming the seed, got a result"])

    samples = out["samples"]
    ok, msg = compare(samples, gs.tensors[case["output"]])
    if not ok:
        problems.append(f"output: {msg}")
    if sorted(out.keys()) != sorted(case["output_latent_keys"]):
        problems.append(f"latent keys {sorted(out.keys())} != {sorted(case['output_latent_keys'])}")
    info = observer.runs[-1] if observer.runs else None
    used = case.get("sigmas_used")
    got = None if info is None or info.sigmas is None else info.sigmas
    if used is None:
        if got is not None:
            problems.append("sampled although the case returns its input unchanged")
    elif got is None or not same_floats(got.cpu(), _as_tensor(used)):
        problems.append(f"sigmas_used differ: {None if got is None else got.tolist()} vs {used}")
    if case.get("noise") and info is not None and info.noise is not None:
        if not torch.equal(info.noise, gs.tensors[case["noise"]]):
            problems.append("initial noise differs")
    if steps_seen != case["callback_steps"]:
        problems.append(f"callback steps {steps_seen[:4]}... ({len(steps_seen)}) != "
                        f"{case['callback_steps'][:4]}... ({len(case['callback_steps'])})")
    if want_tensors and x0s:
        for key, got_list in (("callback_x0", x0s), ("callback_x", xs)):
            ok, msg = compare(torch.stack(got_list), gs.tensors[case[key]])
            if not ok:
                problems.append(f"{key}: {msg}")
    return CaseResult(cid, "failed" if problems else "passed", problems, samples)


@dataclass
class ScheduleReport:
    problems: list[str] = field(default_factory=list)
    checked: int = 0
    bit_exact: int = 0


def schedule_report(gs: GoldenSet) -> ScheduleReport:
    """Every raw and KSampler-effective schedule of sigmas.json within 1 float32 ulp; counts the bit-exact ones."""
    report = ScheduleReport()
    if not gs.sigmas:
        return report
    table = gs.sigmas.get("model_sampling", {}).get("sigmas")
    ms = DiscreteModelSampling.scaled_linear()

    def check(got: torch.Tensor, values: list, what: str) -> None:
        ref = _as_tensor(values)
        report.checked += 1
        if same_floats(got, ref):
            report.bit_exact += 1
        elif not within_ulp(got, ref):
            report.problems.append(f"{what} differs by more than 1 ulp")

    if table is not None:
        check(ms.sigmas, table, "model sigma table")
    for name, by_steps in gs.sigmas.get("raw", {}).items():
        for steps, values in by_steps.items():
            check(calculate_sigmas(ms, name, int(steps)), values, f"raw schedule {name}/{steps}")
    samplers = {"regular": "euler", "discard_penultimate": "dpm_2"}
    for name, kinds in gs.sigmas.get("ksampler", {}).items():
        for kind, entries in kinds.items():
            for e in entries:
                check(ksampler_sigmas(ms, name, discards_penultimate(samplers[kind]), e["steps"], e["denoise"]), e["sigmas"],
                      f"ksampler schedule {name}/{kind}/steps={e['steps']}/denoise={e['denoise']}")
    for e in gs.sigmas.get("timestep_examples", []):
        if float(ms.timestep(torch.tensor(e["sigma"], dtype=torch.float32))) != float(e["t"]):
            report.problems.append(f"timestep({e['sigma']}) != {e['t']}")
    return report


def check_schedules(gs: GoldenSet) -> list[str]:
    return schedule_report(gs).problems


def check_relations(gs: GoldenSet, outputs: dict[str, torch.Tensor]) -> list[str]:
    """The recorded cross-case checks must hold for our outputs too (equal stays equal, a material
    difference stays material)."""
    problems = []
    for chk in gs.checks:
        a, b = outputs.get(chk["a"]), outputs.get(chk["b"])
        if a is None or b is None:
            continue
        close, _ = compare(a, b)
        if chk.get("bitwise_equal") and not torch.equal(a, b):
            problems.append(f"check {chk['check']}: {chk['a']} and {chk['b']} should be bitwise equal")
        elif chk.get("allclose_1e-4") and not close:
            problems.append(f"check {chk['check']}: {chk['a']} and {chk['b']} should agree within tolerance")
        elif not chk.get("allclose_1e-4") and close:
            problems.append(f"check {chk['check']}: {chk['a']} and {chk['b']} should differ materially")
    return problems


def run_golden(root: str | Path, only: str | None = None, verbose: bool = False,
               out=None) -> tuple[int, int, int, list[CaseResult]]:
    out = sys.stdout if out is None else out
    gs = GoldenSet.load(root)
    results = []
    outputs: dict[str, torch.Tensor] = {}
    for case in gs.cases:
        if only and only not in case["id"]:
            continue
        res = run_case(gs, case)
        results.append(res)
        if res.output is not None:
            outputs[res.id] = res.output
        if res.status != "passed" and (verbose or res.status == "failed"):
            print(f"{res.status.upper()} {res.id}: {'; '.join(res.problems)}", file=out)
    extra = []
    if not only:
        report = schedule_report(gs)
        extra = report.problems + check_relations(gs, outputs)
        print(f"schedules: {report.checked} checked, {report.bit_exact} bit-exact, "
              f"{report.checked - report.bit_exact - len(report.problems)} within 1 ulp, "
              f"{len(report.problems)} further apart ({gs.profile.label} profile)", file=out)
    for p in extra:
        print(f"FAILED {p}", file=out)
    passed = sum(r.status == "passed" for r in results)
    failed = sum(r.status == "failed" for r in results) + len(extra)
    skipped = [r for r in results if r.status == "skipped"]
    if skipped:
        names = sorted({p for r in skipped for p in r.problems})
        print(f"skipped {len(skipped)} cases: {'; '.join(names)}", file=out)
    return passed, failed, len(skipped), results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stepwise_sampler.golden", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="a directory in the golden format")
    parser.add_argument("--only", help="run only cases whose id contains this text")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    start = time.perf_counter()
    try:
        passed, failed, skipped, _ = run_golden(args.directory, args.only, args.verbose)
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as exc:
        print(f"golden: cannot read {args.directory}: {exc}", file=sys.stderr)
        return 2
    print(f"({time.perf_counter() - start:.1f} s)")
    print(f"golden: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
