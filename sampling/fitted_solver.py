"""Fitted solvers: the step sigmas *and* each step's coefficients fitted to the model at hand, within a budget of
model calls (a few steps that land where a long, accurate run lands).

The solver family is the linear multistep one in data prediction with an exact linear part: with predictions
``D_j = D(x_j, s_j)``,

    x_{i+1} = (s_{i+1} / s_i) x_i + sum_{j = i-m}^{i} c_{ij} D_j,        and the last step  x_N = sum_j c_{N-1,j} D_j,

which holds DDIM/Euler (one term), DPM-Solver++(2M) and (3M) (two and three terms with the exponential
integrator's weights) as special cases: a *base* sampler gives the starting coefficients. The fit:

1. **Teacher** (:func:`teacher_run`): UniPC over a fine Karras grid from the calibration noise; every model call's
   input and output is kept (each ``(x_k, D_k)`` pair exactly consistent), and the final sample is the target.
2. **Step candidates** on the teacher's grid: exact dynamic programming (:func:`dp_steps`, after OSS, Optimal
   Stepsize Sampling, Pei et al. 2025): the N points, each step a teacher-forced DPM-Solver++(2M) update, minimising
   the sum of the steps' local errors against the teacher's states plus the last prediction's error against the
   target (a quadratic form in Gram matrices of the teacher's states and predictions: no model call); and
   Karras-like ramps (rho 5, 7, 9; three smallest sigmas) snapped to the grid. Measured: the DP alone, with local
   errors unweighted, spends its steps badly (one long last step); the ramps with fitted coefficients win on the
   smooth test model, so every candidate is fitted and the best on held-out draws is kept.
3. **Coefficients** (:func:`fit_coefficients`): the student runs its own steps on the calibration draws; at each step
   the coefficients are the least-squares fit (ridge towards the base sampler's) of the teacher's state at the next
   sigma (of the target at the last step): linear, closed form, one model call per step (as S4S / "bespoke"
   solvers distil coefficients from a teacher; here step by step and scalar per step, so ~10 draws suffice).
4. **Held out**: the draws are split; the coefficients are fitted on one half and judged on the other against the
   same steps with the base coefficients and against Karras steps with the base sampler. A fit that does not
   beat them there falls back (visibly: ``report["fallback"]``).

The fitted run costs one model call per step, like the base multistep sampler. Deterministic; never more than
``max_calls`` denoiser calls in all, teacher included.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy
import torch
from tqdm.auto import trange

from ..schedulers.schedules import karras_ramp
from .budget import Budget as _Budget, Counted as _Counted, sigma_range, watched


__all__ = ["FittedSolver", "fit_solver", "sample_fitted", "BASE_SOLVERS", "teacher_run", "dp_steps",
           "fit_coefficients", "base_coefficients"]

#: base samplers (their order in the family) whose coefficients start the fit: Euler/DDIM, DPM-Solver++(2M), the
#: RES multistep (2M with the exact phi_2), DPM-Solver++(3M)
BASE_SOLVERS = {"euler": 1, "dpmpp_2m": 2, "res_multistep": 2, "dpmpp_3m": 3}
HISTORY = 3  # the fitted rows may use up to this many earlier predictions besides the current one


# --- the solver family ------------------------------------------------------------------------------------------
def _lam(s: float) -> float:
    return -math.log(s)


def base_coefficients(sigmas: list[float], base: str) -> list[list[float]]:
    """Rows ``c_i`` (the weights of D_i, D_{i-1}, ...) of a base sampler in the family, for ``sigmas`` ending in 0;
    lower order where the history is short, as the samplers themselves."""
    order = BASE_SOLVERS[base]
    rows: list[list[float]] = []
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        if s_next == 0:
            rows.append([1.0])  # the prediction itself
            continue
        h = _lam(s_next) - _lam(s)
        phi_1 = -math.expm1(-h)  # 1 - e^-h: a first-order exponential step's weight
        k = min(order, i + 1)
        if k == 1:
            rows.append([phi_1])
            continue
        r0 = (_lam(s) - _lam(sigmas[i - 1])) / h
        if k == 2 and base == "dpmpp_2m":
            rows.append([phi_1 * (1 + 1 / (2 * r0)), -phi_1 / (2 * r0)])
            continue
        phi_2 = 1 - phi_1 / h  # (e^-h - 1)/h + 1
        if k == 2:  # RES / DPM-Solver++(3M)'s second-order start: the first divided difference, exact phi_2
            rows.append([phi_1 + phi_2 / r0, -phi_2 / r0])
            continue
        r1 = (_lam(sigmas[i - 1]) - _lam(sigmas[i - 2])) / h
        phi_3 = phi_2 / h - 0.5
        d1_0 = [1 / r0, -1 / r0, 0.0]
        d1_1 = [0.0, 1 / r1, -1 / r1]
        d1 = [d1_0[j] + (d1_0[j] - d1_1[j]) * r0 / (r0 + r1) for j in range(3)]
        d2 = [(d1_0[j] - d1_1[j]) / (r0 + r1) for j in range(3)]
        rows.append([phi_1 * (j == 0) + phi_2 * d1[j] - phi_3 * d2[j] for j in range(3)])  # DPM-Solver++(3M)
    return rows


def _step(x: torch.Tensor, preds: list[torch.Tensor], s: float, s_next: float, row: list[float]) -> torch.Tensor:
    """One step of the family: ``row`` weighs the latest predictions (preds[-1] first)."""
    out = x * (s_next / s) if s_next > 0 else torch.zeros_like(x)
    for k, c in enumerate(row):
        out = out + c * preds[-1 - k]
    return out


@torch.no_grad()
def sample_fitted(model, x, sigmas, extra_args=None, callback=None, disable=None, fitted_sigmas=(), coefficients=(),
                  base="dpmpp_2m"):
    """A fitted solver (:func:`fit_solver`): its own steps and per-step coefficients; one model call per step.
    ``sigmas`` must be the fitted ones or a contiguous part of them (a KSampler Advanced slice)."""
    wanted = [float(v) for v in sigmas.tolist()]
    fitted = [float(v) for v in fitted_sigmas]
    start = _find_slice(wanted, fitted)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    preds: list[torch.Tensor] = []
    base_rows = base_coefficients(wanted if wanted[-1] == 0 else wanted + [0.0], base)
    for i in trange(len(wanted) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        preds.append(denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        row = list(coefficients[start + i]) if start + i < len(coefficients) else base_rows[i]
        if len(row) > len(preds):  # started part-way: no history before the slice, the base step instead
            row = base_rows[i]
        x = _step(x, preds, wanted[i], wanted[i + 1], row)
        if len(preds) > HISTORY + 1:
            preds.pop(0)
    return x


def _find_slice(wanted: list[float], fitted: list[float]) -> int:
    """Where ``wanted`` starts inside ``fitted`` (float32 values compared exactly, a leftover end allowed)."""
    f32 = lambda v: float(numpy.float32(v))  # noqa: E731
    w, f = [f32(v) for v in wanted], [f32(v) for v in fitted]
    for start in range(len(f)):
        end = start + len(w)
        if end <= len(f) and f[start:end] == w:
            return start
        if end <= len(f) and f[start:end - 1] == w[:-1] and w[-1] == 0.0:  # an early stop, finished
            return start
    raise ValueError(f"sigmas: this fitted solver runs only the sigmas it was fitted with ({len(fitted) - 1} steps "
                     f"from {fitted[0]:.4g}) or a part of them; connect Fit Solver's SIGMAS output to the same "
                     f"sampler node")


# --- the fit ----------------------------------------------------------------------------------------------------
@dataclass
class Teacher:
    sigmas: list[float]  # the grid the teacher called the model at (decreasing, no 0)
    states: torch.Tensor  # (T, B, ...) the model's inputs
    preds: torch.Tensor  # (T, B, ...) its outputs
    target: torch.Tensor  # (B, ...) the teacher's final sample
    calls: int


def _karras(n: int, smax: float, smin: float, rho: float = 7.0) -> list[float]:
    return [float(v) for v in karras_ramp(numpy.linspace(0, 1, n), smax, smin, rho)]


def teacher_run(denoiser: Callable, noise: torch.Tensor, sigma_max: float, sigma_min: float, steps: int,
                extra_args: dict) -> Teacher:
    """UniPC over ``steps`` Karras sigmas (rho 7) from ``noise * sigma_max``; every call's input and output kept."""
    grid = _karras(steps, sigma_max, sigma_min)
    grid[0] = sigma_max
    sig = torch.tensor(grid + [0.0], dtype=torch.float32, device=noise.device)
    states, preds, at = [], [], []

    def logged(x, sigma, **kw):
        out = denoiser(x, sigma, **kw)
        states.append(x.detach().float().cpu())
        preds.append(out.detach().float().cpu())
        at.append(float(sigma.reshape(-1)[0]))
        return out

    from .unipc import sample_unipc

    x0 = sample_unipc(logged, noise * sig[0], sig.clone(), extra_args=dict(extra_args), callback=None, disable=True)
    return Teacher(at, torch.stack(states), torch.stack(preds), x0.detach().float().cpu(), len(at))


def _gram(a: torch.Tensor, b: torch.Tensor) -> numpy.ndarray:
    return (a.flatten(1).double() @ b.flatten(1).double().T).numpy()


def dp_steps(teacher: Teacher, n: int, draws: slice, terminal_weight: float = 1.0) -> list[int]:
    """The teacher-grid indices of the N evaluated points (0 first) minimising the summed local errors of
    teacher-forced DPM-Solver++(2M) steps plus ``terminal_weight`` times the last prediction's error (see the module
    docstring)."""
    if n == 1:
        return [0]
    X = teacher.states[:, draws].flatten(1)
    D = teacher.preds[:, draws].flatten(1)
    y = teacher.target[draws].flatten()[None]
    XX, XD, DD = _gram(X, X), _gram(X, D), _gram(D, D)
    Dy = _gram(D, y)[:, 0]
    yy = float((y.double() ** 2).sum())
    lam = -numpy.log(numpy.asarray(teacher.sigmas, dtype=numpy.float64))
    return _backtrack(teacher, n, draws, terminal_weight, XX, XD, DD, Dy, yy, lam)


def _backtrack(teacher, n, draws, terminal_weight, XX, XD, DD, Dy, yy, lam) -> list[int]:
    """The DP again, keeping the arg-min pointers, and the path it selects."""
    T = len(teacher.sigmas)
    inf = numpy.inf
    idx = numpy.arange(T)
    f = numpy.full((T, T), inf)
    for l in range(1, T):
        a = numpy.exp(lam[0] - lam[l])
        b = -numpy.expm1(lam[0] - lam[l])
        f[0, l] = XX[l, l] + a * a * XX[0, 0] + b * b * DD[0, 0] - 2 * a * XX[l, 0] - 2 * b * XD[l, 0] + \
            2 * a * b * XD[0, 0]
    pointers = []
    for _ in range(n - 2):
        g = numpy.full((T, T), inf)
        ptr = numpy.full((T, T), -1, dtype=numpy.int64)
        for c in range(1, T - 1):
            ps = idx[:c][numpy.isfinite(f[:c, c])]
            if len(ps) == 0:
                continue
            ls = idx[c + 1:]
            h = lam[ls][None, :] - lam[c]
            r = (lam[c] - lam[ps])[:, None] / h
            a = numpy.exp(-h)
            w = -numpy.expm1(-h)
            bc = w * (1 + 1 / (2 * r))
            bp = -w / (2 * r)
            cost = (XX[ls, ls][None, :] + a * a * XX[c, c] + bc * bc * DD[c, c] + bp * bp * DD[ps, ps][:, None]
                    - 2 * a * XX[ls, c][None, :] - 2 * bc * XD[ls, c][None, :] - 2 * bp * XD[ls[None, :], ps[:, None]]
                    + 2 * a * bc * XD[c, c] + 2 * a * bp * XD[c, ps][:, None] + 2 * bc * bp * DD[c, ps][:, None])
            total = f[ps, c][:, None] + cost
            k = total.argmin(0)
            g[c, ls] = total[k, numpy.arange(len(ls))]
            ptr[c, ls] = ps[k]
        f = g
        pointers.append(ptr)
    term = terminal_weight * (DD.diagonal() - 2 * Dy + yy)
    total = f + term[None, :]
    p, c = numpy.unravel_index(numpy.argmin(total), total.shape)
    path = [int(c), int(p)]
    for ptr in reversed(pointers):
        prev = ptr[path[-1], path[-2]]
        path.append(int(prev))
    path = path[::-1]
    if path[0] != 0:  # the recursion always starts at the grid's first point
        path = [0] + path[1:]
    return path


def fit_coefficients(denoiser: Callable, noise: torch.Tensor, sigmas: list[float], teacher: Teacher,
                     grid_index: list[int], fit: slice, base: str, history: int = HISTORY, ridge: float = 1e-3,
                     extra_args: dict | None = None, on_step: Callable | None = None):
    """The student's own run over ``sigmas`` on every draw, fitting each step's row on the ``fit`` draws (see the
    module docstring). Returns (rows, the final samples of every draw, the base sampler's samples' targets)."""
    extra_args = dict(extra_args or {})
    base_rows = base_coefficients(sigmas, base)
    x = noise * sigmas[0]
    s_in = x.new_ones([x.shape[0]])
    preds: list[torch.Tensor] = []
    rows: list[list[float]] = []
    n = len(sigmas) - 1
    for i in range(n):
        preds.append(denoiser(x, torch.tensor(sigmas[i], device=x.device) * s_in, **extra_args))
        if on_step is not None:
            on_step(i)
        target = teacher.target if sigmas[i + 1] == 0 else teacher.states[grid_index[i + 1]]
        target = target.to(x.device)
        k = min(history + 1, len(preds))
        linear = x * (sigmas[i + 1] / sigmas[i]) if sigmas[i + 1] > 0 else torch.zeros_like(x)
        resid = (target - linear)[fit].flatten(1).double()
        basis = torch.stack([p[fit].flatten(1).double() for p in reversed(preds[-k:])], -1)  # (B, M, k)
        A = basis.reshape(-1, k)
        b = resid.reshape(-1)
        prior = torch.tensor((base_rows[i] + [0.0] * k)[:k], dtype=torch.float64)
        gram = A.T @ A
        lam_ridge = ridge * float(gram.diagonal().mean())
        coef = torch.linalg.solve(gram + lam_ridge * torch.eye(k, dtype=torch.float64),
                                  A.T @ b + lam_ridge * prior)
        row = [float(v) for v in coef]
        rows.append(row)
        x = _step(x, preds, sigmas[i], sigmas[i + 1], row)
    return rows, x


def _run(denoiser: Callable, noise: torch.Tensor, sigmas: list[float], rows: list[list[float]],
         extra_args: dict) -> torch.Tensor:
    x = noise * sigmas[0]
    s_in = x.new_ones([x.shape[0]])
    preds: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        preds.append(denoiser(x, torch.tensor(sigmas[i], device=x.device) * s_in, **extra_args))
        x = _step(x, preds, sigmas[i], sigmas[i + 1], rows[i])
    return x


@dataclass(frozen=True)
class FittedSolver:
    """A fitted solver: ``sigmas`` (steps + 1, ending in 0) and ``sampler``, a function with the k-diffusion
    signature ``fn(model, x, sigmas, extra_args, callback, disable)`` that runs them with the fitted coefficients;
    ``options`` are its keyword options as data (``sample_fitted``'s), ``report`` what the fit found and cost."""

    sigmas: torch.Tensor
    coefficients: tuple[tuple[float, ...], ...]
    base: str
    report: dict = field(default_factory=dict)

    @property
    def options(self) -> dict:
        return {"fitted_sigmas": tuple(float(v) for v in self.sigmas.tolist()), "coefficients": self.coefficients,
                "base": self.base}

    @property
    def sampler(self) -> Callable:
        opts = self.options

        def fitted(model, x, sigmas, extra_args=None, callback=None, disable=None):
            return sample_fitted(model, x, sigmas, extra_args, callback, disable, **opts)

        fitted.__doc__ = f"A fitted {len(self.coefficients)}-step solver (base {self.base})."
        return fitted


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).pow(2).mean().sqrt())


def fit_solver(denoiser: Callable, noise: torch.Tensor, steps: int, sampler_name: str = "dpmpp_2m", *,
               sigma_max: float, sigma_min: float, max_calls: int = 1000, teacher_steps: int = 120,
               extra_args: dict | None = None, interrupt: Callable[[], None] | None = None,
               progress: Callable[[int, int, torch.Tensor], None] | None = None) -> FittedSolver:
    """Fit the steps and the per-step coefficients of a ``steps``-call solver for ``denoiser`` (``D(x, sigma, **kw)
    -> x0``, sigma of shape (B,)) from calibration ``noise`` (unit variance, batch first, at least 2 draws: half fit,
    half judge). ``sampler_name`` is the base (euler, dpmpp_2m, dpmpp_3m, res_multistep, uni_pc, ipndm: their
    history length and starting coefficients). Returns a :class:`FittedSolver`. ``interrupt()`` is called before every
    model call (raise to stop); ``progress(calls, max_calls, prediction)`` after each."""

    sigma_max, sigma_min = sigma_range(sigma_max, sigma_min)
    if sampler_name not in BASE_SOLVERS:
        raise ValueError(f"sampler_name: {sampler_name!r} cannot be the base of a fitted solver; allowed: "
                         f"{', '.join(BASE_SOLVERS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 50:
        raise ValueError(f"steps: expected an integer in 1..50, got {steps!r}")
    if not (isinstance(noise, torch.Tensor) and noise.ndim >= 2 and noise.shape[0] >= 2 and noise.is_floating_point()):
        raise ValueError("noise: expected a float tensor of at least 2 calibration draws (batch first)")
    if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < teacher_steps + 3 * steps:
        raise ValueError(f"max_calls: {max_calls!r} leaves too few calls for a {teacher_steps}-step teacher and three "
                         f"{steps}-step runs")
    started = time.perf_counter()
    extra_args = dict(extra_args or {})
    calls = _Counted(watched(denoiser, max_calls, interrupt, progress), max_calls)
    counted = calls

    b = noise.shape[0]
    fit, judge = slice(0, (b + 1) // 2), slice((b + 1) // 2, b)
    teacher = teacher_run(counted, noise, sigma_max, sigma_min, teacher_steps, extra_args)
    target = teacher.target.to(noise.device)
    candidates: list[list[int]] = []
    # step candidates on the teacher's grid (so every step has the teacher's exact state as its target): the DP's
    # paths (the last prediction weighted as one step or as several) and Karras-like ramps (rho 5/7/9, three
    # smallest sigmas) snapped to the grid
    grid = numpy.asarray(teacher.sigmas)
    for weight in (1.0, 4.0):
        candidates.append(dp_steps(teacher, steps, fit, weight))
    for rho in (5.0, 7.0, 9.0):
        for low in (sigma_min, 3.5 * sigma_min, 7.0 * sigma_min):
            ramp = _karras(steps, sigma_max, min(low, sigma_max / 2), rho) if steps > 1 else [sigma_max]
            candidates.append([int(numpy.abs(grid - v).argmin()) for v in ramp])
    unique = []
    for path in candidates:
        if all(a < b for a, b in zip(path, path[1:])) and path not in unique:
            unique.append(path)
    results = []
    try:
        for path in unique:
            sig = [teacher.sigmas[k] for k in path] + [0.0]
            rows, fitted_out = fit_coefficients(counted, noise, sig, teacher, path, fit, sampler_name,
                                                history=HISTORY, extra_args=extra_args)
            results.append({"sigmas": sig, "rows": rows, "fitted": _rmse(fitted_out[judge], target[judge]),
                            "fitted_fit": _rmse(fitted_out[fit], target[fit])})
    except _Budget:
        pass
    chosen_plain = None
    if results:
        best = min(results, key=lambda r: r["fitted"])
        try:
            base_out = _run(counted, noise, best["sigmas"], base_coefficients(best["sigmas"], sampler_name),
                            extra_args)
            chosen_plain = _rmse(base_out[judge], target[judge])
        except _Budget:
            pass
    karras = _karras(steps, sigma_max, sigma_min) + [0.0] if steps > 1 else [sigma_max, 0.0]
    karras_rmse = None
    try:
        karras_out = _run(counted, noise, karras, base_coefficients(karras, sampler_name), extra_args)
        karras_rmse = _rmse(karras_out[judge], target[judge])
    except _Budget:
        pass
    fallback = None
    if not results:
        chosen = {"sigmas": karras, "rows": base_coefficients(karras, sampler_name), "fitted": karras_rmse}
        fallback = "no candidate fitted within the budget: Karras steps with the base coefficients"
    else:
        chosen = best
        if chosen_plain is not None and chosen["fitted"] > chosen_plain:  # the coefficients do not generalise
            chosen = {**best, "rows": base_coefficients(best["sigmas"], sampler_name), "fitted": chosen_plain}
            fallback = "the fitted coefficients did worse on the held-out draws: fitted steps, base coefficients"
        if karras_rmse is not None and chosen["fitted"] > karras_rmse:
            chosen = {"sigmas": karras, "rows": base_coefficients(karras, sampler_name), "fitted": karras_rmse}
            fallback = "the fit did worse than Karras steps on the held-out draws: Karras steps, base coefficients"
    base_rows = base_coefficients(chosen["sigmas"], sampler_name)
    moved = [float(numpy.abs(numpy.asarray(r + [0.0] * (len(q) - len(r))) -
                             numpy.asarray(q + [0.0] * (len(r) - len(q)))).sum())
             for r, q in zip(chosen["rows"], base_rows)]
    report = {"calls": calls.calls, "teacher_calls": teacher.calls, "seconds": round(time.perf_counter() - started, 3),
              "base": sampler_name, "held_out_rmse": chosen["fitted"], "karras_rmse": karras_rmse,
              "vs_karras": (karras_rmse / chosen["fitted"]) if karras_rmse and chosen["fitted"] else None,
              "same_steps_base_rmse": chosen_plain, "coefficient_moves": moved, "fallback": fallback,
              "candidates": len(results),
              "judged_draws": b - (b + 1) // 2}
    sigmas = torch.tensor(chosen["sigmas"], dtype=torch.float32)
    return FittedSolver(sigmas, tuple(tuple(r) for r in chosen["rows"]), sampler_name, report)
