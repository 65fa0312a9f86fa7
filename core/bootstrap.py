"""``forge bootstrap``: the client's entrypoint inside the job.

In order: set the environment before anything heavy is imported, mount the
storage, find the worker meshes, then run the workload with the saved config
and watch the workers while it runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge_launcher.errors import ConfigError, ProvisionError
from forge_launcher.job import Job, Mesh
from forge_launcher.records import write_json_atomic
from forge_launcher.secrets import is_secret_name
from forge_launcher.workers import CLIENT_EXIT_FILE, client_heartbeat, find_failures

if TYPE_CHECKING:
    from forge_launcher.plugins import PluginRegistry

log = logging.getLogger(__name__)

SPEC_FILE = "job_spec.json"
#: Environment variable with the job's storage name and section as JSON.
STORAGE_ENV = "FORGE_STORAGE"
PROVISION_FILE = "provision.json"
DEFAULT_PROVISION_TIMEOUT = 300.0
#: Seconds between checks of the workload and the workers.
MONITOR_INTERVAL = 0.5
#: Seconds the workload gets to exit after TERM before it is killed.
TERMINATE_GRACE = 10.0


def save_job_spec(job: Job) -> Path:
    """Write the job, less its config object and secret values, for the client to read."""
    data = dataclasses.asdict(dataclasses.replace(job, config=None))
    data.pop("config")
    data["dir"] = str(job.dir)
    data["config_path"] = str(job.config_path)
    # Secret values reach the client through the process environment only.
    data["env"] = {k: v for k, v in job.env.items() if not is_secret_name(k)}
    data["client_env"] = {k: v for k, v in job.client_env.items() if not is_secret_name(k)}
    path = job.dir / SPEC_FILE
    write_json_atomic(path, data)
    return path


def load_job_spec(job_dir: Path) -> Job:
    """Read the job written by :func:`save_job_spec`."""
    path = job_dir / SPEC_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"No job spec at {str(path)!r}. Is {str(job_dir)!r} a forge job directory?") from exc
    data["dir"] = Path(data["dir"])
    data["config_path"] = Path(data["config_path"])
    data["meshes"] = [Mesh(**mesh) for mesh in data["meshes"]]
    return Job(**data)


def storage_env_value(name: str, section: dict[str, Any]) -> str:
    """Return the value of ``FORGE_STORAGE`` for a job, without secret-named keys."""
    public = {key: value for key, value in section.items() if not is_secret_name(key)}
    return json.dumps({"name": name, "section": public}, sort_keys=True)


def mount_from_environment(registry: PluginRegistry) -> str | None:
    """Mount the storage named in ``FORGE_STORAGE`` and return its root, or None when unset.

    Called first by the client and by every worker, because the job
    directory they read is on that storage.
    """
    value = os.environ.get(STORAGE_ENV)
    if not value:
        return None
    try:
        storage = json.loads(value)
        name, section = storage["name"], storage["section"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{STORAGE_ENV} is not valid storage JSON ({exc}): {value[:200]!r}.") from exc
    root = registry.storage_hooks(name).forge_launcher_mount(storage=section)
    log.info("storage %s mounted at %s", name, root)
    return root


def workload_command(job: Job) -> list[str]:
    """Return the workload's argv: the script or module, ``--config <saved config>``, then the job's args."""
    target = [job.script] if job.script else ["-m", str(job.module)]
    return [sys.executable, *target, "--config", str(job.saved_config), *job.args]


def prepare_environment(job: Job, registry: PluginRegistry) -> dict[str, str]:
    """Apply the plugins' bootstrap variables and the job's env to ``os.environ``; return what was set."""
    values: dict[str, str] = {}
    for contributed in reversed(registry.pm.hook.forge_launcher_bootstrap_env(job=job)):
        values.update(contributed or {})
    values.update(job.env)
    values.update(job.client_env)
    values.update({"FORGE_JOB_NAME": job.name, "FORGE_JOB_DIR": str(job.dir), "FORGE_CONFIG": str(job.saved_config)})
    os.environ.update(values)
    return values


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=TERMINATE_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_bootstrap(job_dir: Path, registry: PluginRegistry) -> int:
    """Run the client side of a job, record its exit code in the job directory and return it."""
    mounted = mount_from_environment(registry) is not None
    code = 1
    heartbeat = client_heartbeat(job_dir)
    heartbeat.start()
    try:
        code = _run_client(job_dir, registry, mounted)
        return code
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        raise
    finally:
        heartbeat.stop()
        write_json_atomic(job_dir / CLIENT_EXIT_FILE, {"code": code})


def _run_client(job_dir: Path, registry: PluginRegistry, mounted: bool) -> int:
    job = load_job_spec(job_dir)
    prepare_environment(job, registry)

    if not mounted:
        root = registry.storage_hooks(job.storage).forge_launcher_mount(storage=job.storage_config)
        log.info("storage %s mounted at %s", job.storage, root)

    timeout = float(job.backend_config.get("provision_timeout") or DEFAULT_PROVISION_TIMEOUT)
    addresses: dict[str, list[str]] = {}
    if job.meshes:
        addresses = registry.backend_hooks(job.backend).forge_launcher_provision(job=job, timeout=timeout)
        log.info("provisioned meshes: %s", {name: len(hosts) for name, hosts in addresses.items()})
    provision_file = job.dir / PROVISION_FILE
    write_json_atomic(provision_file, {"meshes": addresses})
    os.environ["FORGE_PROVISION_FILE"] = str(provision_file)

    command = workload_command(job)
    log.info("starting workload: %s", command)
    # The workload stays in the client's process group, so a scheduler that
    # stops the client's group stops the workload and its children too.
    process = subprocess.Popen(command)

    def forward(signum: int, _frame: object) -> None:
        _terminate(process)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    while True:
        code = process.poll()
        if code is not None:
            log.info("workload exited with code %d", code)
            return code
        failures = find_failures(job.dir, job.meshes, allow_clean_exit=True)
        if failures:
            _terminate(process)
            raise ProvisionError(
                "A worker died while the job was running: " + "; ".join(str(f) for f in failures)
                + ". The workload was stopped. Read the worker's log with 'forge logs "
                + job.name + " --role " + failures[0].mesh + " --replica " + str(failures[0].replica) + "'."
            )
        time.sleep(MONITOR_INTERVAL)
