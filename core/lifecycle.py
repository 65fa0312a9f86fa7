"""``forge list|status|logs|cancel``: find the job's record and ask its backend."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from forge_launcher.errors import ForgeLauncherError, UserError
from forge_launcher.plugins import load_registry
from forge_launcher.records import JobRecord, JobStatus, find_record, load_records, save_record

if TYPE_CHECKING:
    from forge_launcher.plugins import PluginRegistry

log = logging.getLogger(__name__)


def _status_of(record: JobRecord, registry: PluginRegistry) -> JobStatus:
    if record.backend not in registry.backends:
        return JobStatus(record.name, "UNKNOWN", record.handle, record.backend, f"backend {record.backend!r} is not installed")
    status = registry.backend_hooks(record.backend).forge_launcher_status(record=record)
    if status is None:
        return JobStatus(record.name, record.state, record.handle, record.backend)
    return status


def job_status(name_or_handle: str) -> JobStatus:
    """Return the state of one recorded job, as its backend reports it."""
    record = find_record(name_or_handle)
    return _status_of(record, load_registry())


def _status_for_listing(record: JobRecord, registry: PluginRegistry) -> JobStatus:
    # One unreachable scheduler must not hide every other job from 'forge list'.
    try:
        return _status_of(record, registry)
    except ForgeLauncherError as exc:
        log.warning("status of job %s failed: %s", record.name, exc)
        return JobStatus(record.name, "UNKNOWN", record.handle, record.backend, str(exc))


def list_jobs() -> list[JobStatus]:
    """Return every recorded job, newest first, then jobs the backends find on the same storage.

    The second kind are jobs launched from another machine or another
    ``FORGE_HOME`` that wrote into a storage root this machine has used.
    """
    registry = load_registry()
    records = load_records()
    statuses = [_status_for_listing(record, registry) for record in records]

    known = {record.name for record in records}
    roots = sorted({str(Path(record.job_dir).parent.parent) for record in records})
    for root in roots:
        for found in registry.pm.hook.forge_launcher_list(storage_root=root):
            for status in found or []:
                if status.name not in known:
                    known.add(status.name)
                    statuses.append(status)
    return statuses


def job_logs(name_or_handle: str, role: str, replica: int, follow: bool) -> Iterator[str]:
    """Yield log lines of one role replica of a recorded job."""
    record = find_record(name_or_handle)
    if record.roles and role not in record.roles:
        raise UserError(f"Job {record.name!r} has no role {role!r}. Its roles are: {', '.join(record.roles)}.")
    replicas = record.meshes.get(role, 1)
    if replica < 0 or replica >= replicas:
        raise UserError(f"Role {role!r} of job {record.name!r} has replicas 0 to {replicas - 1}; got --replica {replica}.")
    registry = load_registry()
    lines = registry.backend_hooks(record.backend).forge_launcher_logs(record=record, role=role, replica=replica, follow=follow)
    yield from lines or []


def cancel_job(name_or_handle: str) -> JobStatus:
    """Stop every role of a recorded job and return its state afterwards."""
    record = find_record(name_or_handle)
    registry = load_registry()
    backend = registry.backend_hooks(record.backend)
    backend.forge_launcher_cancel(record=record)
    # The backend or a foreground launcher may have updated the record.
    record = find_record(record.name)
    status = _status_of(record, registry)
    if status.is_terminal and record.state != status.state:
        record.state = status.state
        save_record(record)
    return status
