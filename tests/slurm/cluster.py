"""Helpers for tests that run jobs on the Slurm cluster that start-cluster.sh starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from forge_launcher_local.backend import job_processes
from tests.conftest import run_forge

START_SCRIPT = Path(__file__).resolve().parent / "start-cluster.sh"
STATE_DIR = Path(os.environ.get("FORGE_SLURM_DIR", "/tmp/forge-slurm"))
#: Small requests so that every part fits on one of the test cluster's virtual nodes.
SMALL_JOB = (
    "+backend=slurm",
    "backend.client.cpus=1",
    "backend.client.mem_mb=256",
    "backend.worker.cpus=1",
    "backend.worker.mem_mb=256",
    "backend.worker_host=127.0.0.1",
)


def _cluster_problem() -> str | None:
    if shutil.which("sbatch") is None:
        return (
            "Slurm is not installed (no sbatch on PATH). Install it with: apt-get install slurmctld slurmd "
            "slurm-client munge slurmdbd mariadb-server, then start it with tests/slurm/start-cluster.sh"
        )
    try:
        result = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "the Slurm controller does not answer within 20 s. Start it with tests/slurm/start-cluster.sh"
    if result.returncode != 0:
        return f"Slurm is installed but not running ({result.stderr.strip()}). Start it with tests/slurm/start-cluster.sh"
    if "idle" not in result.stdout and "mixed" not in result.stdout and "allocated" not in result.stdout:
        return f"the Slurm cluster has no usable node (sinfo states: {result.stdout.split()}). Restart it with tests/slurm/start-cluster.sh"
    return None


requires_slurm = pytest.mark.skipif(_cluster_problem() is not None, reason=str(_cluster_problem()))


def launched_name(stdout: str) -> str:
    """Return the job name from the output of a launch."""
    return stdout.split("Launched ", 1)[1].split()[0]


def status_of(name: str) -> str:
    result = run_forge("status", name)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[0].split(": ", 1)[1]


def wait_for_state(name: str, states: tuple[str, ...], timeout: float = 180.0) -> str:
    """Poll ``forge status`` until the state is one of ``states``; return the last state seen."""
    deadline = time.monotonic() + timeout
    state = status_of(name)
    while state not in states and time.monotonic() < deadline:
        time.sleep(1.0)
        state = status_of(name)
    return state


def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def processes_of(job_name: str) -> list[int]:
    """Return pids whose environment carries ``FORGE_JOB_NAME=<job_name>``."""
    return job_processes(job_name)
