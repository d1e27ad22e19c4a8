"""UniPC: unified predictor-corrector multistep solver in data prediction, B(h) variants
bh1 and bh2 (Zhao et al. 2023, arXiv:2302.04867), in ComfyUI's sigma parametrisation."""
from __future__ import annotations

import torch
from tqdm.auto import trange

from .steps import append_dims


class _VPSchedule:
    """alpha_t, sigma_t and lambda_t of the VP process whose VE sigma is the argument."""

    @staticmethod
    def log_alpha(sigma):
        return 0.5 * torch.log(1 / ((sigma * sigma) + 1))

    def alpha(self, sigma):
        return torch.exp(self.log_alpha(sigma))

    def std(self, sigma):
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_alpha(sigma)))

    def lam(self, sigma):
        log_alpha = self.log_alpha(sigma)
        return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))


def _orders(steps: int, order: int) -> list[int]:
    """The order of the update that lands on point j (index j - 1): warm-up below ``order``, lower order
    on the final steps."""
    return [j if j < order else min(order, steps + 1 - j) for j in range(1, steps + 1)]


class _Plan:
    """Every coefficient of one UniPC run, formed before the step loop: they depend only on the schedule.

    The float32 operations are ComfyUI's per-step ones, vectorised across the steps of equal order
    (elementwise IEEE arithmetic, the same unary kernels and one batched LU solve), so the numbers are
    unchanged while the loop keeps only the latent-sized work."""

    def __init__(self, timesteps: torch.Tensor, batch: int, ndim: int, variant: str, order: int) -> None:
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"uni_pc: unknown variant {variant!r}")
        ns = _VPSchedule()
        steps = len(timesteps) - 1
        log_alpha = ns.log_alpha(timesteps)
        e2 = torch.exp(2.0 * log_alpha)
        alpha, std = torch.exp(log_alpha), torch.sqrt(1.0 - e2)
        lam = log_alpha - 0.5 * torch.log(1.0 - e2)
        tail = (1,) * (ndim - 1)

        def per_batch(v: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, batch, 1, ...): one select per use
            return v.view(-1, 1).expand(len(v), batch).reshape((len(v), batch) + tail)

        self.t = [timesteps[i].expand(batch) for i in range(len(timesteps))]
        self.sigma, self.ve_scale = per_batch(timesteps), per_batch((timesteps ** 2 + 1.0) ** 0.5)
        self.alpha, self.alpha_b, self.std_b = alpha, per_batch(alpha), per_batch(std)

        half = torch.tensor([0.5], device=timesteps.device)
        self.step: list[tuple | None] = [None] * (steps + 1)
        orders = _orders(steps, order) if order > 0 else []  # one step: a single evaluation, no update
        for o in sorted(set(orders)):
            js = [j for j, oj in zip(range(1, steps + 1), orders) if oj == o]
            idx = torch.tensor(js, device=timesteps.device)
            lam_0 = lam[idx - 1]
            h = lam[idx] - lam_0
            rks = [(lam[idx - 1 - k] - lam_0) / h for k in range(1, o)]
            rks = torch.stack(rks + [torch.ones_like(h)], dim=1)
            hh = -h
            h_phi_1 = torch.expm1(hh)
            h_phi_k = h_phi_1 / hh - 1
            b_h = hh if variant == "bh1" else torch.expm1(hh)
            rows, b = [], []
            factorial = 1
            for k in range(1, o + 1):
                rows.append(torch.pow(rks, k - 1))
                b.append(h_phi_k * factorial / b_h)
                factorial *= k + 1
                h_phi_k = h_phi_k / hh - 1 / factorial
            R, b = torch.stack(rows, dim=1), torch.stack(b, dim=1)
            rhos_p = torch.linalg.solve(R[:, :-1, :-1], b[:, :-1]) if o == 3 else None
            rhos_c = torch.linalg.solve(R, b) if o > 1 else None
            x_scale = per_batch(std[idx] / std[idx - 1])
            m_scale = per_batch(alpha[idx] * h_phi_1)
            b_scale = per_batch(alpha[idx] * b_h)
            for row, j in enumerate(js):
                self.step[j] = (x_scale[row], m_scale[row], b_scale[row], [rks[row, k] for k in range(o - 1)],
                                half if rhos_p is None else rhos_p[row], half if rhos_c is None else rhos_c[row])


class _UniPC:
    def __init__(self, model, extra_args: dict, plan: _Plan, history: int) -> None:
        self.model, self.extra_args, self.plan, self.history = model, extra_args, plan, history

    def data_prediction(self, x_vp, i: int):
        """x0 from the VP sample at point i: the model sees x_vp * sqrt(1 + sigma^2) at sigma t."""
        plan = self.plan
        x_ve = x_vp * plan.ve_scale[i]
        eps = (x_ve - self.model(x_ve, plan.t[i], **self.extra_args)) / plan.sigma[i]
        return (x_vp - plan.std_b[i] * eps) / plan.alpha_b[i]

    def update(self, box: list, model_prev: list, j: int, order: int, use_corrector: bool):
        """One predictor(-corrector) step onto point j; ``box`` holds the only reference to the sample.

        ``model_prev`` is the caller's history: once a full history has given its differences, its oldest
        prediction is retired here, before the model call, rather than after the step."""
        x = box.pop()
        x_scale, m_scale, b_scale, rks, rhos_p, rhos_c = self.plan.step[j]
        model_prev_0 = model_prev[-1]
        d1s = [(model_prev[-(k + 1)] - model_prev_0) / rks[k - 1] for k in range(1, order)]
        D1s = torch.stack(d1s, dim=1) if d1s else None
        del d1s  # keep only the stacked copy
        if len(model_prev) == self.history > 1:
            del model_prev[0]
        x_t_ = x_scale * x - m_scale * model_prev_0
        del x  # the caller handed over its reference: the old sample is freed before the model call
        pred_res = torch.tensordot(D1s, rhos_p, dims=([1], [0])) if D1s is not None else 0
        x_t = x_t_ - b_scale * pred_res
        del pred_res

        model_t = None
        if use_corrector:
            # the history part of the correction does not depend on the new evaluation: form it first and
            # free the stacked differences before the model runs
            corr_res = torch.tensordot(D1s, rhos_c[:-1], dims=([1], [0])) if D1s is not None else 0
            del D1s
            model_t = self.data_prediction(x_t, j)
            x_t = x_t_ - b_scale * (corr_res + rhos_c[-1] * (model_t - model_prev_0))
        return x_t, model_t


@torch.no_grad()
def sample_unipc(model, x, sigmas, extra_args=None, callback=None, disable=False, variant="bh1"):
    """UniPC multistep, order min(3, steps-1), lower order on the final steps (Zhao et al. 2023)."""
    extra_args = {} if extra_args is None else extra_args
    if len(sigmas) <= 1:
        return x
    # ComfyUI writes the final 0 -> 0.001 into the sigma tensor it was handed (a view); callers that
    # use sigmas[-1] afterwards (flow models' inverse noise scaling) see that, so we do the same.
    timesteps = sigmas[:]
    if float(sigmas[-1]) == 0:
        timesteps[-1] = 0.001
    steps = len(timesteps) - 1
    order = min(3, len(timesteps) - 2)
    plan = _Plan(timesteps, x.shape[0], x.ndim, variant, order)
    solver = _UniPC(model, extra_args, plan, order)
    x = x / torch.sqrt(1.0 + timesteps[0] ** 2.0)

    def report(i, x_vp, j, denoised):
        if callback is not None:
            t = timesteps[j]
            callback({"x": x_vp / plan.alpha[j], "i": i, "denoised": denoised, "sigma": t, "sigma_hat": t})

    model_prev: list[torch.Tensor] = []
    j_prev = 0
    for step_index in trange(steps, disable=disable):
        if step_index == 0:
            model_prev = [solver.data_prediction(x, 0)]
        elif step_index < order:
            box = [x]
            del x
            x, model_x = solver.update(box, model_prev, step_index, step_index, use_corrector=True)
            model_prev.append(solver.data_prediction(x, step_index) if model_x is None else model_x)
            j_prev = step_index
        else:
            last = step_index + (2 if step_index == steps - 1 else 1)
            for step in range(step_index, last):
                step_order = min(order, steps + 1 - step)
                box = [x]
                del x
                x, model_x = solver.update(box, model_prev, step, step_order, use_corrector=step != steps)
                j_prev = step
                if step < steps:
                    model_prev.append(solver.data_prediction(x, step) if model_x is None else model_x)
                    del model_prev[:-order]  # the last `order` predictions
        report(step_index, x, j_prev, model_prev[-1])
    return x / plan.alpha[-1]


@torch.no_grad()
def sample_unipc_bh2(model, x, sigmas, extra_args=None, callback=None, disable=False):
    """UniPC with the B(h) = e^h - 1 variant (Zhao et al. 2023)."""
    return sample_unipc(model, x, sigmas, extra_args, callback, disable, variant="bh2")
