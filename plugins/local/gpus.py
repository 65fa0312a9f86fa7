"""GPU discovery and partitioning for jobs that run on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from forge_launcher.errors import PreflightError
from forge_launcher.job import Job


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the GPU ids this process may use.

    ``CUDA_VISIBLE_DEVICES`` wins when set (an empty value means no GPUs), so
    tests on a machine without GPUs set it to simulate some. Otherwise
    ``nvidia-smi -L`` counts the devices; without it there are none.
    """
    environ = os.environ if environ is None else environ
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        ids = []
        for part in (p.strip() for p in value.split(",")):
            # CUDA stops reading the list at the first invalid entry, "-1" included.
            if not part or part == "-1":
                break
            if part in ids:
                raise PreflightError(f"CUDA_VISIBLE_DEVICES={value!r} lists GPU {part!r} twice. List each GPU once.")
            ids.append(part)
        return ids
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return []
    try:
        output = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(output.splitlines()) if line.startswith("GPU ")]


@dataclass(frozen=True)
class GpuAssignment:
    """Disjoint device sets: one per host of each GPU mesh, and one for the client."""

    #: mesh name -> one ``CUDA_VISIBLE_DEVICES`` value per host (replica)
    meshes: dict[str, list[str]]
    #: ``CUDA_VISIBLE_DEVICES`` for the client, or None when it needs no GPU
    client: str | None


def _gpus(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"


def gpu_demand(job: Job) -> list[tuple[str, int]]:
    """Return ``(what, GPUs)`` for every consumer of GPUs in ``job``."""
    demand = []
    for mesh in job.meshes:
        if mesh.with_gpus:
            hosts = f"{mesh.hosts} host" if mesh.hosts == 1 else f"{mesh.hosts} hosts"
            demand.append((f"mesh {mesh.name!r} ({hosts} x {_gpus(mesh.gpus_per_host)})", mesh.hosts * mesh.gpus_per_host))
    if job.client_gpus:
        demand.append(("GPU entries inside the client", job.client_gpus))
    return demand


def check_gpus(job: Job, visible: list[str]) -> None:
    """Raise :class:`PreflightError` with the numbers when ``job`` needs more GPUs than are visible."""
    demand = gpu_demand(job)
    needed = sum(count for _, count in demand)
    if needed <= len(visible):
        return
    detail = ", ".join(f"{what}: {count}" for what, count in demand)
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        where = f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}"
    else:
        where = "counted by nvidia-smi"
    raise PreflightError(
        f"The job needs {_gpus(needed)} but {len(visible)} visible ({where}). Needed: {detail}. "
        f"Lower procs/hosts/num_replicas, set with_gpus=false, or run on a backend with more GPUs."
    )


def assign_gpus(job: Job, visible: list[str]) -> GpuAssignment:
    """Split ``visible`` into disjoint sets, meshes first in config order, then the client."""
    check_gpus(job, visible)
    cursor = 0
    meshes: dict[str, list[str]] = {}
    for mesh in job.meshes:
        if not mesh.with_gpus:
            continue
        sets = []
        for _ in range(mesh.hosts):
            sets.append(",".join(visible[cursor : cursor + mesh.gpus_per_host]))
            cursor += mesh.gpus_per_host
        meshes[mesh.name] = sets
    client = ",".join(visible[cursor : cursor + job.client_gpus]) if job.client_gpus else None
    return GpuAssignment(meshes, client)
