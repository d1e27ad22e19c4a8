"""The pack's own HTTP routes, answered the same in either host: ``GET /stepwise/sigmas`` (the schedule a sampler
node will run, for the editor's plot; the sigma table is SD1.5's unless the node last ran with another model) and
``POST /stepwise/migrate``. Pure Python: ComfyUI's server (``host/comfy.py``) and ``stepwise serve`` call them.
"""
from __future__ import annotations

import math
import weakref
from typing import Any, Mapping

import torch

from ..sampling import SAMPLER_NAMES, TRAITS
from ..sampling.registry import discards_penultimate
from ..schedulers import SCHEDULER_NAMES, DiscreteModelSampling, plan_sigmas
from ..schedulers.extra import SCHEDULE_NAMES, SCHEDULES, schedule_sigmas
from ..schedulers.plan import SWITCH_UNITS, plan_stages
from .profile import sampler_names, scheduler_names

__all__ = ["sigmas_response", "remember_model_sampling", "MAX_PLOT_STEPS", "migrate_response"]

MAX_PLOT_STEPS = 10000  # every value the steps widgets allow
_DEFAULT = None
_LAST: dict[str, Any] = {}


def _default_ms():
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = DiscreteModelSampling.scaled_linear()
    return _DEFAULT


def remember_model_sampling(node_id: Any, model_sampling: Any) -> None:
    """Record the model sampling a node used, so its plot shows that model's table."""
    if node_id is None or model_sampling is None:
        return
    try:
        _LAST[str(node_id)] = weakref.ref(model_sampling)
    except TypeError:
        _LAST[str(node_id)] = lambda ms=model_sampling: ms
    if len(_LAST) > 512:
        _LAST.pop(next(iter(_LAST)))


class _BadRequest(ValueError):
    pass


def _int(query: Mapping[str, str], name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise _BadRequest(f"{name}: required")
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise _BadRequest(f"{name}: expected an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise _BadRequest(f"{name}: {value} is outside {lo}..{hi}")
    return value


def _float(query: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise _BadRequest(f"{name}: expected a number, got {raw!r}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise _BadRequest(f"{name}: {raw} is outside {lo}..{hi}")
    return value


def _floats(t) -> list:
    return [None if not math.isfinite(v) else v for v in t.tolist()]


def sigmas_response(query: Mapping[str, str]) -> tuple[int, dict]:
    """(HTTP status, JSON body). 400 bodies are ``{"error": "<input>: <reason>"}``."""
    try:
        schedule = query.get("schedule")
        scheduler = query.get("scheduler") if schedule is None else "normal"
        if schedule is not None and schedule not in SCHEDULE_NAMES:
            raise _BadRequest(f"schedule: {schedule!r} is not one of {', '.join(SCHEDULE_NAMES)}")
        if scheduler not in SCHEDULER_NAMES and scheduler not in scheduler_names():
            raise _BadRequest(f"scheduler: {scheduler!r} is not one of {', '.join(SCHEDULER_NAMES)}")
        sampler = query.get("sampler") or "euler"
        if sampler not in SAMPLER_NAMES and sampler not in sampler_names():
            raise _BadRequest(f"sampler: {sampler!r} is not a known sampler")
        steps = _int(query, "steps", None, 1, MAX_PLOT_STEPS)
        denoise = _float(query, "denoise", 1.0, 0.0, 1.0)
        start = _int(query, "start", 0, 0, 10000)
        end = _int(query, "end", 10000, 0, 10000)
        leftover = query.get("leftover", "disable")
        if leftover not in ("enable", "disable"):
            raise _BadRequest(f"leftover: {leftover!r} is not one of enable, disable")
        unit = query.get("unit", "sigma")
        if unit not in SWITCH_UNITS:
            raise _BadRequest(f"unit: {unit!r} is not one of {', '.join(SWITCH_UNITS)}")
        until = _until(query.get("until"))
    except _BadRequest as exc:
        return 400, {"error": str(exc)}
    ref = _LAST.get(str(query.get("node")))
    ms = (ref() if ref is not None else None) or _default_ms()
    given = None
    if schedule is not None:
        params = {}
        for p in SCHEDULES[schedule].params:
            if query.get(p.name) not in (None, ""):
                try:
                    params[p.name] = int(query[p.name]) if p.kind == "INT" else float(query[p.name])
                except ValueError:
                    return 400, {"error": f"{p.name}: expected a number, got {query[p.name][:40]!r}"}
        try:
            given = schedule_sigmas(ms, schedule, steps, denoise, **params)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        if given.numel() == 0:
            given = torch.zeros([1])
    plan = plan_sigmas(ms, scheduler, discards_penultimate(sampler), steps, denoise, start if start else None,
                       end if end < 10000 else None, leftover != "enable", sigmas=given)
    runs = plan.runs
    full = plan.full
    used = plan.sigmas if runs else None
    first = plan.start_index if runs else None
    return 200, {
        "scheduler": schedule or scheduler, "sampler": sampler, "steps": steps, "denoise": denoise,
        "sigmas": _floats(full), "runs": runs,
        "start": first, "end": (first + len(used) - 1) if runs else None,
        "used": _floats(used) if runs else [], "total_steps": plan.total_steps,
        "table": "model" if ref is not None and ref() is not None else "sd15",
        "traits": TRAITS[sampler].as_dict() if sampler in TRAITS else None,
        **_stages(full, until, unit),
    }


def _until(text: str | None) -> list[float] | None:
    """Stages (Stepwise)'s switch points from ``until=a,b,c`` (the ones set, in order; -1 ends the list)."""
    if text in (None, ""):
        return None
    values = []
    for item in str(text).split(",")[:3]:
        try:
            value = float(item)
        except ValueError:
            raise _BadRequest(f"until: expected up to 3 comma-separated numbers, got {str(text)[:40]!r}") from None
        if not math.isfinite(value) or value > 10000:
            raise _BadRequest(f"until: {item!r} is outside -1..10000")
        if value < 0:
            break
        values.append(value)
    return values


def _stages(full: torch.Tensor, until: list[float] | None, unit: str) -> dict:
    if until is None:
        return {}
    try:
        return {"stages": [list(r) for r in plan_stages(full, until, unit)], "unit": unit}
    except ValueError as exc:
        return {"stages": None, "stages_error": str(exc)}


def migrate_response(body) -> tuple[int, dict]:
    """``POST /stepwise/migrate`` ``{"workflow": graph, "nodes": [ids] (optional)}`` -> the migrated graph and the
    report lines (the editor's "Migrate samplers to Stepwise" entries)."""
    from ..workflows.migrate import migrate_workflow

    if not isinstance(body, dict) or not isinstance(body.get("workflow"), dict):
        return 400, {"error": "workflow: expected the editor's graph as a JSON object"}
    only = body.get("nodes")
    if only is not None and (not isinstance(only, list) or not all(isinstance(i, (int, str)) for i in only)):
        return 400, {"error": "nodes: expected a list of node ids"}
    try:
        migrated, report = migrate_workflow(body["workflow"], set(only) if only else None)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return 400, {"error": f"workflow: cannot be migrated ({exc})"}
    return 200, {"workflow": migrated, "report": report.lines(), "changed": len(report.changed)}
