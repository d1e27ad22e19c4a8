"""``GET /api/jobs[/{id}]`` for `stepwise serve`: the job list newer frontends (1.3x+) read instead of
``/queue`` and ``/history``. The same shape as ComfyUI's: ``{"jobs": [...], "pagination": {...}}`` with
``id, status, priority, create_time, execution_start_time, execution_end_time, execution_error,
outputs_count, preview_output, workflow_id``."""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["STATUSES", "job_list", "job_detail", "JobQueryError"]

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
PREVIEWABLE = ("images", "video", "audio")


class JobQueryError(ValueError):
    pass


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _meta(extra: Mapping) -> tuple[Any, Any]:
    workflow = (extra.get("extra_pnginfo") or {}).get("workflow") or {}
    return extra.get("create_time"), workflow.get("id") if isinstance(workflow, dict) else None


def _queued(item, status: str) -> dict:
    create_time, workflow_id = _meta(item.extra)
    return _drop_none({"id": item.prompt_id, "status": status, "priority": item.number, "create_time": create_time,
                       "outputs_count": 0, "workflow_id": workflow_id})


def _outputs_summary(outputs: Mapping) -> tuple[int, dict | None]:
    count, preview, fallback = 0, None, None
    for node_id, node_out in outputs.items():
        if not isinstance(node_out, dict):
            continue
        for media, items in node_out.items():
            if media not in PREVIEWABLE or not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict):
                    continue
                count += 1
                enriched = {**item, "nodeId": node_id, "mediaType": media}
                if preview is None and item.get("type") == "output":
                    preview = enriched
                elif fallback is None:
                    fallback = enriched
    return count, preview or fallback


def _finished(prompt_id: str, entry: Mapping, full: bool = False) -> dict:
    number, _, prompt, extra, _ = entry["prompt"]
    create_time, workflow_id = _meta(extra)
    status_info = entry.get("status") or {}
    start = end = error = None
    cancelled = False
    for name, data in status_info.get("messages", []):
        if not isinstance(data, dict):
            continue
        if name == "execution_start":
            start = data.get("timestamp")
        elif name in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
            error = data if name == "execution_error" else error
            cancelled = cancelled or name == "execution_interrupted"
    status = "completed" if status_info.get("status_str") == "success" else ("cancelled" if cancelled else "failed")
    count, preview = _outputs_summary(entry.get("outputs") or {})
    job = _drop_none({"id": prompt_id, "status": status, "priority": number, "create_time": create_time,
                      "execution_start_time": start, "execution_end_time": end, "execution_error": error,
                      "outputs_count": count, "preview_output": preview, "workflow_id": workflow_id})
    if full:
        job.update(outputs=entry.get("outputs") or {}, execution_status=status_info,
                   workflow={"prompt": prompt, "extra_data": extra})
    return job


def job_list(query: Mapping[str, str], running: list, queued: list, history: Mapping) -> dict:
    """The /api/jobs answer for a query (status, workflow_id, sort_by, sort_order, limit, offset)."""
    statuses = list(STATUSES)
    if query.get("status"):
        statuses = [s.strip().lower() for s in query["status"].split(",") if s.strip()]
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise JobQueryError(f"status: {', '.join(bad)} not allowed; allowed: {', '.join(STATUSES)}")
    sort_by = query.get("sort_by", "created_at").lower()
    if sort_by not in ("created_at", "execution_duration"):
        raise JobQueryError("sort_by: must be created_at or execution_duration")
    order = query.get("sort_order", "desc").lower()
    if order not in ("asc", "desc"):
        raise JobQueryError("sort_order: must be asc or desc")
    limit = None
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            raise JobQueryError("limit: must be an integer") from None
        if limit <= 0:
            raise JobQueryError("limit: must be a positive integer")
    try:
        offset = max(0, int(query.get("offset", 0)))
    except ValueError:
        raise JobQueryError("offset: must be an integer") from None
    jobs = [_queued(item, "in_progress") for item in running if "in_progress" in statuses]
    jobs += [_queued(item, "pending") for item in queued if "pending" in statuses]
    for prompt_id, entry in history.items():
        job = _finished(prompt_id, entry)
        if job["status"] in statuses:
            jobs.append(job)
    if query.get("workflow_id"):
        jobs = [j for j in jobs if j.get("workflow_id") == query["workflow_id"]]
    if sort_by == "execution_duration":
        key = lambda j: (j.get("execution_end_time") or 0) - (j.get("execution_start_time") or 0)  # noqa: E731
    else:
        key = lambda j: j.get("create_time") or 0  # noqa: E731
    jobs.sort(key=key, reverse=order == "desc")
    total = len(jobs)
    page = jobs[offset:offset + limit] if limit is not None else jobs[offset:]
    return {"jobs": page, "pagination": {"offset": offset, "limit": limit, "total": total,
                                         "has_more": offset + len(page) < total}}


def job_detail(job_id: str, running: list, queued: list, history: Mapping) -> dict | None:
    if job_id in history:
        return _finished(job_id, history[job_id], full=True)
    for item, status in [(i, "in_progress") for i in running] + [(i, "pending") for i in queued]:
        if item.prompt_id == job_id:
            return _queued(item, status)
    return None
