"""Checks of a Slurm job against the cluster, before anything is created or queued."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
from dataclasses import dataclass

from forge_launcher.errors import ForgeLauncherError, PreflightError
from forge_launcher.job import Job
from forge_launcher.launcher import CLIENT_ROLE
from forge_launcher_slurm.config import SlurmConfig
from forge_launcher_slurm.request import job_config

log = logging.getLogger(__name__)

#: Seconds ``sinfo`` may take before the cluster counts as unreachable.
SINFO_TIMEOUT = 30.0


@dataclass(frozen=True)
class PartitionSize:
    """The largest CPU count, memory and GPU count of any node in one partition."""

    name: str
    cpus: int
    mem_mb: int
    gpus: int


def gpu_count(gres: str) -> int:
    """Return the GPUs in an ``sinfo %G`` value such as ``gpu:a100:8(S:0-1),shard:4``."""
    total = 0
    for item in gres.split(","):
        if not item.startswith("gpu"):
            continue
        count = item.split("(")[0].rsplit(":", 1)[-1]
        total += int(count) if count.isdigit() else 0
    return total


def _parse_int(text: str) -> int:
    digits = text.rstrip("+")
    return int(digits) if digits.isdigit() else 0


def read_partition(partition: str | None) -> PartitionSize:
    """Return the size of ``partition`` (the default partition for ``None``) from ``sinfo``."""
    argv = ["sinfo", "--noheader", "--Node", "--format=%P|%c|%m|%G"]
    log.debug("running %s", argv)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=SINFO_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise ForgeLauncherError(f"sinfo timed out after {SINFO_TIMEOUT:.0f} s, so the Slurm controller is not reachable. Check it with 'scontrol ping'.") from exc
    if result.returncode != 0:
        # An unreachable controller is a runtime failure, not a config error.
        raise ForgeLauncherError(
            f"sinfo failed with exit code {result.returncode}: {result.stderr.strip()}. "
            f"Check that slurmctld is running and reachable with 'scontrol ping'."
        )

    known: list[str] = []
    default = None
    size: PartitionSize | None = None
    for line in result.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4:
            continue
        name = fields[0].rstrip("*")
        if fields[0].endswith("*"):
            default = name
        if name not in known:
            known.append(name)
        if name != (partition or default):
            continue
        node = PartitionSize(name, _parse_int(fields[1]), _parse_int(fields[2]), gpu_count(fields[3]))
        if size is None:
            size = node
        else:
            size = PartitionSize(name, max(size.cpus, node.cpus), max(size.mem_mb, node.mem_mb), max(size.gpus, node.gpus))

    if size is None:
        if partition is None:
            raise PreflightError(f"The Slurm cluster has no default partition. Choose one of {known} with backend.partition=NAME.")
        raise PreflightError(f"Slurm partition {partition!r} not found. Known partitions: {', '.join(known) or 'none'}. Set backend.partition=NAME.")
    return size


def _check_fits(role: str, key: str, requested: int | None, available: int, partition: str, unit: str) -> None:
    if requested is None or requested <= available:
        return
    section = "backend.client" if role == CLIENT_ROLE else "backend.worker"
    raise PreflightError(
        f"Role {role!r} requests {requested} {unit} per host, but the largest node in Slurm partition {partition!r} "
        f"has {available}, so the job would never start. Lower {section}.{key} or backend.roles.{role}.{key}, "
        f"or choose another partition with backend.partition=NAME."
    )


def check_resources(job: Job, config: SlurmConfig, size: PartitionSize) -> None:
    """Raise :class:`PreflightError` when a role requests more than the largest node of the partition has."""
    roles = [(CLIENT_ROLE, True, 0)] if job.detached else []
    roles += [(mesh.name, False, mesh.gpus_per_host) for mesh in job.meshes]
    for role, is_client, mesh_gpus in roles:
        resources = config.resources_for(role, is_client)
        gpus = resources.gpus if resources.gpus is not None else mesh_gpus
        if is_client:
            gpus = 0
        _check_fits(role, "cpus", resources.cpus, size.cpus, size.name, "CPUs")
        _check_fits(role, "mem_mb", resources.mem_mb, size.mem_mb, size.name, "MB of memory")
        _check_fits(role, "gpus", gpus or None, size.gpus, size.name, "GPUs")


def check_job(job: Job) -> None:
    """Check the config, the storage path, the local tools and the cluster for one Slurm job."""
    config = job_config(job)

    # srun reads '%' in --output as a file name pattern, and a line break
    # cannot pass through the generated sbatch script's options.
    root = str(job.storage_config.get("root") or "")
    bad = [c for c in ("%", "\n", "\r") if c in root]
    if bad:
        raise PreflightError(f"storage.root {root!r} contains {bad[0]!r}, which Slurm cannot take in a path. Choose a storage root without '%' or line breaks.")
    if job.meshes and importlib.util.find_spec("monarch") is None:
        raise PreflightError(
            f"The job has worker meshes ({', '.join(m.name for m in job.meshes)}) but torchmonarch is not installed. "
            f"Install it with: pip install 'forge-launcher[monarch]'"
        )
    for tool in ("sbatch", "sinfo"):
        if shutil.which(tool) is None:
            raise PreflightError(f"{tool} not found on PATH. Run forge on a Slurm login node, or install the Slurm client commands (Debian: slurm-client).")

    check_resources(job, config, read_partition(config.partition))
