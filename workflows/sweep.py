"""Sweeps: axes over a sampler node's settings and their values as typed lists (the grid they are drawn in is
``preview.grid``).

Shared by XY Plot (Stepwise) (a SCRIPT for the Efficient nodes, ``nodes/scripts.py``) and ``stepwise sweep`` (any
sampler node of a saved workflow, optionally fanned out on Ray, ``standalone/sweep.py``).

Values are written as a list separated by commas (or by new lines, when a value itself holds commas), where
each item is a value, a range ``start:stop[:step]`` (``stop`` included when the steps land on it), a relative run
``+step xCOUNT`` (``+1 x4``: the node's own value, then three more, each ``step`` apart; ``×`` works too), or
``*`` for every allowed value of a list widget.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable, Sequence

from ..preview.grid import format_value


__all__ = ["AxisSpec", "AXES", "AXIS_NAMES", "parse_values", "format_value", "MAX_VALUES", "MAX_CELLS",
           "replace_term", "cell_order"]

MAX_VALUES = 256  # per axis
MAX_CELLS = 1024  # per sweep


@dataclass(frozen=True)
class AxisSpec:
    """One sweepable setting. ``kind``: ``widget`` (a sampler widget), ``noise`` (a Noise (Stepwise) setting),
    ``prompt`` (search and replace in a prompt, re-encoded), ``input`` (one of the XY Plot's numbered inputs)."""

    name: str
    kind: str
    value_type: str  # int | float | combo | text | index
    help: str


AXES: dict[str, AxisSpec] = {a.name: a for a in (
    AxisSpec("seed", "widget", "int", "the seed (noise_seed on the Advanced nodes)"),
    AxisSpec("steps", "widget", "int", "steps"),
    AxisSpec("cfg", "widget", "float", "CFG scale"),
    AxisSpec("sampler_name", "widget", "combo", "the sampler"),
    AxisSpec("scheduler", "widget", "combo", "the scheduler"),
    AxisSpec("denoise", "widget", "float", "denoise (KSampler nodes)"),
    AxisSpec("start_at_step", "widget", "int", "start_at_step (Advanced nodes)"),
    AxisSpec("end_at_step", "widget", "int", "end_at_step (Advanced nodes)"),
    AxisSpec("add_noise", "widget", "combo", "add_noise (Advanced nodes)"),
    AxisSpec("return_with_leftover_noise", "widget", "combo", "return_with_leftover_noise (Advanced nodes)"),
    AxisSpec("split_mode", "widget", "combo", "split_mode (Advanced nodes)"),
    AxisSpec("batch_mode", "noise", "combo", "Noise (Stepwise) batch_mode"),
    AxisSpec("variation_seed", "noise", "int", "Noise (Stepwise) variation_seed"),
    AxisSpec("variation_strength", "noise", "float", "Noise (Stepwise) variation_strength"),
    AxisSpec("sde_noise", "noise", "combo", "the SDE samplers' noise source"),
    AxisSpec("positive S/R", "prompt", "text", "search and replace in positive_text (the first value is searched)"),
    AxisSpec("negative S/R", "prompt", "text", "search and replace in negative_text (the first value is searched)"),
    AxisSpec("model", "input", "index", "model_1..model_4 (values 1..4)"),
    AxisSpec("latent", "input", "index", "latent_1..latent_4 (values 1..4)"),
)}
AXIS_NAMES = ["none"] + list(AXES)

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*:\s*({_NUMBER})\s*(?::\s*({_NUMBER})\s*)?$")
_RELATIVE = re.compile(rf"^\s*\+\s*({_NUMBER})\s*[x×*]\s*(\d+)\s*$")


def _items(text: str) -> list[str]:
    sep = "\n" if "\n" in text.strip() else ","
    return [s.strip() for s in text.split(sep) if s.strip()]


MAX_TOKEN_CHARS = 100  # one number as written


def _exact(token: str, axis: str) -> Fraction:
    """A number as written, exactly (no float round trip: 9007199254740993 stays itself, 1e400 is not inf)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"{axis}: {token[:20]!r}... is longer than {MAX_TOKEN_CHARS} characters")
    try:
        return Fraction(token.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{axis}: {token!r} is not a number") from None


def _typed(value: Fraction, value_type: str, axis: str, token: str) -> int | float:
    if value_type in ("int", "index"):
        if value.denominator != 1:
            raise ValueError(f"{axis}: {token!r} is not a whole number")
        return int(value)
    try:
        out = float(value)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        raise ValueError(f"{axis}: {token!r} is not a finite number")
    return out


def _number(token: str, value_type: str, axis: str) -> int | float:
    return _typed(_exact(token, axis), value_type, axis, token)


def _range(a: Fraction, b: Fraction, step: Fraction, value_type: str, axis: str, text: str) -> list:
    """``a, a + step, ...`` up to ``b`` (included when a step lands on it), counted exactly before anything is made,
    so no range can ask for more than MAX_VALUES values."""
    if step == 0 or (b - a) * step < 0:
        raise ValueError(f"{axis}: the range {text!r} never reaches its end (step {step})")
    count = math.floor((b - a) / step) + 1
    if count > MAX_VALUES:
        raise ValueError(f"{axis}: the range {text!r} has {count if count < 10 ** 12 else 'more than 10^12'} values; "
                         f"at most {MAX_VALUES} per axis")
    return [_typed(a + k * step, value_type, axis, text) for k in range(count)]


def parse_values(axis: str, text: str, *, allowed: Sequence | None = None, base: Any = None,
                 value_type: str | None = None) -> list:
    """The values of one axis from its text. ``allowed``: the choices of a list widget; ``base``: the node's own
    value, which ``+step xCOUNT`` starts from; ``value_type`` (int, float, combo, text) for a widget that is not
    one of :data:`AXES`. Every error names the axis and the bad item."""
    spec = AXES.get(axis)
    if value_type is not None:
        spec = AxisSpec(axis, spec.kind if spec else "widget", value_type, "")
    if spec is None:
        raise ValueError(f"axis: unknown axis {axis!r}; allowed: {', '.join(AXES)}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{axis}: no values (write a list like 'a, b', a range '10:30:5' or '+1 x4')")
    values: list = []
    for item in _items(text):
        if spec.value_type == "text":
            values.append(item)
        elif spec.value_type == "combo":
            if item in ("*", "all"):
                if not allowed:
                    raise ValueError(f"{axis}: '*' needs the list of allowed values")
                values.extend(allowed)
            elif allowed is not None and item not in allowed:
                raise ValueError(f"{axis}: {item!r} is not one of the allowed values: {', '.join(map(str, allowed))}")
            else:
                values.append(item)
        else:
            m = _RANGE.match(item) if len(item) <= 3 * MAX_TOKEN_CHARS + 4 else None
            r = _RELATIVE.match(item) if len(item) <= 2 * MAX_TOKEN_CHARS + 4 else None
            if m:
                a, b = _exact(m.group(1), axis), _exact(m.group(2), axis)
                step = _exact(m.group(3), axis) if m.group(3) else Fraction(1 if b >= a else -1)
                for bound, token in ((a, m.group(1)), (b, m.group(2)), (step, m.group(3) or "1")):
                    _typed(bound, spec.value_type if bound is not step else "float", axis, token)
                values.extend(_range(a, b, step, spec.value_type, axis, item))
            elif r:
                if base is None:
                    raise ValueError(f"{axis}: {item!r} counts from the node's own value, which is not known here")
                step, count = _exact(r.group(1), axis), int(r.group(2)[:6])
                if not 1 <= count <= MAX_VALUES or len(r.group(2)) > 6:
                    raise ValueError(f"{axis}: {item!r}: the count must be 1..{MAX_VALUES}")
                start = Fraction(base) if not isinstance(base, bool) else Fraction(int(base))
                values.extend(_range(start, start + step * (count - 1), step, spec.value_type, axis, item)
                              if step else [_typed(start, spec.value_type, axis, item)] * count)
            else:
                values.append(_number(item, spec.value_type, axis))
        if len(values) > MAX_VALUES:
            raise ValueError(f"{axis}: more than {MAX_VALUES} values")
    if not values:
        raise ValueError(f"{axis}: no values (write a list like 'a, b', a range '10:30:5' or '+1 x4')")
    if spec.value_type == "index":
        bad = [v for v in values if not 1 <= v <= 4]
        if bad:
            raise ValueError(f"{axis}: {bad[0]} is not an input number; allowed: 1, 2, 3, 4 ({axis}_1..{axis}_4)")
    if spec.kind == "prompt" and len(values) < 2:
        raise ValueError(f"{axis}: give the searched text first, then at least one replacement ('red, blue')")
    return values


def replace_term(text: str, search: str, replacement: str, axis: str) -> str:
    if search not in text:
        raise ValueError(f"{axis}: {search!r} does not occur in the prompt text {text[:80]!r}")
    return text.replace(search, replacement)


def cell_order(nx: int, ny: int, nz: int) -> Iterable[tuple[int, int, int]]:
    """Z outermost, then Y, then X (row by row, as the grid reads)."""
    for iz in range(nz):
        for iy in range(ny):
            for ix in range(nx):
                yield ix, iy, iz
