"""The ``local`` backend: every role runs as processes on this machine.

Roles are started by TorchX's ``local_cwd`` scheduler inside a supervisor
process (see :mod:`forge_launcher_local.supervisor`), so jobs outlive the
``forge`` command in detached mode and ``forge status|logs|cancel`` work from
any shell.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forge_launcher import hookimpl
from forge_launcher.errors import ForgeLauncherError, PreflightError
from forge_launcher.job import Job
from forge_launcher.launcher import CLIENT_ROLE
from forge_launcher.logfiles import read_lines
from forge_launcher.processes import pid_alive
from forge_launcher.plugins import BackendSpec
from forge_launcher.records import JobRecord, JobStatus, write_json_atomic
from forge_launcher.workers import wait_for_workers
from forge_launcher_local.gpus import assign_gpus, check_gpus, visible_gpus
from forge_launcher_local.supervisor import STATE_FILE

log = logging.getLogger(__name__)

BACKEND = "local"
#: Guard against a typo such as hosts=100000 starting that many processes.
DEFAULT_MAX_HOSTS = 64
#: Seconds to wait for the supervisor to report the submitted app handle.
SUBMIT_TIMEOUT = 60.0
#: Seconds to wait for the supervisor to record CANCELLED after TERM.
CANCEL_TIMEOUT = 30.0


@hookimpl
def forge_launcher_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name=BACKEND,
            description="this machine, through TorchX's local_cwd scheduler",
            supports_detached=True,
            default_detached=False,
            streams_logs=True,
            assigns_gpus=True,
            client_has_gpus=True,
        )
    ]


@hookimpl
def forge_launcher_preflight(job: Job) -> None:
    if job.backend != BACKEND:
        return
    check_gpus(job, visible_gpus())
    max_hosts = int(job.backend_config.get("max_hosts") or DEFAULT_MAX_HOSTS)
    total_hosts = sum(mesh.hosts for mesh in job.meshes)
    if total_hosts > max_hosts:
        raise PreflightError(
            f"The job has {total_hosts} worker hosts, and on the local backend each is a process on this machine; "
            f"the limit is backend.max_hosts={max_hosts}. Lower hosts or num_replicas, or raise backend.max_hosts."
        )
    if job.meshes:
        import importlib.util

        if importlib.util.find_spec("monarch") is None:
            raise PreflightError(
                f"The job has worker meshes ({', '.join(m.name for m in job.meshes)}) but torchmonarch is not installed. "
                f"Install it with: pip install 'forge-launcher[monarch]'"
            )


def _worker_role(job: Job, mesh_name: str, hosts: int, gpu_sets: list[str]) -> Any:
    from torchx import specs

    args = ["-m", "forge_launcher", "worker", "--job-dir", str(job.dir), "--mesh", mesh_name, "--replica", specs.macros.replica_id,
            "--host", str(job.backend_config.get("worker_host") or "127.0.0.1")]
    if gpu_sets:
        args += ["--gpu-sets", ";".join(gpu_sets)]
    return specs.Role(
        name=mesh_name,
        image=os.getcwd(),
        entrypoint=sys.executable,
        args=args,
        env={**job.env, "FORGE_JOB_NAME": job.name},
        num_replicas=hosts,
        resource=specs.Resource(cpu=1, gpu=len(gpu_sets[0].split(",")) if gpu_sets else 0, memMB=1024),
    )


@hookimpl
def forge_launcher_build_app(job: Job) -> Any:
    from torchx import specs

    assignment = assign_gpus(job, visible_gpus())
    if assignment.client is not None:
        job.client_env["CUDA_VISIBLE_DEVICES"] = assignment.client

    roles = []
    if job.detached:
        roles.append(specs.Role(
            name=CLIENT_ROLE,
            image=os.getcwd(),
            entrypoint=sys.executable,
            args=["-m", "forge_launcher", "bootstrap", "--job-dir", str(job.dir)],
            env={**job.env, **job.client_env, "FORGE_JOB_NAME": job.name},
            num_replicas=1,
            resource=specs.Resource(cpu=1, gpu=job.client_gpus, memMB=1024),
        ))
    for mesh in job.meshes:
        roles.append(_worker_role(job, mesh.name, mesh.hosts, assignment.meshes.get(mesh.name, [])))
    return specs.AppDef(name=job.name or "forge-job", roles=roles, metadata={"forge.job_dir": str(job.dir)})


def _scheduler_cfg(job: Job) -> dict[str, Any]:
    return {"log_dir": str(job.dir / "logs"), "prepend_cwd": False, "auto_set_cuda_visible_devices": False}


@hookimpl
def forge_launcher_dryrun(job: Job, app: Any) -> Any:
    return {"scheduler": "local_cwd", "cfg": _scheduler_cfg(job), "supervisor": [sys.executable, "-m", "forge_launcher_local.supervisor"]}


def _read_state(job_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((job_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


@hookimpl
def forge_launcher_submit(job: Job, app: Any) -> str:
    if not app.roles:
        # Nothing to run on workers: the client alone is the job.
        from torchx.specs import make_app_handle

        return make_app_handle("local_cwd", "forge", f"{job.name}-client-only")

    payload = {
        "app": app,
        "cfg": _scheduler_cfg(job),
        "job_dir": str(job.dir),
        "parent_pid": None if job.detached else os.getpid(),
        "detached": job.detached,
    }
    log_file = open(job.dir / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "forge_launcher_local.supervisor"],
            stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    finally:
        log_file.close()
    assert supervisor.stdin is not None
    supervisor.stdin.write(pickle.dumps(payload))
    supervisor.stdin.close()

    deadline = time.monotonic() + SUBMIT_TIMEOUT
    while time.monotonic() < deadline:
        state = _read_state(job.dir)
        if state.get("handle"):
            return state["handle"]
        if state.get("state") == "FAILED" or supervisor.poll() is not None:
            message = state.get("message") or f"supervisor exited with code {supervisor.returncode}"
            raise ForgeLauncherError(f"Local submission of {job.name!r} failed: {message}. See {job.dir / 'supervisor.log'}.")
        time.sleep(0.05)
    supervisor.kill()
    raise ForgeLauncherError(f"Local submission of {job.name!r} timed out after {SUBMIT_TIMEOUT:.0f} s. See {job.dir / 'supervisor.log'}.")


@hookimpl
def forge_launcher_provision(job: Job, timeout: float) -> dict[str, list[str]]:
    return wait_for_workers(job.dir, job.meshes, timeout)


@hookimpl
def forge_launcher_status(record: JobRecord) -> JobStatus:
    job_dir = Path(record.job_dir)
    state = _read_state(job_dir)
    current = state.get("state") or record.state
    message = state.get("message", "") or str(record.extra.get("error", ""))
    if current in ("PENDING", "RUNNING") and state and not pid_alive(state.get("pid")):
        current, message = "UNKNOWN", f"supervisor process {state.get('pid')} exited without recording a final state; see {job_dir / 'supervisor.log'}"
    return JobStatus(record.name, current, record.handle, BACKEND, message, ui_url=f"file://{state['log_dir']}" if state.get("log_dir") else "")


@hookimpl
def forge_launcher_wait(record: JobRecord, timeout: float | None) -> JobStatus:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = _read_state(Path(record.job_dir))
        current = state.get("state", "UNKNOWN")
        if current in ("SUCCEEDED", "FAILED", "CANCELLED") or not pid_alive(state.get("pid")):
            return JobStatus(record.name, current, record.handle, BACKEND, state.get("message", ""))
        if deadline is not None and time.monotonic() >= deadline:
            return JobStatus(record.name, current, record.handle, BACKEND)
        time.sleep(0.2)


def job_processes(job_name: str) -> list[int]:
    """Return the pids of this machine whose environment has ``FORGE_JOB_NAME=<job_name>``.

    Every role of a local job gets that variable and its children inherit it,
    so this finds the job's processes even when its supervisor is gone.
    """
    marker = f"FORGE_JOB_NAME={job_name}".encode() + b"\0"
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _stop_processes(pids: list[int], grace: float) -> list[int]:
    """Send TERM, then KILL after ``grace`` seconds; return the pids still alive."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    time.sleep(0.1)
    return [pid for pid in pids if pid_alive(pid)]


@hookimpl
def forge_launcher_cancel(record: JobRecord) -> None:
    job_dir = Path(record.job_dir)
    state = _read_state(job_dir)
    pid = state.get("pid")
    if pid_alive(pid):
        os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_TIMEOUT
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    # A supervisor that was killed cannot stop its roles: find them directly.
    leftover = job_processes(record.name)
    if leftover:
        log.warning("stopping %d leftover processes of job %s: %s", len(leftover), record.name, leftover)
        still_alive = _stop_processes(leftover, grace=10.0)
        if still_alive:
            raise ForgeLauncherError(f"Could not stop processes {still_alive} of job {record.name!r}. Stop them with: kill -9 {' '.join(map(str, still_alive))}")
    if state and state.get("state") not in ("SUCCEEDED", "FAILED", "CANCELLED"):
        state.update(state="CANCELLED", message="cancelled by forge cancel")
        write_json_atomic(job_dir / STATE_FILE, state)


def _log_file(record: JobRecord, role: str, replica: int) -> Path:
    job_dir = Path(record.job_dir)
    state = _read_state(job_dir)
    if not state.get("log_dir"):
        raise ForgeLauncherError(f"Job {record.name!r} has no logs yet: its supervisor recorded no log directory. See {job_dir / 'supervisor.log'}.")
    return Path(state["log_dir"]) / role / str(replica) / "combined.log"


@hookimpl
def forge_launcher_logs(record: JobRecord, role: str, replica: int, follow: bool) -> Iterator[str]:
    path = _log_file(record, role, replica)
    return read_lines(path, follow, lambda: forge_launcher_status(record).is_terminal, record.name)
