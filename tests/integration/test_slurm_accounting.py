"""Status on a cluster without accounting: slurmdbd is stopped, so sacct fails.

Stops the slurmdbd that tests/slurm/start-cluster.sh started and starts it
again afterwards, so it needs that script's pid file and root.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge_launcher.records import JobRecord, save_record
from tests.conftest import run_forge
from tests.slurm.cluster import SMALL_JOB, STATE_DIR, launched_name, requires_slurm, status_of, wait_for, wait_for_state

pytestmark = [pytest.mark.integration, requires_slurm]

SLURMDBD_PID_FILE = STATE_DIR / "run" / "slurmdbd.pid"
QUICK_WORKLOAD = 'print("quick workload ran", flush=True)\n'


def _sacct_works() -> bool:
    return subprocess.run(["sacct", "--noheader", "--jobs", "1"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def accounting_off() -> Iterator[None]:
    """Stop slurmdbd for one test and start it again afterwards."""
    if os.geteuid() != 0 or not SLURMDBD_PID_FILE.is_file():
        pytest.skip(f"needs root and the slurmdbd started by tests/slurm/start-cluster.sh (pid file {SLURMDBD_PID_FILE})")
    pid = int(SLURMDBD_PID_FILE.read_text())
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=30)
    assert not _sacct_works()
    try:
        yield
    finally:
        subprocess.run(["slurmdbd"], check=True, timeout=30)
        assert wait_for(_sacct_works, timeout=60)


def quick_config(tmp_path: Path) -> Path:
    workload = tmp_path / "quick.py"
    workload.write_text(QUICK_WORKLOAD)
    config = tmp_path / "quick.yaml"
    config.write_text(f"job:\n  script: {workload}\n")
    return config


def test_finished_job_reads_outcome(tmp_path: Path, accounting_off: None) -> None:
    result = run_forge(str(quick_config(tmp_path)), *SMALL_JOB, "detached=true")
    assert result.returncode == 0, result.stderr
    name = launched_name(result.stdout)

    # squeue lists the job while it runs and for MinJobAge seconds after;
    # the client's exit code in the job directory gives the outcome.
    assert wait_for_state(name, ("SUCCEEDED", "FAILED", "CANCELLED", "UNKNOWN")) == "SUCCEEDED"


def test_cancel_reads_cancelled(tmp_path: Path, accounting_off: None) -> None:
    workload = tmp_path / "slow.py"
    workload.write_text("import time\nprint('slow', flush=True)\ntime.sleep(600)\n")
    config = tmp_path / "slow.yaml"
    config.write_text(f"job:\n  script: {workload}\n")
    result = run_forge(str(config), *SMALL_JOB, "detached=true")
    assert result.returncode == 0, result.stderr
    name = launched_name(result.stdout)
    assert wait_for_state(name, ("RUNNING",)) == "RUNNING"

    cancelled = run_forge("cancel", name)
    assert cancelled.returncode == 0, cancelled.stderr
    assert status_of(name) == "CANCELLED"


def _forgotten_record(tmp_path: Path, name: str, client_code: int | None) -> None:
    """Record a job whose Slurm id no cluster has, as after slurmctld purged a finished job."""
    job_dir = tmp_path / "storage" / "forge_runs" / name
    job_dir.mkdir(parents=True)
    if client_code is not None:
        (job_dir / "client_exit.json").write_text(json.dumps({"code": client_code}))
    save_record(JobRecord(
        name=name, backend="slurm", storage="local", job_dir=str(job_dir), config_path=str(tmp_path / "job.yaml"),
        detached=True, created="2026-12-01T00:00:00+00:00", handle="slurm://forge/987654321", state="RUNNING",
        roles=["client"],
    ))


def test_forgotten_job_reads_finished_unknown(tmp_path: Path, accounting_off: None) -> None:
    _forgotten_record(tmp_path, "forgotten", client_code=None)

    result = run_forge("status", "forgotten")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("forgotten: UNKNOWN")
    assert "finished, outcome unknown" in result.stdout
    assert "987654321" in result.stdout


def test_forgotten_job_reads_client_exit(tmp_path: Path, accounting_off: None) -> None:
    _forgotten_record(tmp_path, "forgotten-ok", client_code=0)
    _forgotten_record(tmp_path, "forgotten-bad", client_code=4)

    assert status_of("forgotten-ok") == "SUCCEEDED"
    assert status_of("forgotten-bad") == "FAILED"
    cancelled = run_forge("cancel", "forgotten-ok")
    assert cancelled.returncode == 0, cancelled.stderr
