"""Files: ``/view`` (the output, temp and input folders only) and ``/upload/image``.

Every path comes from :func:`hygiene.request_path` (length, depth, ``..`` checked before the disk is touched);
file-system errors become one-line 4xx answers; an upload is checked as an image of at most
``--max-image-pixels`` from its header, written under a temporary name, then renamed."""
from __future__ import annotations

import mimetypes
import re
import urllib.parse
import uuid
from pathlib import Path

from aiohttp import web

from ..limits import image_header
from .hygiene import BadRequest, os_error_reason, request_path
from .state import ServerState

__all__ = ["add_file_routes", "safe_file_headers", "check_image_bytes", "MAX_UPLOAD_BYTES", "IMAGE_TYPES"]

MAX_UPLOAD_BYTES = 100 * 1024 * 1024
IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"}  # served inline; all else downloads


def safe_file_headers(filename: str) -> dict[str, str]:
    """Headers for serving a user file: raster images inline; anything else (HTML, SVG, scripts, text)
    as a download, so a stored file can never run script from this server's origin."""
    kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    quoted = urllib.parse.quote(filename)
    if kind in IMAGE_TYPES:
        return {"Content-Type": kind, "Content-Disposition": f"inline; filename*=UTF-8''{quoted}",
                "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}
    return {"Content-Type": "application/octet-stream", "Content-Disposition": f"attachment; filename*=UTF-8''{quoted}",
            "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}


def check_image_bytes(data: bytes) -> str | None:
    """Why ``data`` is not an image this server accepts (PNG, JPEG, WebP, GIF, BMP within the pixel budget), or
    None. The header is read without decoding, then the file is verified."""
    import io

    from PIL import Image

    try:
        image_header(data, "image")
    except ValueError as exc:
        return str(exc).removeprefix("image: ")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except Exception:  # noqa: BLE001 - PIL raises many types for bad data
        return "not a readable image (allowed: PNG, JPEG, WebP, GIF, BMP)"
    return None


def _free_name(target: Path) -> Path:
    stem, suffix = target.stem, target.suffix
    i = 1
    while target.exists():  # as ComfyUI: a new name instead of silently replacing the old file
        target = target.with_name(f"{stem} ({i}){suffix}")
        i += 1
    return target


def add_file_routes(both, state: ServerState) -> None:
    @both("GET", "/view")
    async def view(request):
        q = request.rel_url.query
        base = {"output": state.out_dir, "temp": state.temp_dir, "input": state.input_dir}.get(q.get("type", "output"))
        if base is None:
            raise BadRequest("type: must be output, temp or input")
        path = request_path(base, q.get("subfolder", ""), q.get("filename", ""))
        try:
            if not path.is_file():
                return web.json_response({"error": "filename: not found"}, status=404)
            path.stat()
        except OSError as exc:
            status, reason = os_error_reason(exc, "filename")
            return web.json_response({"error": reason}, status=404 if status == 400 else status)
        return web.FileResponse(path, headers=safe_file_headers(path.name))

    @both("POST", "/upload/image")
    async def upload(request):
        if not request.content_type.startswith("multipart/"):
            raise BadRequest("upload: expected a multipart/form-data body with an 'image' file field")
        if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES:
            raise BadRequest(f"image: over the upload limit of {MAX_UPLOAD_BYTES} bytes", 413)
        try:
            form = await request.post()
        except web.HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - any malformed multipart body (aiohttp's InvalidHeader, ...)
            raise BadRequest(f"upload: malformed multipart body ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:100] if str(exc) else ''})") from None
        image = form.get("image")
        if image is None or not hasattr(image, "file"):
            raise BadRequest("image: no file in the 'image' field")
        kind = form.get("type", "input")
        base = {"input": state.input_dir, "temp": state.temp_dir}.get(kind if isinstance(kind, str) else "")
        if base is None:
            raise BadRequest("type: must be input or temp")
        subfolder = form.get("subfolder", "")
        if not isinstance(subfolder, str):
            raise BadRequest("subfolder: expected text")
        raw_name = Path(str(image.filename or "upload.png").replace("\\", "/")).name
        name = re.sub(r"[^A-Za-z0-9._ ()-]", "_", raw_name).strip(" .")[:200] or "upload.png"
        data = image.file.read()
        problem = check_image_bytes(data)
        if problem is not None:
            raise BadRequest(f"image: {problem}")
        target = request_path(base, subfolder, name, what="image")
        try:
            folder = target.parent
            if folder.exists() and not folder.is_dir():
                raise BadRequest(f"subfolder: {subfolder[:100]!r} is a file, not a folder")
            overwrite = str(form.get("overwrite", "")).lower() in ("true", "1")
            if target.exists() and not overwrite:
                target = _free_name(target)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
            try:
                tmp.write_bytes(data)
                tmp.replace(target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            status, reason = os_error_reason(exc, "subfolder")
            raise BadRequest(reason, status) from None
        return web.json_response({"name": target.name, "subfolder": subfolder, "type": kind})
