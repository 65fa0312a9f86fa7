"""Job records: what was launched, where, and how to reach it again.

Each launch writes ``job.json`` into its job directory and an index entry
``$FORGE_HOME/jobs/<name>.json`` (``FORGE_HOME`` defaults to ``~/.forge``) so
``forge list|status|logs|cancel`` find jobs by name or handle from any
directory. Files are replaced atomically, so a reader never sees half a record.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forge_launcher.errors import ForgeLauncherError, JobNotFoundError, UserError
from forge_launcher.job import JOB_NAME_PATTERN

log = logging.getLogger(__name__)

RECORD_FILE = "job.json"

# TorchX AppState names, plus UNKNOWN for a job whose outcome cannot be read.
TERMINAL_STATES = {"SUCCEEDED", "FAILED", "CANCELLED"}


@dataclass
class JobRecord:
    """The persistent record of one launch. Never contains secret values."""

    name: str
    backend: str
    storage: str
    job_dir: str
    config_path: str
    detached: bool
    created: str
    #: TorchX app handle, ``scheduler://session/app_id``; empty until submitted.
    handle: str = ""
    code_revision: str = ""
    #: Last state the launcher wrote; the backend's status hook is authoritative.
    state: str = "PENDING"
    roles: list[str] = field(default_factory=list)
    meshes: dict[str, int] = field(default_factory=dict)
    #: Backend-specific values the lifecycle hooks need, such as a supervisor pid.
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class JobStatus:
    """The state of a job as a backend reports it."""

    name: str
    state: str
    handle: str = ""
    backend: str = ""
    #: Exit code, failing role or other detail; empty when there is nothing to add.
    message: str = ""
    ui_url: str = ""

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


def forge_home() -> Path:
    return Path(os.environ.get("FORGE_HOME") or Path.home() / ".forge")


def _index_dir() -> Path:
    return forge_home() / "jobs"


def ensure_records_writable() -> None:
    """Create the job index directory, or raise a :class:`UserError` naming ``FORGE_HOME``."""
    index = _index_dir()
    try:
        index.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"Cannot create the job index {str(index)!r}: {exc.strerror}. "
            f"Point FORGE_HOME at a writable directory (now {str(forge_home())!r})."
        ) from exc
    if not os.access(index, os.W_OK | os.X_OK):
        raise UserError(f"The job index {str(index)!r} is not writable. Point FORGE_HOME at a writable directory.")


def _read_record(path: Path) -> JobRecord:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return JobRecord.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise ForgeLauncherError(f"Job record {str(path)!r} is corrupt ({exc}). Delete the file to forget that job.") from exc


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_record(record: JobRecord) -> None:
    """Write the record into the job directory and the index."""
    data = asdict(record)
    write_json_atomic(Path(record.job_dir) / RECORD_FILE, data)
    write_json_atomic(_index_dir() / f"{record.name}.json", data)


def delete_record(record: JobRecord) -> None:
    """Remove the record from the index and the job directory, if present."""
    (_index_dir() / f"{record.name}.json").unlink(missing_ok=True)
    (Path(record.job_dir) / RECORD_FILE).unlink(missing_ok=True)


def reload_record(record: JobRecord) -> JobRecord:
    """Return the record as its job directory has it now, or ``record`` if it cannot be read."""
    try:
        return _read_record(Path(record.job_dir) / RECORD_FILE)
    except (OSError, ForgeLauncherError):
        return record


def records_on_storage(storage_root: Path) -> list[JobRecord]:
    """Return the records of every job directory under ``<storage_root>/forge_runs``."""
    records = []
    for path in sorted(storage_root.glob(f"forge_runs/*/{RECORD_FILE}")):
        try:
            records.append(_read_record(path))
        except (OSError, ForgeLauncherError) as exc:
            log.warning("skipping unreadable job record %s: %s", path, exc)
    return records


def load_records() -> list[JobRecord]:
    """Return every indexed record, newest first."""
    records = []
    index = _index_dir()
    if not index.is_dir():
        return records
    for path in index.glob("*.json"):
        try:
            records.append(_read_record(path))
        except (OSError, ForgeLauncherError) as exc:
            log.warning("skipping unreadable job record %s: %s", path, exc)
    records.sort(key=lambda r: r.created, reverse=True)
    return records


def find_record(name_or_handle: str) -> JobRecord:
    """Find a record by job name or TorchX app handle."""
    index = _index_dir()
    # Only a valid job name can be a record's file name; anything else
    # (a handle, a 300-character typo) is matched against the handles.
    if JOB_NAME_PATTERN.match(name_or_handle) and len(name_or_handle) <= 255 - len(".json"):
        by_name = index / f"{name_or_handle}.json"
        if by_name.is_file():
            return _read_record(by_name)
    for record in load_records():
        if record.handle and record.handle == name_or_handle:
            return record
    raise JobNotFoundError(
        f"No job named {name_or_handle!r} was launched from this machine (records in {str(index)!r}). "
        f"Run 'forge list' to see the recorded jobs."
    )


def code_revision(directory: Path) -> str:
    """Return the git commit of ``directory`` (with ``-dirty`` for local changes), or ''."""
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}-dirty" if dirty else commit
