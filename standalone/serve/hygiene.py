"""Request hygiene for ``stepwise serve``: origin/host checks, bounded bodies, data normalised at the door, file
names and folders checked before the disk is touched, and every error a one-line 4xx.

Two rules hold for every route: nothing a request stores (prompt, extra data, settings) is deeper or larger than
what every later read can serialise, and no path is built from a request without :func:`request_path`.
"""
from __future__ import annotations

import errno
import ipaddress
import json
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["BadRequest", "check_request_origin", "is_loopback_host", "json_body", "request_path", "check_storable",
           "os_error_reason", "MAX_JSON_DEPTH", "MAX_NAME_BYTES", "MAX_SUBFOLDER_DEPTH", "MAX_SUBFOLDER_CHARS"]

MAX_JSON_DEPTH = 64  # nesting of anything stored from a request (a saved workflow is < 20 deep)
MAX_NAME_BYTES = 255  # one file or folder name (the common file-system limit)
MAX_SUBFOLDER_DEPTH = 16  # folders inside output/, temp/ or input/
MAX_SUBFOLDER_CHARS = 1024
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class BadRequest(Exception):
    """A malformed request: answered 400 (or ``status``) with a one-line reason."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


# --- origin and host ----------------------------------------------------------------------------------------
def is_loopback_host(host: str | None) -> bool:
    """A literal loopback address or name; never resolved through DNS (that is what rebinding abuses)."""
    if not host:
        return False
    host = host.strip("[]").lower().rstrip(".")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str | None, int | None]:
    """(hostname, port) of a Host header value or an origin's netloc; (None, None) if malformed."""
    try:
        parts = urllib.parse.urlsplit("//" + value)
        return parts.hostname, parts.port
    except ValueError:
        return None, None


def check_request_origin(headers: Any, loopback_bind: bool) -> str | None:
    """Why a request must be refused (403), or None. As ComfyUI: a browser request whose Origin does not
    match the Host it was sent to comes from another site's page. Stricter than ComfyUI: the check holds
    on any bind, ``Origin: null`` (sandboxed pages, files) counts as foreign, and on a loopback bind the
    Host must name this machine (DNS rebinding: a foreign name that resolves to 127.0.0.1)."""
    host = headers.get("Host")
    host_name, host_port = _split_host(host) if host else (None, None)
    if host is not None and host_name is None:
        return f"Host: {host[:100]!r} is not a valid host"
    if loopback_bind and host_name is not None and not is_loopback_host(host_name):
        return (f"Host: {host_name!r} is not this machine; stepwise serve listens on loopback and answers only "
                f"requests addressed to localhost, 127.0.0.1 or [::1]")
    origin = headers.get("Origin")
    if origin is None:
        return None  # not a browser page making a cross-site request (curl, scripts, same-origin GETs)
    if origin.strip().lower() == "null":
        return "Origin: null (a sandboxed page or a local file) may not use this server"
    try:
        parsed = urllib.parse.urlsplit(origin)
        o_name, o_port = parsed.hostname, parsed.port
    except ValueError:
        return f"Origin: {origin[:100]!r} is not a valid origin"
    if o_name is None or parsed.scheme not in ("http", "https"):
        return f"Origin: {origin[:100]!r} is not a valid origin"
    if host_name is None:
        return "Host: missing, so the request's Origin cannot be checked"
    default = {"http": 80, "https": 443}[parsed.scheme]
    if o_name.lower() != host_name.lower() or (o_port or default) != (host_port or default):
        return (f"Origin: {origin[:100]} does not match the server's host {host}; requests from other sites' "
                f"pages are refused")
    return None


# --- bodies and stored data -----------------------------------------------------------------------------------
def json_depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests lists and objects (0 for a scalar), counted without recursion and stopping
    as soon as ``limit`` is passed."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def check_storable(value: Any, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``value`` if every later read can serialise it: at most ``max_depth`` levels of lists/objects."""
    depth = json_depth(value, max_depth)
    if depth > max_depth:
        raise BadRequest(f"{what}: nested more than {max_depth} levels deep (at most {max_depth})")
    return value


async def json_body(request, kind: type | tuple = dict, what: str = "body", limit: int = 16 * 1024 * 1024,
                    max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The request's JSON body, of the expected type, no deeper than ``max_depth``; a BadRequest otherwise
    (whatever the content type)."""
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"{what}: {request.content_length} bytes is over the limit of {limit}", 413)
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(1 << 16)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"{what}: over the limit of {limit} bytes", 413)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise BadRequest(f"{what}: nested too deeply (at most {max_depth} levels)") from None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
        raise BadRequest(f"{what}: not valid JSON") from None
    if not isinstance(data, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        shown = {"dict": "an object", "list": "a list", "str": "a string"}
        raise BadRequest(f"{what}: expected {shown.get(names, names)}, got {type(data).__name__}")
    return check_storable(data, what, max_depth)


# --- paths ----------------------------------------------------------------------------------------------------
def _check_name(name: str, what: str) -> None:
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise BadRequest(f"{what}: a name longer than {MAX_NAME_BYTES} bytes")


def request_path(base: Path, subfolder: Any, filename: Any, *, what: str = "filename") -> Path:
    """``base/subfolder/filename`` for a request, checked before the disk is touched: text without NUL, relative,
    no ``..``, names of at most 255 bytes, at most 16 folders deep (BadRequest 400; 403 for an escape).

    The rule for symlinks (the same for saving and viewing, see SECURITY in the README): the check is on the
    path as written, as ComfyUI's; a symlinked folder that the machine's user made inside output/, temp/ or
    input/ is followed, and requests can never create one."""
    if not isinstance(filename, str) or not isinstance(subfolder, str):
        raise BadRequest(f"{what}: expected text")
    if not filename:
        raise BadRequest(f"{what}: missing")
    if "\x00" in filename or "\x00" in subfolder:
        raise BadRequest(f"{what}: contains a NUL character")
    if len(subfolder) > MAX_SUBFOLDER_CHARS:
        raise BadRequest(f"subfolder: longer than {MAX_SUBFOLDER_CHARS} characters")
    sub = PurePosixPath(subfolder.replace("\\", "/"))
    name = PurePosixPath(filename.replace("\\", "/"))
    if sub.is_absolute() or name.is_absolute() or ".." in sub.parts or ".." in name.parts:
        raise BadRequest("outside the output/temp/input folders", 403)
    if len(name.parts) != 1:
        raise BadRequest(f"{what}: a file name, not a path (put folders in subfolder)")
    parts = [p for p in sub.parts if p not in ("", ".")]
    if len(parts) > MAX_SUBFOLDER_DEPTH:
        raise BadRequest(f"subfolder: {len(parts)} folders deep; at most {MAX_SUBFOLDER_DEPTH}")
    for part in parts:
        _check_name(part, "subfolder")
    _check_name(name.name, what)
    return Path(base).joinpath(*parts, name.name)


_OS_REASONS = {errno.ENAMETOOLONG: (400, "a name is too long"), errno.ELOOP: (404, "a symlink loop"),
               errno.EEXIST: (400, "already exists as a file"), errno.ENOTDIR: (400, "a part of the path is a file, "
                                                                                   "not a folder"),
               errno.EISDIR: (400, "is a folder"), errno.ENOENT: (404, "not found"),
               errno.EACCES: (403, "permission denied"), errno.EPERM: (403, "permission denied"),
               errno.ENOSPC: (507, "no space left on the disk"), errno.EROFS: (403, "read-only file system")}


def os_error_reason(exc: OSError, what: str = "path") -> tuple[int, str]:
    """(status, one-line reason) for a file-system error met while serving a request."""
    status, text = _OS_REASONS.get(exc.errno, (400, exc.strerror or "file-system error"))
    return status, f"{what}: {text}"
