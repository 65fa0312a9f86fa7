"""``forge list|status|logs|cancel``: find the job's record and ask its backend.

A non-detached job's client runs in the foreground ``forge`` process, which
records the job's outcome itself. Its state, its client log and stopping its
client are handled here for every backend; the backend handles the workers.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from forge_launcher.errors import ForgeLauncherError, UserError
from forge_launcher.plugins import load_registry
from forge_launcher.launcher import CANCEL_REQUEST_FILE, CLIENT_ROLE, client_log_path
from forge_launcher.logfiles import read_lines
from forge_launcher.processes import pid_alive
from forge_launcher.records import JobRecord, JobStatus, find_record, load_records, records_on_storage, reload_record, save_record

if TYPE_CHECKING:
    from forge_launcher.plugins import PluginRegistry

log = logging.getLogger(__name__)

#: Seconds ``forge cancel`` waits for a foreground forge process to record the result.
FOREGROUND_RESULT_TIMEOUT = 30.0


def _foreground_status(record: JobRecord) -> JobStatus:
    message = str(record.extra.get("error", ""))
    if record.state == "RUNNING" and not pid_alive(record.extra.get("launcher_pid")):
        return JobStatus(record.name, "UNKNOWN", record.handle, record.backend,
                         f"the forge process (pid {record.extra.get('launcher_pid')}) that ran the client exited without recording a result")
    return JobStatus(record.name, record.state, record.handle, record.backend, message)


def _status_of(record: JobRecord, registry: PluginRegistry) -> JobStatus:
    if not record.detached:
        return _foreground_status(record)
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
    """Return every recorded job, newest first, then the other jobs on the same storage roots.

    The second kind are jobs launched from another machine or another
    ``FORGE_HOME`` that wrote into a storage root this machine has used.
    """
    registry = load_registry()
    records = load_records()
    statuses = [_status_for_listing(record, registry) for record in records]

    known = {record.name for record in records}
    roots = sorted({Path(record.job_dir).parent.parent for record in records})
    for root in roots:
        for record in records_on_storage(root):
            if record.name not in known:
                known.add(record.name)
                statuses.append(_status_for_listing(record, registry))
        for found in registry.pm.hook.forge_launcher_list(storage_root=str(root)):
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
    if role == CLIENT_ROLE and not record.detached:
        yield from read_lines(client_log_path(Path(record.job_dir)), follow, lambda: _foreground_status(reload_record(record)).is_terminal, record.name)
        return
    registry = load_registry()
    lines = registry.backend_hooks(record.backend).forge_launcher_logs(record=record, role=role, replica=replica, follow=follow)
    yield from lines or []


def cancel_job(name_or_handle: str) -> JobStatus:
    """Stop every role of a recorded job and return its state afterwards."""
    record = find_record(name_or_handle)
    registry = load_registry()
    if not record.detached:
        _stop_foreground_client(record)
    registry.backend_hooks(record.backend).forge_launcher_cancel(record=record)
    if not record.detached:
        _wait_for_foreground_result(record)
    # The backend or the foreground forge process may have updated the record.
    record = find_record(record.name)
    status = _status_of(record, registry)
    if status.is_terminal and record.state != status.state:
        record.state = status.state
        save_record(record)
    return status


def _stop_foreground_client(record: JobRecord) -> None:
    # The marker makes the foreground forge process record CANCELLED rather
    # than the client's exit code.
    (Path(record.job_dir) / CANCEL_REQUEST_FILE).touch()
    client_pid = record.extra.get("client_pid")
    if pid_alive(client_pid):
        try:
            os.killpg(int(client_pid), signal.SIGTERM)
        except ProcessLookupError:
            pass


def _wait_for_foreground_result(record: JobRecord) -> None:
    deadline = time.monotonic() + FOREGROUND_RESULT_TIMEOUT
    while time.monotonic() < deadline:
        current = reload_record(record)
        if current.state != "RUNNING" or not pid_alive(current.extra.get("launcher_pid")):
            return
        time.sleep(0.1)
