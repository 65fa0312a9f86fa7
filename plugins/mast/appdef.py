"""The TorchX AppDef of a MAST job, and the checks on the job's shape before it is built.

Detached mode: a CPU-only ``client`` role first, running ``forge bootstrap``,
then one role per worker mesh with one replica per host. Non-detached mode:
the mesh roles only, because the client runs on the submitting machine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from forge_launcher.errors import ConfigError
from forge_launcher.job import Job
from forge_launcher.launcher import CLIENT_ROLE
from forge_launcher.secrets import is_secret_name
from forge_launcher_mast.config import MastConfig

if TYPE_CHECKING:
    from torchx.specs import AppDef, Resource

log = logging.getLogger(__name__)

#: Storage kinds whose root is a directory of the submitting machine only.
HOST_LOCAL_STORAGES = frozenset({"local"})


def _entry_is_true(entry: Any, key: str) -> bool:
    return bool(entry.get(key, False)) if entry is not None else False


def _gpu_services_without_hosts(job: Job) -> list[str]:
    from omegaconf import OmegaConf

    services = job.config.get("services") if job.config is not None else None
    if services is None or not OmegaConf.is_dict(services):
        return []
    found = []
    for key in services:
        entry = services[key]
        if entry is None or not OmegaConf.is_dict(entry):
            continue
        if _entry_is_true(entry, "with_gpus") and not entry.get("hosts"):
            found.append(f"services.{key}")
    return found


def host_gpus(config: MastConfig) -> int:
    """Return the GPUs of one worker host: the named resource's, else ``backend.host.gpu``."""
    from torchx.specs import named_resources

    if config.sku in named_resources:
        return named_resources[config.sku].gpu
    return config.host.gpu


def check_job(job: Job, config: MastConfig) -> None:
    """Raise :class:`ConfigError` when the job cannot be placed on MAST hosts as configured."""
    if job.detached:
        inside_client = _gpu_services_without_hosts(job)
        if inside_client:
            first = inside_client[0]
            raise ConfigError(
                f"{', '.join(inside_client)} {'has' if len(inside_client) == 1 else 'have'} with_gpus: true but no hosts. "
                f"On MAST the client role has no GPUs, so every GPU service needs worker hosts: set {first}.hosts=N (N >= 1)."
            )
        for mesh in job.meshes:
            if mesh.name == CLIENT_ROLE:
                raise ConfigError(
                    f"Mesh name {mesh.name!r} (from {mesh.source}) is taken by the client role in detached mode. "
                    f"Set {mesh.source}.mesh_name to another name."
                )
    elif not job.meshes:
        raise ConfigError(
            "With detached=false the client runs on this machine and only worker meshes go to MAST, "
            "but this job has none (no service or actor with hosts). Set detached=true, or use +backend=local."
        )

    gpus = host_gpus(config)
    for mesh in job.meshes:
        if mesh.with_gpus and mesh.procs > gpus:
            raise ConfigError(
                f"{mesh.source}.procs is {mesh.procs}, but a host of SKU {config.sku!r} has {gpus} GPUs. "
                f"Lower {mesh.source}.procs to at most {gpus}, or choose a larger SKU with backend.sku=NAME."
            )

    if job.storage in HOST_LOCAL_STORAGES:
        log.warning(
            "storage %r is a directory of this machine only, so MAST hosts cannot read the job directory; "
            "submit with a shared storage such as +storage=oilfs", job.storage,
        )


def move_secret_env(job: Job) -> None:
    """Move secret-named variables of ``backend.env`` into ``job.env``.

    The saved job spec keeps ``backend_config`` as it is but leaves secret
    names out of ``job.env``, so a secret there reaches the roles' environment
    and no file. ``job.env`` keeps its own value on equal names.
    """
    env = job.backend_config.get("env")
    if not isinstance(env, dict):
        return
    for name in [name for name in env if is_secret_name(name)]:
        value = env.pop(name)
        job.env.setdefault(str(name), "" if value is None else str(value))


def worker_resource(config: MastConfig) -> Resource:
    """Return the resource of one worker host of ``config.sku``."""
    from torchx.specs import Resource, named_resources

    if config.sku in named_resources:
        resource = named_resources[config.sku]
    else:
        log.info("SKU %r is not a TorchX named resource here; using backend.host for its resources", config.sku)
        resource = Resource(cpu=config.host.cpu, gpu=config.host.gpu, memMB=config.host.memMB)
    # NOTE: the "sku" capability makes the host type visible in the AppDef.
    # Whether mast_conda reads it is not verified, because that scheduler
    # is only available inside Meta.
    resource.capabilities = {**resource.capabilities, **config.capabilities, "sku": config.sku}
    return resource


def client_resource(config: MastConfig) -> Resource:
    """Return the resource of the client's host: a named SKU, or CPU and memory only."""
    from torchx.specs import Resource, named_resources

    sku = config.client.sku
    if sku is None:
        return Resource(cpu=config.client.cpu, gpu=0, memMB=config.client.memMB)
    if sku not in named_resources:
        return Resource(cpu=config.client.cpu, gpu=0, memMB=config.client.memMB, capabilities={"sku": sku})
    resource = named_resources[sku]
    resource.capabilities = {**resource.capabilities, "sku": sku}
    return resource


def build_app(job: Job, config: MastConfig) -> AppDef:
    """Return the AppDef of ``job``: the client role first in detached mode, then one role per mesh.

    Call :func:`move_secret_env` before reading ``config`` from the job.
    """
    from torchx import specs

    env = {**config.env, **job.env, "FORGE_JOB_NAME": job.name}

    roles = []
    if job.detached:
        roles.append(specs.Role(
            name=CLIENT_ROLE,
            image=config.image,
            entrypoint=config.client_command[0],
            args=[*config.client_command[1:], "--job-dir", str(job.dir)],
            env={**env, **job.client_env, "FORGE_CONFIG": str(job.saved_config)},
            num_replicas=1,
            resource=client_resource(config),
        ))
    for mesh in job.meshes:
        roles.append(specs.Role(
            name=mesh.name,
            image=config.image,
            entrypoint=config.worker_command[0],
            args=[
                *config.worker_command[1:],
                "--job-dir", str(job.dir),
                "--mesh", mesh.name,
                "--replica", specs.macros.replica_id,
                "--port", str(config.worker_port),
            ],
            env=dict(env),
            num_replicas=mesh.hosts,
            resource=worker_resource(config),
        ))

    metadata = {"forge.job_dir": str(job.dir), **config.app_metadata}
    return specs.AppDef(name=job.name or "forge-job", roles=roles, metadata=metadata)
