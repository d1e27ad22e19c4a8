"""``stepwise migrate`` on files and folders (the migration itself is ``workflows.migrate``).

A folder is migrated all or nothing: every ``*.json`` is read and migrated in memory first; only when every file
succeeded are the changed ones written (each original first copied to a backup that never overwrites an older one:
``NAME.json.bak``, ``NAME.json.bak.1``, ...; the new content under a temporary name, then renamed). A failure
while writing restores what was already replaced. Symlinked files are reported, never replaced.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..workflows.migrate import MigrationReport, migrate_workflow

__all__ = ["migrate_file", "migrate_folder", "migrate_workflow", "MigrationReport", "FolderMigration",
           "MigrationFailed"]


class MigrationFailed(ValueError):
    """A folder that was left exactly as it was, with the per-file reasons."""

    def __init__(self, message: str, result: "FolderMigration") -> None:
        super().__init__(message)
        self.result = result


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ValueError(f"{path.name}: nested too deeply to be a workflow") from None


def _encode(data: Any) -> bytes:
    return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _check_target(dst: Path) -> None:
    if dst.is_dir():
        raise ValueError(f"OUT: {dst} is a folder; give the migrated workflow's file name (e.g. {dst / 'out.json'})")
    if not dst.parent.is_dir():
        raise ValueError(f"OUT: the folder {dst.parent} does not exist")


def migrate_file(src: Path, dst: Path, stages: bool = False) -> MigrationReport:
    from .images import write_bytes_atomic

    src, dst = Path(src), Path(dst)
    _check_target(dst)
    try:
        migrated, report = migrate_workflow(_read(src), stages=stages)
    except RecursionError:
        raise ValueError(f"{src.name}: nested too deeply to be a workflow") from None
    write_bytes_atomic(dst, _encode(migrated))
    return report


@dataclass
class FolderMigration:
    """What ``migrate --in-place`` did (or would have done) to each file."""

    reports: dict[Path, MigrationReport] = field(default_factory=dict)
    status: dict[Path, str] = field(default_factory=dict)  # changed, unchanged, skipped, failed
    reasons: dict[Path, str] = field(default_factory=dict)
    backups: dict[Path, Path] = field(default_factory=dict)
    written: bool = False

    def lines(self) -> list[str]:
        out = []
        for path in sorted(self.status):
            state = self.status[path]
            if state == "changed":
                note = f"migrated (backup: {self.backups[path].name})" if self.written else "would be migrated"
                out.append(f"{path.name}: {note}")
                out += [f"{path.name}:   {line}" for line in self.reports[path].lines()]
            elif state == "unchanged":
                out.append(f"{path.name}: nothing to migrate")
            else:
                out.append(f"{path.name}: {state}: {self.reasons.get(path, '')}")
        return out

    def as_dict(self) -> dict:
        return {str(p): {"status": self.status[p], "reason": self.reasons.get(p),
                         "backup": str(self.backups[p]) if p in self.backups else None,
                         **(self.reports[p].as_dict() if p in self.reports else {})} for p in sorted(self.status)}


def _free_backup(path: Path, suffix: str, taken: set[Path]) -> Path:
    candidate = path.with_name(path.name + suffix)
    k = 0
    while candidate.exists() or candidate.is_symlink() or candidate in taken:
        k += 1
        candidate = path.with_name(f"{path.name}{suffix}.{k}")
    return candidate


def _temp_beside(path: Path, data: bytes, tag: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{tag}.tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def migrate_folder(folder: Path, backup_suffix: str = ".bak", stages: bool = False) -> FolderMigration:
    """Migrate every ``*.json`` workflow of a folder in place, all or nothing (see the module docstring). Raises
    :class:`MigrationFailed` (nothing written) when any file cannot be read or migrated."""
    folder = Path(folder)
    result = FolderMigration()
    plans: dict[Path, bytes] = {}
    for path in sorted(folder.glob("*.json")):
        if path.is_symlink():
            result.status[path] = "skipped"
            result.reasons[path] = "a symlink; migrate the file it points to instead (not replaced)"
            continue
        if not path.is_file():
            continue
        try:
            data = _read(path)
            migrated, report = migrate_workflow(data, stages=stages)
        except RecursionError:
            result.status[path], result.reasons[path] = "failed", "nested too deeply to be a workflow"
            continue
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            result.status[path], result.reasons[path] = "failed", str(exc).removeprefix(f"{path.name}: ")
            continue
        result.reports[path] = report
        if migrated != data:
            result.status[path] = "changed"
            plans[path] = _encode(migrated)
        else:
            result.status[path] = "unchanged"
    failed = [p for p, s in result.status.items() if s == "failed"]
    if failed:
        raise MigrationFailed(f"--in-place: {len(failed)} of {len(result.status)} files cannot be migrated "
                              f"({', '.join(p.name for p in failed[:5])}{', ...' if len(failed) > 5 else ''}); "
                              f"nothing was changed", result)
    _write_all(plans, result, backup_suffix)
    return result


def _write_all(plans: dict[Path, bytes], result: FolderMigration, backup_suffix: str) -> None:
    """Backups and new contents as temporary files first; then the renames; on a failure, undo them."""
    temps: list[Path] = []
    done: list[tuple[Path, Path]] = []  # (original, its backup) already replaced
    try:
        staged = []
        for path, data in plans.items():
            backup = _free_backup(path, backup_suffix, set(result.backups.values()))
            result.backups[path] = backup
            copy = _temp_beside(path, path.read_bytes(), "bak")
            shutil.copystat(path, copy)
            temps.append(copy)
            new = _temp_beside(path, data, "new")
            shutil.copymode(path, new)
            temps.append(new)
            staged.append((path, backup, copy, new))
        for path, backup, copy, new in staged:
            if backup.exists() or backup.is_symlink():  # appeared since it was chosen: never replace a backup
                raise FileExistsError(errno.EEXIST, "a backup appeared while migrating", str(backup))
            os.replace(copy, backup)
            os.replace(new, path)
            done.append((path, backup))
        result.written = True
    except OSError as exc:
        for path, backup in reversed(done):
            try:
                shutil.copyfile(backup, path)
            except OSError:
                pass
        raise ValueError(f"--in-place: writing failed ({exc.strerror or exc}); the files already replaced were "
                         f"restored from their backups") from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
