"""The path of one launch: compose, build the job, check, create, submit, record."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from forge_launcher.bootstrap import STORAGE_ENV, save_job_spec, storage_env_value
from forge_launcher.config import compose, resolve_section, to_yaml
from forge_launcher.job import RUNS_DIR, Job, allocate_job_dir, build_job, generate_job_name, read_job_name, validate_job_name
from forge_launcher.errors import UserError
from forge_launcher.records import JobRecord, code_revision, delete_record, ensure_records_writable, save_record
from forge_launcher.secrets import literal_secret_paths, mask_env

if TYPE_CHECKING:
    from forge_launcher.plugins import PluginRegistry

log = logging.getLogger(__name__)

CLIENT_ROLE = "client"
CLIENT_LOG_DIR = "client_logs"
#: File ``forge cancel`` writes into a foreground job's directory.
CANCEL_REQUEST_FILE = "cancel_requested"
#: Seconds the workers get to exit by themselves after the client finished.
WORKER_EXIT_GRACE = 30.0


@dataclass
class LaunchRequest:
    """The launch options given on the command line."""

    config: str
    overrides: list[str] = field(default_factory=list)
    forwarded_args: list[str] = field(default_factory=list)
    print_config: bool = False
    dry_run: bool = False


def prepare_job(request: LaunchRequest, registry: PluginRegistry) -> Job:
    """Compose the config and build the job model; nothing is created on disk."""
    cfg = compose(request.config, request.overrides, registry)
    backend = registry.backend(str(cfg.backend.name))
    storage_name = str(cfg.storage.name)
    registry.storage(storage_name)
    job = build_job(
        cfg,
        config_path=Path(request.config).expanduser().absolute(),
        backend=backend,
        storage_name=storage_name,
        storage_config=resolve_section(cfg, "storage"),
        backend_config=resolve_section(cfg, "backend"),
        forwarded_args=request.forwarded_args,
    )
    # Every role mounts the storage before it reads the job directory, which
    # lives on that storage; the section travels in the environment.
    job.env[STORAGE_ENV] = storage_env_value(job.storage, job.storage_config)
    return job


def _set_job_identity(job: Job, name: str, job_dir: Path) -> None:
    from omegaconf import open_dict

    job.name = name
    job.dir = job_dir
    with open_dict(job.config):
        job.config.job.name = name
        job.config.job.dir = str(job_dir)


def launch(request: LaunchRequest, registry: PluginRegistry) -> int:
    """Launch one job and return the process exit code for the CLI."""
    if request.print_config:
        print(to_yaml(compose(request.config, request.overrides, registry)), end="")
        return 0

    job = prepare_job(request, registry)
    spec = registry.backend(job.backend)
    backend = registry.backend_hooks(job.backend)
    registry.pm.hook.forge_launcher_preflight(job=job)

    requested_name = read_job_name(job.config)
    if request.dry_run:
        if requested_name:
            name = validate_job_name(requested_name, spec.max_job_name_length)
        else:
            name = generate_job_name(job.config_path, spec.max_job_name_length)
        _set_job_identity(job, name, Path(job.storage_config["root"]) / RUNS_DIR / name)
        print_dry_run(job, registry)
        return 0

    root = registry.storage_hooks(job.storage).forge_launcher_mount(storage=job.storage_config)
    if requested_name:
        validate_job_name(requested_name, spec.max_job_name_length)
    ensure_records_writable()
    name, job_dir = allocate_job_dir(Path(root), job.config_path, requested_name, spec.max_job_name_length)
    _set_job_identity(job, name, job_dir)

    _warn_literal_secrets(job)
    try:
        (job_dir / "config.yaml").write_text(to_yaml(job.config))
        app = backend.forge_launcher_build_app(job=job)
        save_job_spec(job)
    except BaseException:
        # Nothing was recorded or submitted yet, so leave no trace behind.
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    record = JobRecord(
        name=name,
        backend=job.backend,
        storage=job.storage,
        job_dir=str(job_dir),
        config_path=str(job.config_path),
        detached=job.detached,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        code_revision=code_revision(job.config_path.parent),
        roles=[role.name for role in app.roles] + ([] if job.detached else [CLIENT_ROLE]),
        meshes={mesh.name: mesh.hosts for mesh in job.meshes},
    )
    save_record(record)

    try:
        record.handle = backend.forge_launcher_submit(job=job, app=app)
    except UserError:
        # The scheduler rejected the request before queueing anything, so the
        # launch leaves no trace and the job name can be used again.
        delete_record(record)
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    except BaseException as exc:
        record.state = "FAILED"
        record.extra["error"] = f"submission failed: {exc}"
        save_record(record)
        raise
    record.state = "RUNNING"
    save_record(record)
    log.info("job directory: %s", job_dir)
    print(f"Launched {name}  handle: {record.handle}")
    print(f"Job directory: {job_dir}")

    if job.detached:
        print(f"Follow it with: forge status {name}  |  forge logs {name} --role {CLIENT_ROLE} -f")
        return 0
    return run_client_foreground(job, record, registry)


def _warn_literal_secrets(job: Job) -> None:
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(job.config, resolve=False)
    for path in literal_secret_paths(container):
        if path.startswith("job.env."):
            # Passed to the roles through the environment, never saved.
            continue
        log.warning(
            "%s contains a literal secret value, which is masked as '****' in the saved config the workload reads. "
            "Write it as ${oc.env:NAME} and export NAME instead.", path,
        )


def print_dry_run(job: Job, registry: PluginRegistry) -> None:
    """Print the AppDef and the scheduler request as YAML, with secrets masked."""
    import yaml

    backend = registry.backend_hooks(job.backend)
    app = backend.forge_launcher_build_app(job=job)
    request = backend.forge_launcher_dryrun(job=job, app=app)
    document = {
        "job": {"name": job.name, "dir": str(job.dir), "backend": job.backend, "storage": job.storage, "detached": job.detached},
        "app": appdef_to_dict(app),
        "scheduler_request": request if isinstance(request, (dict, list, str)) or request is None else str(request),
    }
    print(yaml.safe_dump(document, sort_keys=False, default_flow_style=False), end="")


def appdef_to_dict(app: object) -> dict:
    """Describe a TorchX AppDef as plain data, with secret environment values masked."""
    roles = []
    for role in app.roles:  # type: ignore[attr-defined]
        resource = role.resource
        roles.append({
            "name": role.name,
            "replicas": role.num_replicas,
            "entrypoint": role.entrypoint,
            "args": list(role.args),
            "env": mask_env(dict(role.env)),
            "resource": {"cpu": resource.cpu, "gpu": resource.gpu, "memMB": resource.memMB, "capabilities": dict(resource.capabilities)},
            "image": role.image,
        })
    return {"name": app.name, "roles": roles, "metadata": dict(app.metadata)}  # type: ignore[attr-defined]


def client_log_path(job_dir: Path) -> Path:
    """Return the log file of a client run in the foreground (non-detached mode)."""
    return job_dir / CLIENT_LOG_DIR / "0" / "combined.log"


def _tee(stream, log_path: Path) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        for line in iter(stream.readline, b""):
            log_file.write(line)
            log_file.flush()
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()


def run_client_foreground(job: Job, record: JobRecord, registry: PluginRegistry) -> int:
    """Run ``forge bootstrap`` on this machine, stream its output, then stop the workers."""
    backend = registry.backend_hooks(job.backend)
    env = dict(os.environ)
    env.update(job.env)
    env.update(job.client_env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["FORGE_JOB_NAME"] = job.name
    command = [sys.executable, "-m", "forge_launcher", "bootstrap", "--job-dir", str(job.dir)]
    log.debug("running client: %s (env %s)", command, mask_env({k: v for k, v in env.items() if k in job.env or k in job.client_env}))
    client = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    record.extra["client_pid"] = client.pid
    record.extra["launcher_pid"] = os.getpid()
    save_record(record)
    tee = threading.Thread(target=_tee, args=(client.stdout, client_log_path(job.dir)), daemon=True)
    tee.start()

    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        try:
            os.killpg(client.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        code = client.wait()
        tee.join(timeout=5)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

    # Workers exit by themselves after the client shuts their meshes down;
    # any still running after the grace period are stopped.
    status = backend.forge_launcher_wait(record=record, timeout=WORKER_EXIT_GRACE if code == 0 else 0.0)
    if status is None or not status.is_terminal:
        backend.forge_launcher_cancel(record=record)

    cancel_requested = (job.dir / CANCEL_REQUEST_FILE).exists()
    if received or cancel_requested or code < 0:
        record.state = "CANCELLED"
    else:
        record.state = "SUCCEEDED" if code == 0 else "FAILED"
    record.extra["client_exit_code"] = code
    save_record(record)
    print(f"{job.name}: {record.state} (client exit code {code})")
    if received:
        # The shell convention for a command ended by a signal.
        return 128 + received[0]
    return 0 if record.state == "SUCCEEDED" else 1
