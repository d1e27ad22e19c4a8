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


class _UniPC:
    def __init__(self, model, extra_args: dict, variant: str) -> None:
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"uni_pc: unknown variant {variant!r}")
        self.model, self.extra_args, self.variant = model, extra_args, variant
        self.ns = _VPSchedule()

    def data_prediction(self, x_vp, t):
        """x0 from the VP sample: the model sees x_vp * sqrt(1 + sigma^2) at sigma t."""
        sigma = t.view(t.shape[:1] + (1,) * (x_vp.ndim - 1))
        x_ve = x_vp * ((sigma ** 2 + 1.0) ** 0.5)
        eps = (x_ve - self.model(x_ve, t, **self.extra_args)) / sigma
        alpha_t, sigma_t = self.ns.alpha(t), self.ns.std(t)
        return (x_vp - append_dims(sigma_t, x_vp.ndim) * eps) / append_dims(alpha_t, x_vp.ndim)

    def update(self, box: list, model_prev, t_prev, t, order: int, use_corrector: bool):
        """One predictor(-corrector) step; ``box`` holds the only reference to the current sample."""
        x = box.pop()
        ns, nd = self.ns, x.ndim
        t_prev_0 = t_prev[-1]
        lambda_prev_0 = ns.lam(t_prev_0)
        lambda_t = ns.lam(t)
        model_prev_0 = model_prev[-1]
        sigma_prev_0, sigma_t = ns.std(t_prev_0), ns.std(t)
        alpha_t = torch.exp(ns.log_alpha(t))
        h = lambda_t - lambda_prev_0

        rks, d1s = [], []
        for k in range(1, order):
            rk = ((ns.lam(t_prev[-(k + 1)]) - lambda_prev_0) / h)[0]
            rks.append(rk)
            d1s.append((model_prev[-(k + 1)] - model_prev_0) / rk)
        rks.append(torch.ones((), dtype=h.dtype, device=h.device))
        rks = torch.stack(rks)

        hh = -h[0]
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = hh if self.variant == "bh1" else torch.expm1(hh)
        rows, b = [], []
        factorial = 1
        for k in range(1, order + 1):
            rows.append(torch.pow(rks, k - 1))
            b.append(h_phi_k * factorial / b_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        R = torch.stack(rows)
        b = torch.stack(b)

        D1s = torch.stack(d1s, dim=1) if d1s else None
        del d1s  # keep only the stacked copy
        x_t_ = append_dims(sigma_t / sigma_prev_0, nd) * x - append_dims(alpha_t * h_phi_1, nd) * model_prev_0
        del x  # the caller handed over its reference: the old sample is freed before the model call
        if D1s is not None:
            rhos_p = torch.tensor([0.5], device=b.device) if order == 2 else torch.linalg.solve(R[:-1, :-1], b[:-1])
            pred_res = torch.tensordot(D1s, rhos_p, dims=([1], [0]))
        else:
            pred_res = 0
        x_t = x_t_ - append_dims(alpha_t * b_h, nd) * pred_res
        del pred_res

        model_t = None
        if use_corrector:
            rhos_c = torch.tensor([0.5], device=b.device) if order == 1 else torch.linalg.solve(R, b)
            # the history part of the correction does not depend on the new evaluation: form it first and
            # free the stacked differences before the model runs
            corr_res = torch.tensordot(D1s, rhos_c[:-1], dims=([1], [0])) if D1s is not None else 0
            del D1s
            model_t = self.data_prediction(x_t, t)
            x_t = x_t_ - append_dims(alpha_t * b_h, nd) * (corr_res + rhos_c[-1] * (model_t - model_prev_0))
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
    solver = _UniPC(model, extra_args, variant)
    ns = solver.ns
    batch = x.shape[0]
    x = x / torch.sqrt(1.0 + timesteps[0] ** 2.0)
    steps = len(timesteps) - 1
    order = min(3, len(timesteps) - 2)

    def report(i, x_vp, t, denoised):
        if callback is not None:
            callback({"x": x_vp / ns.alpha(t), "i": i, "denoised": denoised, "sigma": t, "sigma_hat": t})

    model_prev: list[torch.Tensor] = []
    t_prev: list[torch.Tensor] = []
    for step_index in trange(steps, disable=disable):
        if step_index == 0:
            vec_t = timesteps[0].expand(batch)
            model_prev = [solver.data_prediction(x, vec_t)]
            t_prev = [vec_t]
        elif step_index < order:
            vec_t = timesteps[step_index].expand(batch)
            box = [x]
            del x
            x, model_x = solver.update(box, model_prev, t_prev, vec_t, step_index, use_corrector=True)
            model_prev.append(solver.data_prediction(x, vec_t) if model_x is None else model_x)
            t_prev.append(vec_t)
        else:
            last = step_index + (2 if step_index == steps - 1 else 1)
            for step in range(step_index, last):
                vec_t = timesteps[step].expand(batch)
                step_order = min(order, steps + 1 - step)
                box = [x]
                del x
                x, model_x = solver.update(box, model_prev, t_prev, vec_t, step_order, use_corrector=step != steps)
                model_prev[:-1], t_prev[:-1] = model_prev[1:], t_prev[1:]
                t_prev[-1] = vec_t
                if step < steps:
                    model_prev[-1] = solver.data_prediction(x, vec_t) if model_x is None else model_x
        report(step_index, x, t_prev[-1][0], model_prev[-1])
    return x / ns.alpha(timesteps[-1])


@torch.no_grad()
def sample_unipc_bh2(model, x, sigmas, extra_args=None, callback=None, disable=False):
    """UniPC with the B(h) = e^h - 1 variant (Zhao et al. 2023)."""
    return sample_unipc(model, x, sigmas, extra_args, callback, disable, variant="bh2")
