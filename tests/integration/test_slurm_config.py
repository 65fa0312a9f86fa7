"""Invalid Slurm settings: each is a user error that names the value and queues nothing.

These checks run before forge talks to the cluster, so they need no Slurm.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_forge


def write_config(directory: Path) -> Path:
    workload = directory / "workload.py"
    workload.write_text("print('never runs')\n")
    config = directory / "job.yaml"
    config.write_text(f"job:\n  script: {workload}\n")
    return config


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("backend.time=soon", "backend.time 'soon' is not a Slurm time limit"),
        ("backend.partition='gpu large'", "backend.partition must not contain whitespace"),
        ("backend.account='a\nb'", "backend.account must not contain whitespace"),
        ("backend.client.gpus=1", "backend.client.gpus is 1, but the Slurm client role is CPU-only"),
        ("backend.worker.cpus=0", "backend.worker.cpus must be an integer >= 1"),
        ("backend.client.mem_mb=lots", "backend.client.mem_mb must be an integer >= 1"),
        ("+backend.roles.nosuch.cpus=2", "backend.roles names roles that this job does not have: ['nosuch']"),
        ("+backend.worker.disk=10", "backend.worker has unknown keys ['disk']"),
    ],
)
def test_invalid_setting_queues_nothing(override: str, expected: str, tmp_path: Path, forge_env: dict[str, Path]) -> None:
    result = run_forge(str(write_config(tmp_path)), "+backend=slurm", "job.name=bad", override)

    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert not (forge_env["home"] / "jobs" / "bad.json").exists()
    assert not (forge_env["storage"] / "forge_runs" / "bad").exists()


def test_percent_in_storage_root_rejected(tmp_path: Path) -> None:
    storage = tmp_path / "runs%j"
    result = run_forge(str(write_config(tmp_path)), "+backend=slurm", "job.name=bad", env={"FORGE_STORAGE_ROOT": str(storage)})

    assert result.returncode == 2, result.stdout + result.stderr
    assert repr(str(storage)) in result.stderr
    assert "'%'" in result.stderr
    assert not storage.exists()


def test_unreachable_controller_is_runtime_error(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    # Stand-ins for the Slurm client commands: sinfo fails as it does when
    # slurmctld is down.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "squeue", "scancel", "sacct", "scontrol"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    sinfo = bin_dir / "sinfo"
    sinfo.write_text("#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller (connect failure)' >&2\nexit 1\n")
    sinfo.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}

    result = run_forge(str(write_config(tmp_path)), "+backend=slurm", "job.name=down", env=env)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Unable to contact slurm controller" in result.stderr
    assert "scontrol ping" in result.stderr
    assert not (forge_env["storage"] / "forge_runs" / "down").exists()
