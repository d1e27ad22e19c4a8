"""``python -m bench``: Stepwise's benchmarks against peers measured in the same run.

Suites: overhead (null denoiser, ours vs k-diffusion and diffusers), limit (small UNet: total time
over model-forward time), sde (noise cost), accuracy (RMSE vs NFE on the demo model's exact
denoiser; distribution distance for stochastic samplers), preview (cost ratio), memory (peak live
tensors over the forward-only peak). Writes ``bench/results/*.json`` and PNG plots, prints tables.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from stepwise_sampler.sampling import SAMPLERS, StandaloneModel
from stepwise_sampler.sampling.registry import discards_penultimate
from stepwise_sampler.schedulers import DiscreteModelSampling, ksampler_sigmas

from .memory import PeakMemory
from .models import NullDenoiser, PeerCFG, SmallUNet

RESULTS = Path(__file__).resolve().parent / "results"
MS = DiscreteModelSampling.scaled_linear()


def timeit(fn, repeats: int) -> float:
    """Best wall time of ``fn()`` in seconds over ``repeats`` runs after one warm-up call.

    The minimum is the robust estimate on a shared machine: interference only ever adds time."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def paired(a, b, repeats: int) -> tuple[float, float]:
    """Best times of two functions measured alternately, so both see the same machine state."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return min(ta), min(tb)


class NullModel(StandaloneModel):
    """Our full path around the null denoiser: the same model work as the peer's (x * c(sigma))."""

    def __init__(self) -> None:
        super().__init__(lambda *a: None, MS, device="cpu", name="null")

    def apply_model(self, x, sigma, context):
        return x * (1.0 / (1.0 + sigma.view(-1, *([1] * (x.ndim - 1))) ** 2))


class SharedNoise:
    """A fixed noise tensor for any (sigma, sigma_next): the cheapest possible noise source."""

    def __init__(self, x) -> None:
        self.z = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))

    def __call__(self, sigma, sigma_next):
        return self.z


def _with(fn, kwargs: dict):
    if not kwargs:
        return fn
    return lambda *a, **kw: fn(*a, **{**kw, **kwargs})


def _conds(batch: int = 1):
    ctx = torch.randn(1, 8, 64, generator=torch.Generator().manual_seed(0))
    return [[ctx, {}]], [[ctx * 0.5, {}]]


# --- 1. overhead per step --------------------------------------------------------------------------------
def suite_overhead(args, peers) -> dict:
    from .peers import K_DIFFUSION_SHARED

    kd = peers.get("k_diffusion")
    steps = 20
    rows = []
    sizes = [64, 128] if not args.quick else [64]
    for size in sizes:
        for cfg in (1.0, 7.0):
            pos, neg = _conds()
            latent = torch.zeros(1, 4, size, size)
            x0 = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(1))
            null = NullDenoiser()
            peer_model = PeerCFG(lambda x, s, c: null(x, s), pos[0][0], neg[0][0], cfg)
            ours_model = NullModel()
            names = list(K_DIFFUSION_SHARED) if not args.quick else ["euler", "dpmpp_2m", "dpmpp_2m_sde"]
            for name in names:
                sigmas = ksampler_sigmas(MS, "karras", discards_penultimate(name), steps)
                # SDE samplers: both sides get the same cheap noise source, so the row measures the
                # samplers and not torchsde's Brownian tree (identical code on both sides; see the sde suite)
                shared = {"noise_sampler": SharedNoise(x0)} if name.endswith("sde") else {}

                def ours():
                    ours_model.sample(x0, latent, _with(SAMPLERS[name], shared), sigmas, pos, neg, cfg, seed=1)

                row = {"sampler": name, "size": size, "cfg": cfg, "noise": "shared" if shared else "own"}
                if kd is not None:
                    fn = getattr(kd, K_DIFFUSION_SHARED[name])

                    def peer():
                        torch.manual_seed(1)
                        fn(peer_model, x0 * sigmas[0], sigmas, extra_args={}, disable=True, **shared)

                    # cheap rows (a few ms each): three times the repeats, so the minimum settles
                    t_ours, t_kd = paired(ours, peer, 3 * args.repeats)
                    row["kdiff_us_per_step"] = 1e6 * t_kd / steps
                    row["ratio_vs_kdiff"] = t_ours / t_kd
                else:
                    t_ours = timeit(ours, args.repeats)
                row["ours_us_per_step"] = 1e6 * t_ours / steps
                rows.append(row)
                _progress(f"overhead {name} {size} cfg{cfg:g}: ours {row['ours_us_per_step']:.0f} us/step"
                          + (f", k-diffusion {row['kdiff_us_per_step']:.0f} ({row['ratio_vs_kdiff']:.2f}x)"
                             if "kdiff_us_per_step" in row else ""))
    diff_rows = suite_diffusers_overhead(args) if peers.get("diffusers") else []
    return {"rows": rows, "diffusers": diff_rows}


def suite_diffusers_overhead(args) -> list:
    """diffusers schedulers' per-step overhead (scale_model_input + step) with a null eps model."""
    from .peers import diffusers_schedulers

    rows = []
    steps, size = 20, 64
    x0 = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(1))
    for name, sched in diffusers_schedulers().items():
        if args.quick and name not in ("euler", "dpmpp_2m"):
            continue

        def run():
            sched.set_timesteps(steps)
            x = x0 * sched.init_noise_sigma
            for t in sched.timesteps:
                xin = sched.scale_model_input(x, t)
                eps = xin * 0.5
                x = sched.step(eps, t, x).prev_sample

        t = timeit(run, args.repeats)
        rows.append({"sampler": name, "size": size, "diffusers_us_per_step": 1e6 * t / steps})
        _progress(f"diffusers {name}: {1e6 * t / steps:.0f} us/step")
    return rows


# --- 2. ratio to the model-forward limit ------------------------------------------------------------------------
def _unet_model(size: int):
    torch.manual_seed(0)
    unet = SmallUNet().eval()
    params = sum(p.numel() for p in unet.parameters())
    model = StandaloneModel(lambda xc, t, ctx: unet(xc, t, ctx), MS, device="cpu", name="bench-unet")
    return unet, model, params


def suite_limit(args, peers) -> dict:
    size = 64
    unet, model, params = _unet_model(size)
    pos, neg = _conds()
    steps = 10 if args.quick else 20
    rows = []
    samplers = ["euler", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc"] if not args.quick else ["euler"]
    with torch.no_grad():
        for cfg in (7.0, 1.0):
            for name in samplers:
                sigmas = ksampler_sigmas(MS, "karras", discards_penultimate(name), steps)
                latent = torch.zeros(1, 4, size, size)
                noise = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(2))
                calls = []
                orig = model.apply_model

                def counting(x, sigma, context):
                    calls.append((x.shape, sigma.shape, context.shape))
                    return orig(x, sigma, context)

                model.apply_model = counting
                opts = {"sampler_options": {"noise_source": "fast"}} if name.endswith("_sde") else {}
                model.sample(noise, latent, SAMPLERS[name], sigmas, pos, neg, cfg, seed=1, **opts)
                model.apply_model = orig
                shapes = list(calls)
                inputs = [(torch.randn(s[0]), torch.full(s[1], 1.5), torch.randn(s[2])) for s in shapes]

                def forwards():
                    for x, s, c in inputs:
                        orig(x, s, c)

                def total():
                    model.sample(noise, latent, SAMPLERS[name], sigmas, pos, neg, cfg, seed=1, **opts)

                lim, tot = paired(forwards, total, args.repeats)
                # the same ratio inside one run: the run's wall time over the time spent in its own model
                # calls (no run-to-run noise; the forwards see exactly the run's inputs and cache state)
                inrun = []
                for _ in range(args.repeats):
                    spent = [0.0]

                    def timed(x, sigma, context):
                        t0 = time.perf_counter()
                        out = orig(x, sigma, context)
                        spent[0] += time.perf_counter() - t0
                        return out

                    model.apply_model = timed
                    t0 = time.perf_counter()
                    total()
                    inrun.append((time.perf_counter() - t0) / spent[0])
                    model.apply_model = orig
                rows.append({"sampler": name, "cfg": cfg, "steps": steps, "model_calls": len(shapes),
                             "total_s": tot, "t_lim_s": lim, "ratio": tot / lim, "ratio_in_run": min(inrun)})
                _progress(f"limit {name} cfg{cfg:g}: total/T_lim = {tot / lim:.4f} ({tot:.3f}s / {lim:.3f}s), "
                          f"in-run {min(inrun):.4f}")
    return {"unet_params": params, "size": size, "rows": rows}


# --- 3. SDE noise cost --------------------------------------------------------------------------------------------
def suite_sde(args, peers) -> dict:
    size, steps = 64, 20
    x0 = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(1))
    null = NullDenoiser()
    rows = []
    sig = ksampler_sigmas(MS, "karras", discards_penultimate("dpmpp_2m"), steps)
    # the ODE baseline does the same number of model evaluations per step: dpmpp_sde evaluates twice
    baselines = {"dpmpp_2m_sde": "dpmpp_2m", "dpmpp_3m_sde": "dpmpp_2m", "dpmpp_sde": "dpm_2"}
    for name in ("dpmpp_2m_sde", "dpmpp_sde", "dpmpp_3m_sde"):
        b = baselines[name]
        row = {"sampler": name, "ode_baseline": b}
        for source in ("brownian", "fast"):
            base, t = paired(lambda: SAMPLERS[b](null, x0 * sig[0], sig, extra_args={"seed": 1}, disable=True),
                             lambda: SAMPLERS[name](null, x0 * sig[0], sig, extra_args={"seed": 1}, disable=True,
                                                    noise_source=source), args.repeats)
            row["ode_us_per_step"] = 1e6 * base / steps
            row[f"{source}_us_per_step"] = 1e6 * t / steps
            row[f"{source}_vs_ode"] = t / base
        rows.append(row)
        _progress(f"sde {name}: brownian {row['brownian_vs_ode']:.1f}x, fast {row['fast_vs_ode']:.2f}x the ODE step")
    return {"rows": rows}


# --- 4. accuracy vs NFE on the exact denoiser ----------------------------------------------------------------------
DETERMINISTIC = ["euler", "heun", "heunpp2", "dpm_2", "lms", "dpmpp_2m", "ipndm", "ipndm_v", "deis", "res_multistep",
                 "gradient_estimation", "uni_pc", "uni_pc_bh2"]
STOCHASTIC = ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde",
              "ddpm", "lcm", "er_sde", "seeds_2", "sa_solver"]
SCHEDULES = ["karras", "exponential", "normal", "sgm_uniform"]
NFES = [5, 8, 10, 15, 20, 30]


class CountingDemo:
    def __init__(self, model) -> None:
        self.model = model
        self.calls = 0

    def sample(self, *a, **kw):
        return self.model.sample(*a, **kw)


def suite_accuracy(args, peers) -> dict:
    from stepwise_sampler.models.mixture import DemoModel
    from stepwise_sampler.models.world import DemoCLIP

    clip = DemoCLIP(notice=lambda m: None)
    size = 16 if args.quick else 32
    model = DemoModel()
    calls = [0]
    orig = model.apply_model

    def counted(x, sigma, context):
        calls[0] += 1
        return orig(x, sigma, context)

    model.apply_model = counted
    pos, neg = clip.encode("red circle"), clip.encode("")
    batch = 4
    latent = torch.zeros(batch, 4, size, size)
    noise = torch.randn(batch, 4, size, size, generator=torch.Generator().manual_seed(5))

    def run(name, scheduler, steps):
        calls[0] = 0
        sig = ksampler_sigmas(MS, scheduler, discards_penultimate(name), steps)
        out = model.sample(noise, latent, SAMPLERS[name], sig, pos, neg, 1.0, seed=3)
        return out, calls[0]

    results = {}
    schedules = SCHEDULES if not args.quick else ["karras"]
    samplers = DETERMINISTIC if not args.quick else ["euler", "dpmpp_2m", "uni_pc"]
    nfes = NFES if not args.quick else [5, 10]
    for scheduler in schedules:
        ref, _ = run("dpmpp_2m", scheduler, 2000 if not args.quick else 400)
        for name in samplers:
            pts = []
            for nfe in nfes:
                # the largest step count whose evaluation count stays within the budget
                best = None
                for steps in range(1, nfe + 1):
                    out, used = run(name, scheduler, steps)
                    if used <= nfe:
                        best = (out, used, steps)
                    else:
                        break
                if best is None:
                    continue
                out, used, steps = best
                rmse = ((out - ref) ** 2).mean().sqrt().item() * 0.18215  # in model space
                pts.append({"nfe": nfe, "used": used, "steps": steps, "rmse": rmse})
            results[f"{name}/{scheduler}"] = pts
            _progress(f"accuracy {name}/{scheduler}: " + ", ".join(f"{p['nfe']}:{p['rmse']:.2e}" for p in pts))
    dist = suite_distribution(args, model, clip)
    from .fitted import timed

    fitted = timed(args.quick, _progress)
    return {"size": size, "reference": "dpmpp_2m, 2000 steps of the same schedule", "rmse": results,
            "distribution": dist, "fitted": fitted}


def _sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 128) -> float:
    gen = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(a.shape[1], projections, generator=gen), dim=0)
    pa, pb = (a @ dirs).sort(0).values, (b @ dirs).sort(0).values
    return ((pa - pb) ** 2).mean().sqrt().item()


def suite_distribution(args, model, clip) -> dict:
    """Samples of every stochastic sampler (and a few deterministic ones) vs exact mixture samples."""
    from stepwise_sampler.models import mixture, world

    n, size = (32, 8) if args.quick else (128, 8)
    pos = clip.encode("circle")
    net = model.network
    ctx = pos[0][0]
    # exact samples: draw components by their prior weight, then the component Gaussian
    lw = net.log_weights(ctx)[0].reshape(-1)
    gen = torch.Generator().manual_seed(11)
    idx = torch.multinomial(torch.softmax(lw, 0), 2 * n, replacement=True, generator=gen)
    m = net.masks(size, size, "cpu")
    shape = lw.view(net.log_weights(ctx)[0].shape).shape
    exact = []
    for k in idx.tolist():
        j, a, g = torch.unravel_index(torch.tensor(k), shape)
        mu = m[j][None] * world.COLOUR_CODES[a][:, None, None] + (1 - m[j][None]) * world.BACKGROUND_CODES[g][:, None, None]
        v = m[j][None] * world.SATURATION_DIRS[a][:, None, None]
        v = v / v.norm()
        z = mu + mixture.COMPONENT_STD * torch.randn(mu.shape, generator=gen, dtype=torch.float64) + \
            mixture.SATURATION_STD * torch.randn((), generator=gen, dtype=torch.float64) * v
        exact.append(z.reshape(-1))
    exact = torch.stack(exact).float()
    floor = _sliced_wasserstein(exact[:n], exact[n:])
    rows = {"noise_floor": floor}
    noise = torch.randn(n, 4, size, size, generator=torch.Generator().manual_seed(12))
    latent = torch.zeros(n, 4, size, size)
    for name in STOCHASTIC + ["euler", "dpmpp_2m"]:
        if args.quick and name not in ("euler_ancestral", "dpmpp_2m_sde", "euler"):
            continue
        sig = ksampler_sigmas(MS, "karras", discards_penultimate(name), 20)
        out = model.sample(noise, latent, SAMPLERS[name], sig, pos, clip.encode(""), 1.0, seed=4)
        swd = _sliced_wasserstein((out * 0.18215).reshape(n, -1), exact[:n])
        rows[name] = swd
        _progress(f"distribution {name}: SWD {swd:.4f} (floor {floor:.4f})")
    return rows


# --- 5. preview cost ----------------------------------------------------------------------------------------------
def suite_preview(args, peers) -> dict:
    from stepwise_sampler.preview import PreviewConfig, PreviewHook, TAESDDecoder, make_decoder
    from stepwise_sampler.sampling import SD15

    size, steps = 64, 10 if args.quick else 20
    unet, model, _ = _unet_model(size)
    pos, neg = _conds()
    latent = torch.zeros(1, 4, size, size)
    noise = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(2))
    sigmas = ksampler_sigmas(MS, "karras", discards_penultimate("euler"), steps)
    torch.manual_seed(0)
    taesd = TAESDDecoder().eval()
    decoders = {"latent2rgb": make_decoder("latent2rgb", SD15), "taesd (random weights)": taesd}
    rows = []
    with torch.no_grad():
        def plain():
            model.sample(noise, latent, SAMPLERS["euler"], sigmas, pos, neg, 7.0, seed=1)

        for label, decoder in decoders.items():
            for every_step in (False, True):
                config = PreviewConfig(label, min_interval_ms=0 if every_step else 250)
                counter = []

                def with_preview():
                    hook = PreviewHook(decoder, lambda s, t, img: counter.append(img is not None), config)
                    model.sample(noise, latent, SAMPLERS["euler"], sigmas, pos, neg, 7.0, seed=1, callback=hook)

                base, withp = paired(plain, with_preview, args.repeats)
                shares = []
                for _ in range(args.repeats):  # in-run: the hook's own decode time over the run's time
                    counter.clear()
                    hook = PreviewHook(decoder, lambda s, t, img: counter.append(img is not None), config)
                    t0 = time.perf_counter()
                    model.sample(noise, latent, SAMPLERS["euler"], sigmas, pos, neg, 7.0, seed=1, callback=hook)
                    shares.append(hook.seconds / (time.perf_counter() - t0 - hook.seconds))
                shown = sum(counter)
                rows.append({"previewer": label,
                             "throttle": "no interval (2% budget only)" if every_step else "250 ms, 2% budget, last step",
                             "previews": shown, "base_s": base, "with_s": withp, "overhead_runs": withp / base - 1,
                             "overhead": min(shares)})
                _progress(f"preview {label} ({rows[-1]['throttle']}): {100 * min(shares):.2f}% in-run, "
                          f"{100 * (withp / base - 1):+.2f}% across runs ({shown} previews)")
    return {"rows": rows, "size": size, "steps": steps}


# --- 6. peak memory ---------------------------------------------------------------------------------------------
def suite_memory(args, peers) -> dict:
    size, steps = 64, 10
    unet, model, _ = _unet_model(size)
    pos, neg = _conds()
    latent = torch.zeros(1, 4, size, size)
    noise = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(2))
    latent_bytes = latent.numel() * 4
    rows = []
    with torch.no_grad():
        xin = torch.randn(2, 4, size, size)
        with PeakMemory() as fwd:
            model.apply_model(xin, torch.full((2,), 3.0), torch.cat([pos[0][0], neg[0][0]]))
        names = ["euler", "dpmpp_2m", "dpmpp_3m_sde", "uni_pc", "heun"] if not args.quick else ["euler"]
        for name in names:
            sigmas = ksampler_sigmas(MS, "karras", discards_penultimate(name), steps)
            opts = {"sampler_options": {"noise_source": "fast"}} if name.endswith("_sde") else {}
            with PeakMemory() as run:
                model.sample(noise, latent, SAMPLERS[name], sigmas, pos, neg, 7.0, seed=1, **opts)
            extra = (run.peak - fwd.peak) / latent_bytes
            rows.append({"sampler": name, "forward_peak_bytes": fwd.peak, "run_peak_bytes": run.peak,
                         "extra_latent_buffers": extra})
            _progress(f"memory {name}: peak = forward peak + {extra:.1f} latent-sized buffers")
    return {"rows": rows, "latent_bytes": latent_bytes}


def suite_sweep(args, peers) -> dict:
    """XY sweeps of N x N cells (demo model, 256 px): peak live tensor memory of the XY Plot (Stepwise) against a
    peer that keeps every decoded cell and concatenates the grid at the end (efficiency-nodes' XY Plot does),
    both beside their outputs (ours: the grid, its uint8 cells and the cells' LATENT; the peer: its grid)."""
    from stepwise_sampler.nodes import StepwiseKSamplerEfficient, StepwiseXYPlot
    from stepwise_sampler.nodes.scripts import CELL_CACHE
    from stepwise_sampler.models.mixture import DemoModel
    from stepwise_sampler.models.world import DemoCLIP, DemoVAE

    model, clip, vae = DemoModel(), DemoCLIP(notice=lambda m: None), DemoVAE()
    pos, neg = clip.encode("red circle on white background"), clip.encode("text")
    latent = {"samples": torch.zeros(1, 4, 32, 32)}
    node = StepwiseKSamplerEfficient()
    rows = []
    for n in ((2, 6) if args.quick else (2, 6, 12)):
        seeds, cfgs = f"0:{n - 1}", f"1:{n}"
        (plot,) = StepwiseXYPlot().script("seed", seeds, "cfg", cfgs)
        CELL_CACHE.clear()
        CELL_CACHE.max_bytes = 0  # keep one cell: the cache is bounded by design, not part of this measurement
        with torch.no_grad(), PeakMemory() as ours:
            res = node.sample(model, 0, 4, 7.0, "euler", "karras", pos, neg, latent, 1.0, "none", "true",
                              optional_vae=vae, script=plot)
        CELL_CACHE.max_bytes = 512 << 20
        # the outputs: the grid IMAGE, its cells kept as uint8 until it is drawn, and the cells' LATENT batch
        # (with the list it is concatenated from)
        grid_bytes = res["result"][5].numel() * 4 + n * n * 256 * 256 * 3 + 2 * res["result"][3]["samples"].numel() * 4
        del res
        with torch.no_grad(), PeakMemory() as peer:
            cells = []
            for cfg in range(1, n + 1):
                for seed in range(n):
                    out = node.sample(model, seed, 4, float(cfg), "euler", "karras", pos, neg, latent, 1.0, "none",
                                      "true", optional_vae=vae)
                    cells.append(out["result"][5])
            rows_img = [torch.cat(cells[r * n:(r + 1) * n], dim=2) for r in range(n)]
            peer_grid = torch.cat(rows_img, dim=1)
        peer_grid_bytes = peer_grid.numel() * 4
        del cells, rows_img, peer_grid
        row = {"cells": n * n, "ours_peak_bytes": ours.peak, "ours_grid_bytes": grid_bytes,
               "ours_working_bytes": ours.peak - grid_bytes, "peer_peak_bytes": peer.peak,
               "peer_grid_bytes": peer_grid_bytes, "peer_working_bytes": peer.peak - peer_grid_bytes,
               "ratio_peak_vs_peer": ours.peak / peer.peak}
        rows.append(row)
        _progress(f"sweep {n}x{n}: ours peak {ours.peak / 2**20:.1f} MiB (grid {grid_bytes / 2**20:.1f}), peer "
                  f"{peer.peak / 2**20:.1f} MiB (grid {peer_grid_bytes / 2**20:.1f}); ours/peer {row['ratio_peak_vs_peer']:.2f}")
    return {"rows": rows}


# --- driver -------------------------------------------------------------------------------------------------------
SUITES = {"overhead": suite_overhead, "limit": suite_limit, "sde": suite_sde, "accuracy": suite_accuracy,
          "preview": suite_preview, "memory": suite_memory, "sweep": suite_sweep}


def _progress(msg: str) -> None:
    print(f"  {msg}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", choices=[[]] + list(SUITES), default=[], metavar="SUITE",
                        help=f"run only these suites ({', '.join(SUITES)}); same as --suite")
    parser.add_argument("--suite", action="append", choices=list(SUITES), help="run only these suites")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (fewer configs)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    args.suite = (args.suite or []) + [name for name in args.suites if name] or None
    args.repeats = args.repeats or (2 if args.quick else 5)
    torch.set_num_threads(args.threads)
    peers = {}
    try:
        from .peers import load_k_diffusion_sampling

        peers["k_diffusion"] = load_k_diffusion_sampling()
    except Exception as exc:  # noqa: BLE001
        print(f"warning: k-diffusion peer unavailable ({exc}); its columns are left out", file=sys.stderr)
    try:
        import diffusers  # noqa: F401

        peers["diffusers"] = True
    except ImportError:
        print("warning: diffusers not installed (pip install -e .[bench]); its rows are left out", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "python": platform.python_version(),
            "machine": platform.machine(), "device": "cpu", "quick": args.quick, "repeats": args.repeats,
            "peers": sorted(peers)}
    results = {}
    for name in args.suite or list(SUITES):
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        results[name] = SUITES[name](args, peers)
        results[name]["seconds"] = time.perf_counter() - start
        (out / f"{name}.json").write_text(json.dumps({"meta": meta, **results[name]}, indent=1))
    from .report import plots, summary

    for name in SUITES:  # the summary keeps the suites not re-run this time
        saved = out / f"{name}.json"
        if name not in results and saved.exists():
            results[name] = json.loads(saved.read_text())
    text = summary(results, meta)
    print(text)
    (out / "summary.md").write_text(text)
    plots(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
