"""Inside ComfyUI: the host (progress bar, previews, interrupt, shown images, ComfyUI's own samplers and schedulers,
our routes on its server) and the backend that runs our sampler functions through ComfyUI's own guider.

``comfy.samplers.CFGGuider`` does conditioning (areas, masks, hooks, ControlNet, patches), latent
in/out and inpaint masking; ``comfy.samplers.KSAMPLER`` does the initial noise scaling. We supply
sigmas, noise, the sampler function and the callback. Only imported inside ComfyUI.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import comfy.sample
import comfy.samplers

from ..sampling import SAMPLERS
from ..sampling.model import UncondTap
from ..sampling.noise import NoiseSource
from ..sampling.registry import SamplerSpec
from . import Host

__all__ = ["ComfyBackend", "ComfyModelView", "ComfyModelSampling", "NativeSampler", "native_sampler", "ComfyHost",
           "register_routes"]


class ComfyModelSampling:
    """ComfyUI's model_sampling seen through our protocol (adds ``prediction``)."""

    def __init__(self, ms: Any) -> None:
        self._ms = ms
        self.prediction = "const" if isinstance(ms, comfy.model_sampling.CONST) else "eps"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ms, name)

    @property
    def sigma_min(self):
        return self._ms.sigma_min

    @property
    def sigma_max(self):
        return self._ms.sigma_max


class ComfyModelView:
    """What our samplers see inside ComfyUI: ComfyUI's inpaint-aware denoiser plus the model's
    sampling description and a CFG++ uncond tap built on ComfyUI's post-CFG hook."""

    def __init__(self, model_k: Any) -> None:
        self._model_k = model_k
        self.model_sampling = ComfyModelSampling(model_k.inner_model.inner_model.model_sampling)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        return self._model_k(x, sigma, **extra_args)

    def request_uncond(self, extra_args: dict) -> tuple[dict, UncondTap]:
        tap = UncondTap()

        def post_cfg(args: dict) -> torch.Tensor:
            tap.value = args["uncond_denoised"]
            return args["denoised"]

        extra = dict(extra_args)
        options = extra.get("model_options", {}).copy()
        extra["model_options"] = comfy.model_patcher.set_model_options_post_cfg_function(
            options, post_cfg, disable_cfg1_optimization=True)
        return extra, tap


class _SamplerFunction:
    """Our sampler function as ComfyUI's KSAMPLER calls it (with its inpaint-aware model wrapper)."""

    def __init__(self, fn, inpaint_source=None) -> None:
        self.fn = fn
        self.inpaint_source = inpaint_source
        self.accepts_noise_sampler = "noise_sampler" in inspect.signature(fn).parameters

    def __call__(self, model_k, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        seed = (extra_args or {}).get("seed")
        if self.accepts_noise_sampler and options.get("noise_sampler") is None and seed is not None:
            # core's SamplerCustom gives only the seed: per-step noise as the installed ComfyUI draws it (seed + 1 on
            # the CPU from 0.7.0), the SDE samplers' Brownian tree from the seed itself
            from .profile import current_profile

            options["noise_sampler"] = NoiseSource(int(seed), cpu_seed_offset=current_profile().cpu_noise_seed_offset)
        if self.inpaint_source is not None and getattr(model_k, "noise", None) is not None:
            ref = model_k.noise  # this run's wrapper object only; ComfyUI itself is not touched
            model_k.noise = self.inpaint_source.inpaint(ref.shape, ref.dtype, ref.device)
        return self.fn(ComfyModelView(model_k), x, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                       **options)


class NativeSampler:
    """A sampler run through ComfyUI's own object: one of the installed ComfyUI's names that this pack does not
    implement, or a SAMPLER from core's nodes (KSamplerSelect, SamplerDPMPP_SDE, ...)."""

    def __init__(self, name: str, sampler: Any = None) -> None:
        self.name = name
        self.sampler = comfy.samplers.sampler_object(name) if sampler is None else sampler

    @classmethod
    def of(cls, sampler: Any) -> "NativeSampler":
        fn = getattr(sampler, "sampler_function", None)
        name = getattr(fn, "__name__", "").removeprefix("sample_")
        return cls(name, sampler)

    def plan_name(self, fallback: str) -> str:
        """The name whose schedule rule applies (dpm_2/uni_pc drop the penultimate sigma), if recognisable."""
        aliases = {"unipc": "uni_pc"}
        name = aliases.get(self.name, self.name)
        return name if name in SAMPLERS else fallback


_NATIVE_NOTED: set[str] = set()


def native_sampler(name: str) -> NativeSampler:
    if name not in comfy.samplers.KSampler.SAMPLERS:
        raise ValueError(f"sampler_name: unknown sampler {name!r}; allowed: {', '.join(comfy.samplers.KSampler.SAMPLERS)}")
    if name not in _NATIVE_NOTED:
        _NATIVE_NOTED.add(name)
        logging.getLogger("stepwise").info("stepwise: sampler %r is not implemented by Stepwise; it runs through "
                                           "ComfyUI's own function (Stepwise's noise modes and seamless splits do "
                                           "not apply to it)", name)
    return NativeSampler(name)


def native_schedule(name: str):
    """A scheduler of the installed ComfyUI that this pack does not implement: ComfyUI's own function."""
    if name not in comfy.samplers.KSampler.SCHEDULERS:
        raise ValueError(f"scheduler: unknown scheduler {name!r}; allowed: {', '.join(comfy.samplers.KSampler.SCHEDULERS)}")
    if ("scheduler", name) not in _NATIVE_NOTED:
        _NATIVE_NOTED.add(("scheduler", name))
        logging.getLogger("stepwise").info("stepwise: scheduler %r is not implemented by Stepwise; it is computed by "
                                           "ComfyUI's own function", name)
    return lambda ms, steps: comfy.samplers.calculate_sigmas(ms, name, steps).cpu()


class ComfyBackend:
    def __init__(self, model_patcher: Any) -> None:
        self.patcher = model_patcher
        self.model_sampling = model_patcher.get_model_object("model_sampling")

    def fix_empty_latent_channels(self, latent: torch.Tensor, **downscale_ratios) -> torch.Tensor:
        # downscale_ratios only arrive under a 0.22.0+ profile, whose ComfyUI takes them
        return comfy.sample.fix_empty_latent_channels(self.patcher, latent, **downscale_ratios)

    @staticmethod
    def nest(tensors: list):
        """A list of tensors as ComfyUI's nested latent (0.8.0+); older ComfyUI cannot sample those."""
        try:
            import comfy.nested_tensor
        except ImportError:
            raise ValueError("latent_image: nested latents need ComfyUI 0.8.0 or newer") from None
        return comfy.nested_tensor.NestedTensor(tensors)

    def sample(self, noise, latent_image, sampler_fn, sigmas, positive, negative, cfg, noise_mask=None,
               callback=None, seed=None, disable_pbar=True, random_inpaint_noise=False, inpaint_source=None,
               sampler_options=None):
        if isinstance(sampler_fn, NativeSampler):
            sampler = sampler_fn.sampler
        else:
            # ComfyUI's own random inpaint noise is the comfy-mode numbers; a per-item source brings its own
            own_inpaint = random_inpaint_noise and inpaint_source is not None and inpaint_source.batch_mode != "comfy"
            fn = _SamplerFunction(sampler_fn, inpaint_source if own_inpaint else None)
            sampler = comfy.samplers.KSAMPLER(fn, extra_options=dict(sampler_options or {}),
                                              inpaint_options={"random": True}
                                              if random_inpaint_noise and not own_inpaint else {})
        guider = comfy.samplers.CFGGuider(self.patcher)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        samples = guider.sample(noise, latent_image, sampler, sigmas.to(self.patcher.load_device),
                                denoise_mask=noise_mask, callback=callback, disable_pbar=disable_pbar, seed=seed)
        return samples.to(comfy.model_management.intermediate_device())


def comfy_preview_callback(model_patcher: Any, steps: int, config):
    """Our per-node previewer, reporting through ``comfy.utils.ProgressBar`` and checking
    ComfyUI's interrupt flag every step. ComfyUI's global preview setting is never read or changed."""
    import comfy.utils
    from PIL import Image

    from ..preview import PreviewHook, make_decoder

    fmt = model_patcher.model.latent_format

    def taesd():
        name = getattr(fmt, "taesd_decoder_name", None)
        try:
            import folder_paths
            from comfy.taesd.taesd import TAESD
        except ImportError:
            return None
        files = [f for f in folder_paths.get_filename_list("vae_approx") if name and f.startswith(name)]
        if not files:
            return None
        net = TAESD(None, folder_paths.get_full_path("vae_approx", files[0]),
                    latent_channels=fmt.latent_channels).to(model_patcher.load_device)
        return lambda x0: net.decode(x0[None])[0].movedim(0, 2)

    pbar = comfy.utils.ProgressBar(steps)

    def sink(step: int, total: int, image) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        preview = None
        if image is not None:
            preview = ("JPEG", Image.fromarray(image.numpy()), config.max_size)
        pbar.update_absolute(step + 1, total, preview)

    return PreviewHook(make_decoder(config.method, fmt, taesd), sink, config)


def comfy_show_images(images: torch.Tensor, prompt=None, extra_pnginfo=None) -> list[dict]:
    """Save images to ComfyUI's temp folder so the node shows them (what PreviewImage does)."""
    import nodes as comfy_nodes  # ComfyUI's top-level module (our package only imports relatively)

    return comfy_nodes.PreviewImage().save_images(images, prompt=prompt, extra_pnginfo=extra_pnginfo)["ui"]["images"]


def comfy_encode_text(clip: Any, text: str):
    """A prompt's CONDITIONING through ComfyUI's own CLIPTextEncode (the XY Plot's prompt S/R axes)."""
    import nodes as comfy_nodes

    return comfy_nodes.CLIPTextEncode().encode(clip, text)[0]


def comfy_progress_text(text: str, node_id: Any) -> None:
    """A line of progress under the node (ComfyUI's progress_text event), where this ComfyUI has it."""
    try:
        from server import PromptServer

        send = getattr(PromptServer.instance, "send_progress_text", None)
        if send is not None:
            send(text, str(node_id))
    except Exception:  # noqa: BLE001 - progress text is a courtesy, never a failure
        pass


class ComfyHost(Host):
    """ComfyUI as the host of a node run."""

    name = "comfyui"

    def step_callback(self, model: Any, steps: int, preview=None, node_id: Any = None):
        """With a per-node ``preview`` config: our previewer reporting through ComfyUI's progress bar (never its
        global preview setting); without one, ComfyUI's own callback exactly as the core KSampler uses it."""
        import comfy.utils

        if not hasattr(model, "model") or not hasattr(model, "load_device"):
            return None, not comfy.utils.PROGRESS_BAR_ENABLED
        if preview is not None:
            return comfy_preview_callback(model, steps, preview), not comfy.utils.PROGRESS_BAR_ENABLED
        import latent_preview

        return latent_preview.prepare_callback(model, steps), not comfy.utils.PROGRESS_BAR_ENABLED

    def check_interrupt(self) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()

    def wants_ui(self) -> bool:
        return True

    def show_images(self, images, prompt=None, extra_pnginfo=None) -> list[dict]:
        return comfy_show_images(images, prompt, extra_pnginfo)

    def progress_text(self, text: str, node_id: Any = None) -> None:
        if node_id is not None:
            comfy_progress_text(text, node_id)

    def encode_text(self, clip: Any, text: str):
        if hasattr(clip, "tokenize") and hasattr(clip, "encode_from_tokens"):
            return comfy_encode_text(clip, text)
        return super().encode_text(clip, text)

    def native_sampler(self, name: str):
        return native_sampler(name)

    def native_schedule(self, name: str):
        return native_schedule(name)

    def sampler_output(self, spec: SamplerSpec):
        """A SAMPLER core's SamplerCustom(Advanced) can run (ComfyUI's KSAMPLER around our function, through the same
        model view as our nodes), carrying the spec so our own nodes read it as data."""
        fn = SAMPLERS[spec.name]
        sampler = comfy.samplers.KSAMPLER(_SamplerFunction(fn), extra_options=dict(spec.options))
        sampler.stepwise_spec = spec
        return sampler

    def sampler_socket(self, sampler: Any) -> dict:
        if isinstance(getattr(sampler, "stepwise_spec", sampler), SamplerSpec):
            return super().sampler_socket(sampler)
        if hasattr(sampler, "sample") and hasattr(sampler, "sampler_function"):
            native = NativeSampler.of(sampler)
            return {"native_sampler": native, "plan_name": native.plan_name}
        return super().sampler_socket(sampler)


def register_routes(prompt_server: Any) -> None:
    """``GET /stepwise/sigmas`` and ``POST /stepwise/migrate`` on ComfyUI's server (also under /api)."""
    from aiohttp import web

    from .api import migrate_response, sigmas_response

    @prompt_server.routes.get("/stepwise/sigmas")
    async def stepwise_sigmas(request):
        status, body = sigmas_response(request.rel_url.query)
        return web.json_response(body, status=status)

    @prompt_server.routes.post("/stepwise/migrate")
    async def stepwise_migrate(request):
        try:
            body = await request.json()
        except Exception:  # noqa: BLE001 - any unreadable body is the client's error
            return web.json_response({"error": "body: not JSON"}, status=400)
        status, out = migrate_response(body)
        return web.json_response(out, status=status)
