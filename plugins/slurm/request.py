"""The Slurm job of a Forge job: the TorchX ``AppDef`` and the sbatch request made from it.

TorchX's ``slurm`` scheduler turns every replica of every role into one part
of a heterogeneous job and generates the sbatch script. This module adds
what TorchX 0.7.0 has no option for (account, QoS, the working and log
directories) to that request, and moves the job's environment out of the
script into sbatch's own environment, which sbatch hands to the job.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge_launcher.job import Job
from forge_launcher.launcher import CLIENT_ROLE
from forge_launcher.secrets import mask_env
from forge_launcher_slurm.config import RoleResources, SlurmConfig, read_config

if TYPE_CHECKING:
    from torchx.schedulers.api import AppDryRunInfo
    from torchx.specs import AppDef

LOGS_DIR = "logs"
LOG_FILE = "combined.log"


def role_names(job: Job) -> list[str]:
    """Return the job's TorchX role names: the client (detached mode) and one per mesh."""
    return ([CLIENT_ROLE] if job.detached else []) + [mesh.name for mesh in job.meshes]


def job_config(job: Job) -> SlurmConfig:
    """Read the job's ``backend`` section, raising ``ConfigError`` on an invalid value."""
    return read_config(job.backend_config, role_names(job))


def log_path(job_dir: Path, role: str, replica: int) -> Path:
    """Return the log file of one role replica, with its stdout and stderr."""
    return job_dir / LOGS_DIR / role / str(replica) / LOG_FILE


def job_environment(job: Job) -> dict[str, str]:
    """Return the variables every role gets, secrets included."""
    return {**job.env, "FORGE_JOB_NAME": job.name}


def _resource(resources: RoleResources, gpus: int) -> Any:
    from torchx import specs

    return specs.Resource(cpu=resources.cpus or 0, gpu=gpus, memMB=resources.mem_mb or 0)


def build_app(job: Job) -> AppDef:
    """Build the AppDef: the CPU-only client role first (detached mode), then one role per mesh."""
    from torchx import specs

    config = job_config(job)
    environment = job_environment(job)
    roles = []
    if job.detached:
        resources = config.resources_for(CLIENT_ROLE, is_client=True)
        roles.append(specs.Role(
            name=CLIENT_ROLE,
            image=os.getcwd(),
            entrypoint=sys.executable,
            args=["-m", "forge_launcher", "bootstrap", "--job-dir", str(job.dir)],
            env=dict(environment),
            num_replicas=1,
            resource=_resource(resources, gpus=0),
        ))
    for mesh in job.meshes:
        resources = config.resources_for(mesh.name, is_client=False)
        gpus = resources.gpus if resources.gpus is not None else mesh.gpus_per_host
        args = ["-m", "forge_launcher", "worker", "--job-dir", str(job.dir), "--mesh", mesh.name, "--replica", specs.macros.replica_id]
        if config.worker_host:
            args += ["--host", config.worker_host]
        roles.append(specs.Role(
            name=mesh.name,
            image=os.getcwd(),
            entrypoint=sys.executable,
            args=args,
            env=dict(environment),
            num_replicas=mesh.hosts,
            resource=_resource(resources, gpus),
        ))
    return specs.AppDef(name=job.name or "forge-job", roles=roles, metadata={"forge.job_dir": str(job.dir)})


def scheduler_cfg(config: SlurmConfig) -> dict[str, Any]:
    """Return the TorchX ``slurm`` run options that TorchX 0.7.0 has."""
    options = {"partition": config.partition, "time": config.time, "constraint": config.constraint, "comment": config.comment}
    return {key: value for key, value in options.items() if value is not None}


@dataclass
class SubmitRequest:
    """A TorchX dry-run result ready for ``schedule``, and the environment sbatch needs."""

    dryrun_info: AppDryRunInfo
    #: Variables set in sbatch's environment, which sbatch exports to every part of the job.
    environment: dict[str, str]


def prepare_request(job: Job, app: AppDef, scheduler: Any) -> SubmitRequest:
    """Ask TorchX for the sbatch request of ``app`` and complete it for this job."""
    config = job_config(job)
    info = scheduler.submit_dryrun(app, scheduler_cfg(config))
    request = info.request
    environment = job_environment(job)

    # sbatch runs in the job directory and exports its own environment (which
    # carries the job's variables) to every part.
    request.cmd += ["--export=ALL", f"--chdir={job.dir}", f"--output={job.dir / LOGS_DIR / 'sbatch-%j.log'}"]
    for name, replica in request.replicas.items():
        role, _, index = name.rpartition("-")
        if config.account:
            replica.sbatch_opts["account"] = config.account
        if config.qos:
            replica.sbatch_opts["qos"] = config.qos
        # TorchX writes the environment into the script as srun --export=ALL,K=V,...;
        # srun splits that list at commas and the script would hold secret values.
        replica.env = {}
        # One log per replica with stderr merged into stdout, appended to on requeue.
        replica.srun_opts.pop("error", None)
        replica.srun_opts["output"] = str(log_path(job.dir, role, int(index)))
        replica.srun_opts["open-mode"] = "append"
    return SubmitRequest(info, environment)


def create_log_dirs(job: Job, app: AppDef) -> None:
    """Create the log directory of every role replica: srun does not create missing directories."""
    for role in app.roles:
        for replica in range(role.num_replicas):
            log_path(job.dir, role.name, replica).parent.mkdir(parents=True, exist_ok=True)


def describe_request(submit: SubmitRequest) -> dict[str, Any]:
    """Return the sbatch command, script and environment names as plain data, secrets masked."""
    request = copy.deepcopy(submit.dryrun_info.request)
    return {
        "scheduler": "slurm",
        "sbatch": [*request.cmd, "<script below>"],
        "environment": mask_env(submit.environment),
        "script": request.materialize().splitlines(),
    }
