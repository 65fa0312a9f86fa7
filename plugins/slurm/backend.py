"""The ``slurm`` backend: hook implementations.

A job is one heterogeneous Slurm job, submitted with TorchX's ``slurm``
scheduler: the client role (detached mode) is its first part and every host
of every worker mesh another. Workers register their addresses in the job
directory, which must be on storage that every node mounts. The job's
outcome is its client's, read from ``client_exit.json`` in the job directory
once Slurm reports the job ended.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forge_launcher import hookimpl
from forge_launcher.errors import ForgeLauncherError
from forge_launcher.job import Job
from forge_launcher.plugins import BackendSpec
from forge_launcher.records import TERMINAL_STATES, JobRecord, JobStatus, write_json_atomic
from forge_launcher.workers import CLIENT_EXIT_FILE, wait_for_workers
from forge_launcher.logfiles import read_lines
from forge_launcher_slurm import preflight, request

log = logging.getLogger(__name__)

BACKEND = "slurm"
#: Written by ``forge cancel``, so the job reads CANCELLED after Slurm has purged it.
CANCEL_FILE = "slurm_cancelled.json"
#: Seconds ``forge cancel`` waits for every part of the job to end.
CANCEL_TIMEOUT = 120.0
#: Seconds between state queries while waiting.
POLL_INTERVAL = 1.0


@hookimpl
def forge_launcher_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name=BACKEND,
            description="a Slurm cluster, through TorchX's slurm scheduler (sbatch)",
            supports_detached=True,
            default_detached=True,
            streams_logs=True,
            assigns_gpus=True,
            client_has_gpus=False,
        )
    ]


@hookimpl
def forge_launcher_preflight(job: Job) -> None:
    if job.backend != BACKEND:
        return
    preflight.check_job(job)


@hookimpl
def forge_launcher_build_app(job: Job) -> Any:
    return request.build_app(job)


@hookimpl
def forge_launcher_dryrun(job: Job, app: Any) -> Any:
    from forge_launcher_slurm.scheduler import create_scheduler

    if not app.roles:
        return {"scheduler": "slurm", "sbatch": None, "note": "no worker meshes: the client runs here and nothing is submitted"}
    return request.describe_request(request.prepare_request(job, app, create_scheduler()))


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the duration, for sbatch to inherit."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@hookimpl
def forge_launcher_submit(job: Job, app: Any) -> str:
    from torchx.specs import make_app_handle

    from forge_launcher_slurm.scheduler import SESSION_NAME, create_scheduler

    if not app.roles:
        # Non-detached with no meshes: the foreground client alone is the job.
        return make_app_handle(BACKEND, SESSION_NAME, f"{job.name}-client-only")

    scheduler = create_scheduler()
    submit = request.prepare_request(job, app, scheduler)
    request.create_log_dirs(job, app)
    # TorchX runs sbatch with this process's environment, and sbatch exports
    # it to the job. So the job's variables reach every part without being
    # written into the script.
    try:
        with _environment(submit.environment):
            app_id = scheduler.schedule(submit.dryrun_info)
    except subprocess.CalledProcessError as exc:
        raise ForgeLauncherError(
            f"sbatch rejected job {job.name!r} with exit code {exc.returncode}, and printed why above. "
            f"Check the backend settings (partition, account, qos, time) with: forge ... +backend=slurm --dry-run"
        ) from exc
    log.info("submitted %s as Slurm job %s", job.name, app_id)
    return make_app_handle(BACKEND, SESSION_NAME, app_id)


@hookimpl
def forge_launcher_provision(job: Job, timeout: float) -> dict[str, list[str]]:
    # squeue shows a node per part but not the port each worker chose, so the
    # addresses come from the workers' registration in the job directory.
    return wait_for_workers(job.dir, job.meshes, timeout)


def _slurm_job_id(record: JobRecord) -> str | None:
    """Return the Slurm job id of a record, or ``None`` when nothing was submitted to Slurm."""
    from torchx.specs import parse_app_handle

    if not record.handle:
        return None
    app_id = parse_app_handle(record.handle).app_id
    return app_id if app_id.isdigit() else None


def _client_exit_code(job_dir: Path) -> int | None:
    try:
        return int(json.loads((job_dir / CLIENT_EXIT_FILE).read_text())["code"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _evaluate(record: JobRecord) -> tuple[JobStatus, bool]:
    """Return the job's status and whether the job has ended, even where its outcome is unknown."""
    def status(state: str, message: str = "") -> JobStatus:
        return JobStatus(record.name, state, record.handle, BACKEND, message)

    app_id = _slurm_job_id(record)
    if app_id is None:
        return status(record.state, str(record.extra.get("error", ""))), record.state in TERMINAL_STATES

    from torchx.specs import AppState

    from forge_launcher_slurm.scheduler import create_scheduler

    job_dir = Path(record.job_dir)
    response = create_scheduler().describe(app_id)
    cancelled = (job_dir / CANCEL_FILE).exists()
    client_code = _client_exit_code(job_dir) if record.detached else None

    if response is None:
        # Slurm no longer lists the job because it keeps no accounting and slurmctld purged the job.
        if cancelled:
            return status("CANCELLED", f"cancelled with forge cancel; Slurm no longer lists job {app_id}"), True
        if client_code is not None:
            return _client_outcome(record, client_code), True
        return status(
            "UNKNOWN",
            f"finished, outcome unknown: Slurm no longer lists job {app_id} and keeps no accounting record of it (sacct). "
            f"Read the client's log with 'forge logs {record.name}'.",
        ), True

    state = response.state
    if state == AppState.CANCELLED:
        return status("CANCELLED", response.msg), True
    if state in (AppState.SUCCEEDED, AppState.FAILED) and client_code is not None:
        return _client_outcome(record, client_code), True
    ended = state in (AppState.SUCCEEDED, AppState.FAILED)
    return status(AppState(state).name, "" if state == AppState.RUNNING else response.msg), ended


def _client_outcome(record: JobRecord, code: int) -> JobStatus:
    if code == 0:
        return JobStatus(record.name, "SUCCEEDED", record.handle, BACKEND)
    return JobStatus(record.name, "FAILED", record.handle, BACKEND, f"client exited with code {code}")


@hookimpl
def forge_launcher_status(record: JobRecord) -> JobStatus:
    return _evaluate(record)[0]


@hookimpl
def forge_launcher_wait(record: JobRecord, timeout: float | None) -> JobStatus:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status, ended = _evaluate(record)
        if ended or (deadline is not None and time.monotonic() >= deadline):
            return status
        time.sleep(POLL_INTERVAL)


def _parts_ended(app_id: str) -> bool:
    from forge_launcher_slurm.scheduler import TERMINAL, query_squeue, translate_state

    return all(translate_state(state) in TERMINAL for _, state in query_squeue(app_id))


@hookimpl
def forge_launcher_cancel(record: JobRecord) -> None:
    from forge_launcher_slurm.scheduler import create_scheduler

    app_id = _slurm_job_id(record)
    if app_id is None:
        return
    status, ended = _evaluate(record)
    if ended:
        log.info("job %s already ended (%s); nothing to cancel", record.name, status.state)
        return

    write_json_atomic(Path(record.job_dir) / CANCEL_FILE, {"slurm_job_id": app_id, "time": time.time()})
    try:
        create_scheduler().cancel(app_id)
    except subprocess.CalledProcessError as exc:
        # scancel fails on a job that ended since the check above.
        if not _evaluate(record)[1]:
            raise ForgeLauncherError(f"scancel {app_id} failed with exit code {exc.returncode} for job {record.name!r}. Try 'scancel {app_id}' yourself.") from exc

    # Slurm lists a part as COMPLETING until its processes are gone.
    deadline = time.monotonic() + CANCEL_TIMEOUT
    while not _parts_ended(app_id):
        if time.monotonic() >= deadline:
            raise ForgeLauncherError(
                f"Slurm job {app_id} of {record.name!r} still has running parts {CANCEL_TIMEOUT:.0f} s after scancel. "
                f"Check it with 'squeue --jobs {app_id}'."
            )
        time.sleep(POLL_INTERVAL)


@hookimpl
def forge_launcher_logs(record: JobRecord, role: str, replica: int, follow: bool) -> Iterator[str]:
    # TorchX 0.7.0's SlurmScheduler.log_iter is not used: while the job runs
    # it keeps reading until the job ends, even without should_tail, and it
    # finds the file through .torchxslurmjobdirs in the current directory.
    # srun's --output points at a file in the job directory instead.
    path = request.log_path(Path(record.job_dir), role, replica)
    return read_lines(path, follow, lambda: _evaluate(record)[1], record.name)
