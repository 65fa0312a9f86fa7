"""The ``mast`` backend: a Forge job as one TorchX AppDef submitted to MAST.

Settings come from ``conf/backend/mast.yaml`` (see :mod:`forge_launcher_mast.config`),
the AppDef from :mod:`forge_launcher_mast.appdef`, and every scheduler call
goes through TorchX's runner (:mod:`forge_launcher_mast.scheduler`), so tests
can register their own scheduler under the configured name.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forge_launcher import hookimpl
from forge_launcher.errors import ForgeLauncherError, ProvisionError
from forge_launcher.job import Job, Mesh
from forge_launcher.plugins import BackendSpec
from forge_launcher.records import RECORD_FILE, JobRecord, JobStatus
from forge_launcher.secrets import is_secret_name
from forge_launcher.workers import wait_for_workers
from forge_launcher_mast import appdef, scheduler
from forge_launcher_mast.config import MastConfig, read_config

log = logging.getLogger(__name__)

BACKEND = "mast"
# NOTE: MAST's own limit on job names is not documented outside Meta; 50
# characters is a conservative guess that leaves room for the scheduler's
# suffixes. Raise it once the real limit is known.
MAX_JOB_NAME_LENGTH = 50
#: Seconds between scheduler polls while waiting for a job or its hosts.
POLL_INTERVAL = 5.0
#: Environment variable TorchX's runner sets in every role to the app handle.
TORCHX_JOB_ID = "TORCHX_JOB_ID"


@hookimpl
def forge_launcher_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name=BACKEND,
            description="MAST hosts, through a TorchX scheduler (default mast_conda)",
            supports_detached=True,
            default_detached=True,
            streams_logs=True,
            assigns_gpus=False,
            client_has_gpus=False,
            max_job_name_length=MAX_JOB_NAME_LENGTH,
        )
    ]


def _config(job: Job) -> MastConfig:
    appdef.move_secret_env(job)
    return read_config(job.backend_config)


@hookimpl
def forge_launcher_preflight(job: Job) -> None:
    if job.backend != BACKEND:
        return
    appdef.check_job(job, _config(job))


@hookimpl
def forge_launcher_build_app(job: Job) -> Any:
    return appdef.build_app(job, _config(job))


@hookimpl
def forge_launcher_dryrun(job: Job, app: Any) -> Any:
    return scheduler.dryrun_request(app, _config(job))


@hookimpl
def forge_launcher_submit(job: Job, app: Any) -> str:
    handle, ui_url = scheduler.submit(app, _config(job), job.name)
    if ui_url:
        # The core prints the handle; the scheduler's UI link is MAST-specific,
        # so this plugin prints it.
        print(f"MAST UI: {ui_url}")
    return handle


@hookimpl
def forge_launcher_bootstrap_env(job: Job) -> dict[str, str]:
    if job.backend != BACKEND:
        return {}
    # Secret values reach the client through the role's environment, never
    # through the saved job spec this config was read from.
    env = read_config(job.backend_config).env
    return {name: value for name, value in env.items() if not is_secret_name(name)}


# -- provision -------------------------------------------------------------


def _read_handle(job_dir: Path) -> str:
    try:
        return str(json.loads((job_dir / RECORD_FILE).read_text()).get("handle") or "")
    except (OSError, ValueError):
        return ""


def _job_handle(job: Job, deadline: float) -> str:
    # The runner sets TORCHX_JOB_ID in every role. Without it, the handle the
    # launcher records after submission is read from the job directory.
    handle = os.environ.get(TORCHX_JOB_ID, "")
    if handle and "{" not in handle:
        return handle
    while time.monotonic() < deadline:
        handle = _read_handle(job.dir)
        if handle:
            return handle
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
    return ""


def _missing_hosts(meshes: list[Mesh], hostnames: dict[str, list[str]]) -> dict[str, list[int]]:
    missing: dict[str, list[int]] = {}
    for mesh in meshes:
        names = hostnames.get(mesh.name, [])
        absent = [i for i in range(mesh.hosts) if i >= len(names) or not names[i]]
        if absent:
            missing[mesh.name] = absent
    return missing


@hookimpl
def forge_launcher_provision(job: Job, timeout: float) -> dict[str, list[str]]:
    """Return ``tcp://HOST:PORT`` per host from the scheduler's replica hostnames.

    Falls back to the workers' registration in the job directory when the job
    has no app handle or the scheduler lists no hostnames.
    """
    config = read_config(job.backend_config)
    deadline = time.monotonic() + timeout
    handle = _job_handle(job, deadline)
    if not handle:
        log.warning("no app handle for job %s; waiting for the workers to register instead", job.name)
        return wait_for_workers(job.dir, job.meshes, max(0.0, deadline - time.monotonic()))

    while True:
        try:
            hostnames = scheduler.replica_hostnames(handle)
        except ForgeLauncherError as exc:
            log.warning("cannot describe %s (%s); waiting for the workers to register instead", handle, exc)
            hostnames = None
        if hostnames is None:
            return wait_for_workers(job.dir, job.meshes, max(0.0, deadline - time.monotonic()))

        missing = _missing_hosts(job.meshes, hostnames)
        if not missing:
            return {
                mesh.name: [f"tcp://{host}:{config.worker_port}" for host in hostnames[mesh.name][: mesh.hosts]]
                for mesh in job.meshes
            }
        if time.monotonic() >= deadline:
            detail = "; ".join(f"mesh {name!r} hosts {hosts}" for name, hosts in missing.items())
            raise ProvisionError(
                f"Timed out after {timeout:.0f} s waiting for {handle} to place its hosts: missing {detail}. "
                f"Check the job with 'forge status {job.name}', or raise backend.provision_timeout."
            )
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


# -- lifecycle -------------------------------------------------------------


def _recorded_status(record: JobRecord, message: str = "") -> JobStatus:
    return JobStatus(record.name, record.state, record.handle, BACKEND, message or str(record.extra.get("error", "")))


@hookimpl
def forge_launcher_status(record: JobRecord) -> JobStatus:
    if not record.handle:
        # Submission failed or has not happened, so only the record has a state.
        return _recorded_status(record)

    try:
        status = scheduler.app_status(record.handle)
    except ForgeLauncherError as exc:
        return JobStatus(record.name, "UNKNOWN", record.handle, BACKEND, str(exc))
    if status is None:
        return JobStatus(record.name, "UNKNOWN", record.handle, BACKEND, f"the scheduler has no job {record.handle}; it may have been purged after it ended")
    message = status.msg if status.msg and status.msg != "<NONE>" else ""
    return JobStatus(record.name, status.state.name, record.handle, BACKEND, message, ui_url=status.ui_url or "")


@hookimpl
def forge_launcher_wait(record: JobRecord, timeout: float | None) -> JobStatus:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = forge_launcher_status(record)
        if status.is_terminal or status.state == "UNKNOWN":
            return status
        if deadline is not None and time.monotonic() >= deadline:
            return status
        pause = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, max(0.0, deadline - time.monotonic()))
        time.sleep(pause)


@hookimpl
def forge_launcher_cancel(record: JobRecord) -> None:
    if not record.handle:
        return
    scheduler.cancel(record.handle)


@hookimpl
def forge_launcher_logs(record: JobRecord, role: str, replica: int, follow: bool) -> Iterator[str]:
    if not record.handle:
        reason = str(record.extra.get("error") or "no app handle was recorded").rstrip(".")
        raise ForgeLauncherError(f"Job {record.name!r} was never submitted, so it has no logs ({reason}).")
    return iter(scheduler.log_lines(record.handle, role, replica, follow))
