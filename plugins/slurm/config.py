"""The ``backend`` config section of a Slurm job, read and checked before anything is queued."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from forge_launcher.errors import ConfigError

# Slurm's time limit formats: minutes, minutes:seconds, hours:minutes:seconds,
# days-hours, days-hours:minutes and days-hours:minutes:seconds.
TIME_PATTERN = re.compile(r"^(\d+|\d+:\d+|\d+:\d+:\d+|\d+-\d+|\d+-\d+:\d+|\d+-\d+:\d+:\d+|UNLIMITED|INFINITE)$")
# Values that sbatch reads from ``#SBATCH`` lines, where whitespace ends a value.
SBATCH_LINE_OPTIONS = ("partition", "account", "qos", "constraint")
RESOURCE_KEYS = ("cpus", "mem_mb", "gpus")


@dataclass(frozen=True)
class RoleResources:
    """The resources each host (Slurm node) of one role requests. ``None`` leaves the choice to Slurm."""

    #: ``--cpus-per-task``: CPUs per host, for the one task each host runs.
    cpus: int | None = None
    #: ``--mem``: memory per host in MB.
    mem_mb: int | None = None
    #: ``--gpus-per-task``: GPUs per host. ``None`` means the mesh's ``procs``
    #: when it has ``with_gpus``, else none. The client role never gets GPUs.
    gpus: int | None = None

    def merged_with(self, override: RoleResources) -> RoleResources:
        """Return these resources with the fields that ``override`` sets replaced."""
        changes = {key: getattr(override, key) for key in RESOURCE_KEYS if getattr(override, key) is not None}
        return replace(self, **changes)


@dataclass(frozen=True)
class SlurmConfig:
    """The Slurm backend's settings, from ``conf/backend/slurm.yaml`` and overrides."""

    #: ``--partition`` of every part of the job. ``None`` is the cluster's default partition.
    partition: str | None = None
    #: ``--time`` limit in a Slurm time format, such as ``01:30:00``.
    time: str | None = None
    #: ``--account`` to charge.
    account: str | None = None
    #: ``--qos`` (quality of service).
    qos: str | None = None
    #: ``--constraint``: node features every host must have.
    constraint: str | None = None
    #: ``--comment`` stored with the Slurm job.
    comment: str | None = None
    #: Resources of the client role's host.
    client: RoleResources = field(default_factory=RoleResources)
    #: Resources of each worker host.
    worker: RoleResources = field(default_factory=RoleResources)
    #: Per-role overrides of ``client`` or ``worker``, keyed by role (mesh) name.
    roles: dict[str, RoleResources] = field(default_factory=dict)
    #: Address that workers listen on and publish. ``None`` is each node's FQDN.
    worker_host: str | None = None

    def resources_for(self, role: str, is_client: bool) -> RoleResources:
        """Return the resources of ``role``: the client or worker defaults with its override applied."""
        base = self.client if is_client else self.worker
        override = self.roles.get(role)
        return base.merged_with(override) if override is not None else base


def _optional_text(section: Mapping[str, Any], key: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list, bool)):
        raise ConfigError(f"backend.{key} must be a string, got {value!r}. Set it with backend.{key}=VALUE.")
    text = str(value)
    if key in SBATCH_LINE_OPTIONS and (not text.strip() or any(c.isspace() for c in text)):
        raise ConfigError(
            f"backend.{key} must not contain whitespace or line breaks, got {text!r}: sbatch reads it from an "
            f"'#SBATCH' line, where whitespace ends the value. Use the name Slurm shows (sinfo, sacctmgr)."
        )
    return text


def _optional_count(section: Mapping[str, Any], key: str, where: str, minimum: int) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}.{key} must be an integer >= {minimum} or null, got {value!r}. Override it with {where}.{key}=N.")
    return value


def _read_resources(section: Any, where: str) -> RoleResources:
    if section is None:
        return RoleResources()
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a mapping with cpus, mem_mb and gpus, got {section!r}.")
    unknown = sorted(set(section) - set(RESOURCE_KEYS))
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}. The known keys are {list(RESOURCE_KEYS)}.")
    return RoleResources(
        cpus=_optional_count(section, "cpus", where, minimum=1),
        mem_mb=_optional_count(section, "mem_mb", where, minimum=1),
        gpus=_optional_count(section, "gpus", where, minimum=0),
    )


def read_config(section: Mapping[str, Any], role_names: list[str]) -> SlurmConfig:
    """Read and check the resolved ``backend`` section of a job whose roles are ``role_names``.

    Raises :class:`ConfigError` naming the key, the value and the fix.
    """
    time = _optional_text(section, "time")
    if time is not None and not TIME_PATTERN.match(time):
        raise ConfigError(
            f"backend.time {time!r} is not a Slurm time limit. Use minutes, 'HH:MM:SS' or 'D-HH:MM:SS', "
            f"for example backend.time=01:30:00."
        )

    roles_section = section.get("roles") or {}
    if not isinstance(roles_section, Mapping):
        raise ConfigError(f"backend.roles must map role names to cpus, mem_mb and gpus, got {roles_section!r}.")
    unknown_roles = sorted(str(name) for name in roles_section if str(name) not in role_names)
    if unknown_roles:
        raise ConfigError(
            f"backend.roles names roles that this job does not have: {unknown_roles}. "
            f"The job's roles are: {', '.join(role_names) or 'none'}."
        )
    roles = {str(name): _read_resources(value, f"backend.roles.{name}") for name, value in roles_section.items()}

    client = _read_resources(section.get("client"), "backend.client")
    if client.gpus:
        raise ConfigError(
            f"backend.client.gpus is {client.gpus}, but the Slurm client role is CPU-only. "
            f"Give GPU work its own mesh (hosts: 1 on the actor or service) and set backend.client.gpus=null."
        )
    worker_host = _optional_text(section, "worker_host")
    return SlurmConfig(
        partition=_optional_text(section, "partition"),
        time=time,
        account=_optional_text(section, "account"),
        qos=_optional_text(section, "qos"),
        constraint=_optional_text(section, "constraint"),
        comment=_optional_text(section, "comment"),
        client=client,
        worker=_read_resources(section.get("worker"), "backend.worker"),
        roles=roles,
        worker_host=worker_host,
    )
