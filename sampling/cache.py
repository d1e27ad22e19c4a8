"""A bounded result cache for the Efficient nodes that cannot go stale.

The key covers everything that affects the sampled latent: the model's identity and patches, the
conditioning tensors (by content) and their options, the latent (content, shape, mask,
batch_index), every sampling widget and the script. Objects that are not plain data (models,
ControlNets, hooks) are keyed by identity and held by weak reference, so a freed object can never
be confused with a new one at the same address. ``vae_decode`` and ``preview_method`` are not part
of the key: changing them re-decodes without re-sampling.
"""
from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["ResultCache", "fingerprint", "RESULT_CACHE"]

_PLAIN = (str, int, float, bool, type(None))


def _tensor_digest(t: torch.Tensor) -> tuple:
    data = t.detach().contiguous().cpu()
    if data.dtype == torch.bfloat16:
        data = data.float()
    return ("T", str(t.dtype), tuple(t.shape), hashlib.blake2b(data.numpy().tobytes(), digest_size=16).hexdigest())


def _model_identity(obj: Any, refs: list) -> tuple:
    """ComfyUI ModelPatcher: the wrapped model plus its patch state; anything else: identity."""
    inner = getattr(obj, "model", None)
    if inner is not None and hasattr(obj, "model_options") and hasattr(obj, "patches"):
        refs.append(obj)
        patches = tuple(sorted((str(k), len(v)) for k, v in getattr(obj, "patches", {}).items()))
        return ("ModelPatcher", id(inner), str(getattr(obj, "patches_uuid", "")), patches,
                _fp(obj.model_options, refs))
    refs.append(obj)
    return ("obj", type(obj).__qualname__, id(obj))


def _fp(value: Any, refs: list) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, torch.Tensor):
        return _tensor_digest(value)
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _fp(v, refs)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_fp(v, refs) for v in value))
    if hasattr(value, "__dataclass_fields__") and getattr(type(value), "__dataclass_params__").frozen:
        return (type(value).__qualname__, _fp(vars(value) if hasattr(value, "__dict__") else repr(value), refs))
    return _model_identity(value, refs)


def fingerprint(value: Any) -> tuple[Any, list]:
    """(hashable key, objects keyed by identity) for any node input."""
    refs: list = []
    return _fp(value, refs), refs


@dataclass
class _Entry:
    value: Any
    refs: list  # weak references to identity-keyed objects
    nbytes: int = 0


@dataclass
class ResultCache:
    """LRU over at most ``max_entries`` results and ``max_bytes`` of tensors."""

    max_entries: int = 8
    max_bytes: int = 1 << 30
    hits: int = 0
    misses: int = 0
    _entries: "OrderedDict[Any, _Entry]" = field(default_factory=OrderedDict)

    def _alive(self, entry: _Entry, refs: list) -> bool:
        if len(entry.refs) != len(refs):
            return False
        return all(r() is obj for r, obj in zip(entry.refs, refs))

    def get(self, inputs: Any):
        key, refs = fingerprint(inputs)
        entry = self._entries.get(key)
        if entry is not None and self._alive(entry, refs):
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.value
        if entry is not None:
            del self._entries[key]
        self.misses += 1
        return None

    def put(self, inputs: Any, value: Any) -> None:
        key, refs = fingerprint(inputs)
        weak = []
        for obj in refs:
            try:
                weak.append(weakref.ref(obj))
            except TypeError:
                return  # cannot guarantee freshness for this object: do not cache
        nbytes = sum(v.numel() * v.element_size() for v in _tensors(value))
        self._entries[key] = _Entry(value, weak, nbytes)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries or (
                len(self._entries) > 1 and sum(e.nbytes for e in self._entries.values()) > self.max_bytes):
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


def _tensors(value: Any):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


RESULT_CACHE = ResultCache()
