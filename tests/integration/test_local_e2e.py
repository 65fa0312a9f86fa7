"""The example job end to end on the local backend, with real TorchX and Monarch processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from forge_launcher_local.backend import job_processes
from tests.conftest import EXAMPLE, run_forge

pytest.importorskip("monarch", reason="needs the torchmonarch extra: pip install 'forge-launcher[monarch]'")
pytestmark = pytest.mark.integration

# A workload that attaches to its meshes, reports it is ready, and waits.
WAITING_WORKLOAD = """
import argparse, time
from forge_launcher.runtime import attach_mesh, job_dir
parser = argparse.ArgumentParser()
parser.add_argument("--config")
parser.parse_known_args()
meshes = [attach_mesh(name) for name in ("policy_0", "trainer")]
(job_dir() / "ready").write_text("yes")
print("workload attached and waiting", flush=True)
time.sleep(600)
"""


def processes_of(job_name: str) -> list[int]:
    """Return pids whose environment carries FORGE_JOB_NAME=<job_name>."""
    return job_processes(job_name)


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def status_of(name: str) -> str:
    result = run_forge("status", name)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[0].split(": ", 1)[1]


def waiting_config(tmp_path: Path) -> Path:
    workload = tmp_path / "waiting.py"
    workload.write_text(WAITING_WORKLOAD)
    text = EXAMPLE.read_text().replace("script: examples/toy_rl.py", f"script: {workload}")
    config = tmp_path / "waiting.yaml"
    config.write_text(text)
    return config


def test_example_runs_in_foreground(forge_env: dict[str, Path]) -> None:
    result = run_forge(
        str(EXAMPLE), "job.name=fg1", "+ckpt_path=run/epoch=3-step=900.ckpt", "+note=a,b c",
        "--", "--tag", "my run [1]", "{x}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fg1: SUCCEEDED" in result.stdout

    job_dir = forge_env["storage"] / "forge_runs" / "fg1"
    result_file = json.loads((job_dir / "result.json").read_text())
    assert result_file["steps"] == 5
    assert result_file["forwarded_args"] == ["--tag", "my run [1]", "{x}"]
    assert (job_dir / "checkpoints" / "step_5.json").is_file()
    saved = (job_dir / "config.yaml").read_text()
    assert "ckpt_path: run/epoch=3-step=900.ckpt" in saved
    assert "note: a,b c" in saved
    assert status_of("fg1") == "SUCCEEDED"
    logs = run_forge("logs", "fg1", "--role", "client")
    assert "toy_rl: done" in logs.stdout


def test_example_detached_status_and_logs(forge_env: dict[str, Path]) -> None:
    result = run_forge(str(EXAMPLE), "detached=true", "job.name=det1")
    assert result.returncode == 0, result.stderr
    assert "handle: local_cwd://forge/det1-" in result.stdout

    assert wait_for(lambda: status_of("det1") in ("SUCCEEDED", "FAILED", "CANCELLED"), timeout=120)
    assert status_of("det1") == "SUCCEEDED"
    logs = run_forge("logs", "det1", "--role", "client")
    assert logs.returncode == 0, logs.stderr
    assert "toy_rl: step 4" in logs.stdout
    assert "toy_rl: done" in logs.stdout
    trainer_logs = run_forge("logs", "det1", "--role", "trainer")
    assert "worker trainer/0" in trainer_logs.stdout
    listing = run_forge("list")
    assert "det1" in listing.stdout
    assert "SUCCEEDED" in listing.stdout
    assert wait_for(lambda: not processes_of("det1"), timeout=30)


def test_cancel_leaves_no_process(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    result = run_forge(str(waiting_config(tmp_path)), "detached=true", "job.name=cancel1")
    assert result.returncode == 0, result.stderr
    job_dir = forge_env["storage"] / "forge_runs" / "cancel1"
    assert wait_for(lambda: (job_dir / "ready").exists(), timeout=120), run_forge("logs", "cancel1").stdout
    assert len(processes_of("cancel1")) >= 4

    cancelled = run_forge("cancel", "cancel1")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancel1: CANCELLED" in cancelled.stdout
    assert wait_for(lambda: not processes_of("cancel1"), timeout=30), processes_of("cancel1")
    assert status_of("cancel1") == "CANCELLED"


def test_worker_death_fails_client(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    result = run_forge(str(waiting_config(tmp_path)), "detached=true", "job.name=dies1")
    assert result.returncode == 0, result.stderr
    job_dir = forge_env["storage"] / "forge_runs" / "dies1"
    assert wait_for(lambda: (job_dir / "ready").exists(), timeout=120)

    worker = json.loads((job_dir / "workers" / "trainer" / "0.json").read_text())
    os.kill(worker["pid"], signal.SIGKILL)
    assert wait_for(lambda: status_of("dies1") == "FAILED", timeout=30)
    logs = run_forge("logs", "dies1", "--role", "client").stdout
    assert "mesh 'trainer' host 0" in logs
    assert "exited with code -9" in logs
    assert wait_for(lambda: not processes_of("dies1"), timeout=30), processes_of("dies1")


def test_interrupt_foreground_stops_job(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "forge_launcher", str(waiting_config(tmp_path)), "job.name=int1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    job_dir = forge_env["storage"] / "forge_runs" / "int1"
    try:
        assert wait_for(lambda: (job_dir / "ready").exists(), timeout=120)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "int1: CANCELLED" in output
    assert wait_for(lambda: not processes_of("int1"), timeout=30), processes_of("int1")


def test_killed_client_stops_workers(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    result = run_forge(str(waiting_config(tmp_path)), "detached=true", "job.name=orphan1")
    assert result.returncode == 0, result.stderr
    job_dir = forge_env["storage"] / "forge_runs" / "orphan1"
    assert wait_for(lambda: (job_dir / "ready").exists(), timeout=120)

    bootstrap = [pid for pid in processes_of("orphan1") if b"bootstrap" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(bootstrap) == 1
    os.kill(bootstrap[0], signal.SIGKILL)

    # Workers notice the silent client heartbeat and stop; the job then ends.
    assert wait_for(lambda: status_of("orphan1") == "FAILED", timeout=60)
    assert wait_for(lambda: not processes_of("orphan1"), timeout=30), processes_of("orphan1")


def test_cancel_foreground_from_other_shell(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "forge_launcher", str(waiting_config(tmp_path)), "job.name=fgc1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    job_dir = forge_env["storage"] / "forge_runs" / "fgc1"
    try:
        assert wait_for(lambda: (job_dir / "ready").exists(), timeout=120)
        cancelled = run_forge("cancel", "fgc1")
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert cancelled.returncode == 0, cancelled.stderr
    assert "fgc1: CANCELLED" in cancelled.stdout
    assert "fgc1: CANCELLED" in output
    assert process.returncode == 1
    assert status_of("fgc1") == "CANCELLED"
    assert wait_for(lambda: not processes_of("fgc1"), timeout=30), processes_of("fgc1")


def test_cancel_after_supervisor_killed(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    result = run_forge(str(waiting_config(tmp_path)), "detached=true", "job.name=nosup1")
    assert result.returncode == 0, result.stderr
    job_dir = forge_env["storage"] / "forge_runs" / "nosup1"
    assert wait_for(lambda: (job_dir / "ready").exists(), timeout=120)

    supervisor = json.loads((job_dir / "local_state.json").read_text())["pid"]
    os.kill(supervisor, signal.SIGKILL)
    assert wait_for(lambda: status_of("nosup1") == "UNKNOWN", timeout=10)

    cancelled = run_forge("cancel", "nosup1")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "nosup1: CANCELLED" in cancelled.stdout
    assert wait_for(lambda: not processes_of("nosup1"), timeout=30), processes_of("nosup1")


def test_follow_foreground_logs_ends(forge_env: dict[str, Path]) -> None:
    import subprocess
    import sys

    launch = subprocess.Popen([sys.executable, "-m", "forge_launcher", str(EXAMPLE), "job.name=follow1", "steps=30"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (forge_env["home"] / "jobs" / "follow1.json").exists(), timeout=60)
        follow = run_forge("logs", "follow1", "--role", "client", "-f", timeout=120)
    finally:
        launch.wait(timeout=120)
    assert follow.returncode == 0, follow.stderr
    assert "toy_rl: done" in follow.stdout
