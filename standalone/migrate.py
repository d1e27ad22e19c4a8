"""``stepwise migrate`` on files and folders (the migration itself is ``nodes.migrate``)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..nodes.migrate import MigrationReport, migrate_workflow

__all__ = ["migrate_file", "migrate_folder", "migrate_workflow", "MigrationReport"]


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None


def _write(path: Path, data: Any) -> None:
    from .images import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def migrate_file(src: Path, dst: Path) -> MigrationReport:
    migrated, report = migrate_workflow(_read(Path(src)))
    _write(Path(dst), migrated)
    return report


def migrate_folder(folder: Path, backup_suffix: str = ".bak") -> dict[Path, MigrationReport]:
    """Migrate every ``*.json`` workflow of a folder in place; each changed file is first copied to
    ``<name>.json.bak`` (an existing backup is never overwritten)."""
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = _read(path)
            migrated, report = migrate_workflow(data)
        except ValueError as exc:
            rep = MigrationReport()
            rep.not_migrated.append({"node": "-", "type": path.name, "reason": str(exc)})
            out[path] = rep
            continue
        if migrated != data:
            backup = path.with_name(path.name + backup_suffix)
            if not backup.exists():
                shutil.copy2(path, backup)
            _write(path, migrated)
        out[path] = report
    return out
