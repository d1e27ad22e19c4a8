"""Which ComfyUI release's behaviour the nodes reproduce, and the sampler/scheduler combos they show.

- Inside ComfyUI: the installed release (``comfyui_version.__version__``), and core's own combo lists.
- Standalone (``stepwise run``/``serve``/``demo``): the newest profile, or the one chosen with
  ``--comfy-version`` (:func:`set_standalone_profile`).
- The golden runner and tests: :func:`use_profile` for a block of code.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from typing import Iterator

from ..sampling.profile import NEWEST, Profile, profile_for_version

__all__ = ["current_profile", "use_profile", "set_standalone_profile", "installed_comfyui_version", "sampler_names",
           "scheduler_names", "combo_spec", "comfy_supports_combo_type"]

log = logging.getLogger("stepwise")
_ACTIVE: contextvars.ContextVar[Profile | None] = contextvars.ContextVar("stepwise_profile", default=None)
_STANDALONE = [NEWEST]
_INSTALLED: list = []  # cache: [Profile | None]


def _inside_comfyui() -> bool:
    return "comfy" in sys.modules and "comfy.samplers" in sys.modules


def installed_comfyui_version() -> str | None:
    """The version of the ComfyUI this process runs inside, or None outside ComfyUI."""
    if not _inside_comfyui():
        return None
    module = sys.modules.get("comfyui_version")
    if module is None:
        try:
            import comfyui_version as module  # ComfyUI's root module
        except ImportError:
            return None
    return getattr(module, "__version__", None)


def _installed_profile() -> Profile | None:
    if not _INSTALLED:
        version = installed_comfyui_version()
        profile = None
        if version is not None:
            try:
                profile = profile_for_version(version)
            except ValueError:
                log.warning("stepwise: cannot read ComfyUI's version %r; using the behaviour of %s", version,
                            NEWEST.label)
                profile = NEWEST
        elif _inside_comfyui():
            log.warning("stepwise: ComfyUI's version is unknown; using the behaviour of %s", NEWEST.label)
            profile = NEWEST
        _INSTALLED.append(profile)
    return _INSTALLED[0]


def current_profile() -> Profile:
    """The profile for a node run now: an explicit :func:`use_profile`, else the installed ComfyUI's, else
    the standalone one."""
    active = _ACTIVE.get()
    if active is not None:
        return active
    installed = _installed_profile()
    return installed if installed is not None else _STANDALONE[0]


@contextlib.contextmanager
def use_profile(profile: Profile) -> Iterator[Profile]:
    token = _ACTIVE.set(profile)
    try:
        yield profile
    finally:
        _ACTIVE.reset(token)


def standalone_profile_for(version: str) -> Profile:
    """The profile ``--comfy-version VERSION`` chooses: a release the profiles cover (from the oldest checked one to
    the newest), else a ValueError listing them."""
    from ..sampling.profile import OLDEST, PROFILES, parse_version

    known = ", ".join(PROFILES)
    try:
        v = parse_version(version)
    except ValueError:
        raise ValueError(f"--comfy-version: {version!r} is not a version like 0.8.0; known profiles: {known}") from None
    if v < parse_version(OLDEST.comfyui_version) or v > parse_version(NEWEST.comfyui_version):
        raise ValueError(f"--comfy-version: {version} is outside the releases Stepwise reproduces "
                         f"({OLDEST.comfyui_version} .. {NEWEST.comfyui_version}); known profiles: {known}")
    return profile_for_version(version)


def set_standalone_profile(version: str | Profile) -> Profile:
    """Choose the release the standalone runtime reproduces (``--comfy-version``)."""
    profile = version if isinstance(version, Profile) else standalone_profile_for(version)
    _STANDALONE[0] = profile
    return profile


def sampler_names() -> list[str]:
    """The sampler combo: core's own list inside ComfyUI (same object contents, same order), else the profile's."""
    if _inside_comfyui() and _ACTIVE.get() is None:
        import comfy.samplers

        return list(comfy.samplers.KSampler.SAMPLERS)
    return list(current_profile().sampler_names)


def scheduler_names() -> list[str]:
    if _inside_comfyui() and _ACTIVE.get() is None:
        import comfy.samplers

        return list(comfy.samplers.KSampler.SCHEDULERS)
    return list(current_profile().scheduler_names)


def comfy_supports_combo_type() -> bool:
    """ComfyUI validates ``("COMBO", {"options": [...]})`` inputs from 0.8.0 on (and then accepts links from
    nodes whose output type is a list of names), so that form is declared there."""
    version = installed_comfyui_version()
    if version is None:
        return False
    try:
        from ..sampling.profile import parse_version

        return parse_version(version) >= (0, 8, 0)
    except ValueError:
        return False


def combo_spec(options: list[str], extra: dict | None = None) -> tuple:
    """A combo input as the installed ComfyUI prefers it."""
    extra = dict(extra or {})
    if comfy_supports_combo_type():
        return ("COMBO", {"options": list(options), **extra})
    return (list(options), extra) if extra else (list(options),)
