"""Jobs on a real Slurm cluster: the example, cancel, failure, quoting, logs and dry-run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE, REPO_ROOT, run_forge
from tests.slurm.cluster import SMALL_JOB, launched_name, processes_of, requires_slurm, status_of, wait_for, wait_for_state

pytest.importorskip("monarch", reason="needs the torchmonarch extra: pip install 'forge-launcher[monarch]'")
pytestmark = [pytest.mark.integration, requires_slurm]

SLEEPING_WORKLOAD = """
import time
print("slurm workload sleeping", flush=True)
time.sleep(600)
"""

FAILING_WORKLOAD = """
import sys
print("slurm workload failing", flush=True)
sys.exit(3)
"""

# Writes what it received, so the test compares bytes and not printed text.
ECHO_WORKLOAD = """
import json, os, sys
from pathlib import Path
received = {"args": sys.argv[3:], "note": os.environ["NOTE"]}
Path(os.environ["FORGE_JOB_DIR"], "received.json").write_text(json.dumps(received))
print("echo workload done", flush=True)
"""

NOTE_ARG = 'note=my run; $HOME "quoted"'
NOTE_ENV = "a b; $HOME \"q\" 'single' `date`\nsecond line, with a comma"


def example_with(tmp_path: Path, workload: str) -> Path:
    """Return a copy of the example config (two worker meshes) that runs ``workload``."""
    script = tmp_path / "workload.py"
    script.write_text(workload)
    config = tmp_path / "job.yaml"
    config.write_text(EXAMPLE.read_text().replace("script: examples/toy_rl.py", f"script: {script}"))
    return config


def launch(config: str, forwarded: tuple[str, ...] = (), env: dict[str, str] | None = None) -> str:
    """Launch ``config`` in detached mode with small requests and return the job name."""
    result = run_forge(config, *SMALL_JOB, "detached=true", "--", *forwarded, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return launched_name(result.stdout)


def test_example_succeeds(forge_env: dict[str, Path]) -> None:
    name = launch(str(EXAMPLE))

    assert wait_for_state(name, ("SUCCEEDED", "FAILED", "CANCELLED", "UNKNOWN")) == "SUCCEEDED"
    logs = run_forge("logs", name, "--role", "client")
    assert logs.returncode == 0, logs.stderr
    assert "toy_rl: done" in logs.stdout
    assert (forge_env["storage"] / "forge_runs" / name / "result.json").is_file()
    trainer_logs = run_forge("logs", name, "--role", "trainer")
    assert trainer_logs.returncode == 0, trainer_logs.stderr
    assert wait_for(lambda: not processes_of(name), timeout=90)


def test_cancel_stops_every_role(tmp_path: Path) -> None:
    name = launch(str(example_with(tmp_path, SLEEPING_WORKLOAD)))
    assert wait_for_state(name, ("RUNNING",)) == "RUNNING"
    # Every role has started once all three have processes of the job.
    assert wait_for(lambda: len(processes_of(name)) >= 3, timeout=120)

    cancelled = run_forge("cancel", name)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"{name}: CANCELLED")
    assert status_of(name) == "CANCELLED"
    assert processes_of(name) == []


def test_cancel_finished_job_is_noop(tmp_path: Path) -> None:
    name = launch(str(example_with(tmp_path, FAILING_WORKLOAD)))
    assert wait_for_state(name, ("SUCCEEDED", "FAILED", "CANCELLED")) == "FAILED"

    cancelled = run_forge("cancel", name)
    assert cancelled.returncode == 0, cancelled.stderr
    assert status_of(name) == "FAILED"


def test_failing_client_ends_job(tmp_path: Path) -> None:
    name = launch(str(example_with(tmp_path, FAILING_WORKLOAD)))

    assert wait_for_state(name, ("SUCCEEDED", "FAILED", "CANCELLED")) == "FAILED"
    status = run_forge("status", name)
    assert "client exited with code 3" in status.stdout
    # The worker meshes end with the client instead of waiting for the time limit.
    assert wait_for(lambda: not processes_of(name), timeout=120)


def test_values_reach_client_verbatim(tmp_path: Path) -> None:
    # The storage root, and so every path in the sbatch script, has a space,
    # a '$' and a quote too.
    storage = tmp_path / "store $HOME 'q'"
    workload = tmp_path / "echo.py"
    workload.write_text(ECHO_WORKLOAD)
    config = tmp_path / "echo.yaml"
    config.write_text(yaml.safe_dump({"job": {"script": str(workload), "env": {"NOTE": NOTE_ENV}}}))

    name = launch(str(config), (NOTE_ARG,), env={"FORGE_STORAGE_ROOT": str(storage)})

    assert wait_for_state(name, ("SUCCEEDED", "FAILED", "CANCELLED", "UNKNOWN")) == "SUCCEEDED"
    received = json.loads((storage / "forge_runs" / name / "received.json").read_text())
    assert received["args"] == [NOTE_ARG]
    assert received["note"] == NOTE_ENV


def test_logs_of_running_job(tmp_path: Path) -> None:
    name = launch(str(example_with(tmp_path, SLEEPING_WORKLOAD)))
    assert wait_for(lambda: "slurm workload sleeping" in run_forge("logs", name).stdout, timeout=120)

    # Without -f the command returns although the job runs; run_forge's
    # timeout turns a blocking read into a failure.
    logs = run_forge("logs", name, "--role", "client", timeout=60)
    assert logs.returncode == 0, logs.stderr
    assert "slurm workload sleeping" in logs.stdout

    follower = subprocess.Popen(
        [sys.executable, "-m", "forge_launcher", "logs", name, "--role", "client", "-f"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert follower.stdout is not None
        for line in follower.stdout:
            if "slurm workload sleeping" in line:
                break
        assert follower.poll() is None
        assert run_forge("cancel", name).returncode == 0
        # The follower ends by itself once the job has ended.
        assert follower.wait(timeout=120) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_logs_of_unknown_role_is_user_error(tmp_path: Path) -> None:
    name = launch(str(example_with(tmp_path, FAILING_WORKLOAD)))

    result = run_forge("logs", name, "--role", "nosuch")
    assert result.returncode == 2
    assert "'nosuch'" in result.stderr


def test_dry_run_shows_sbatch_request(forge_env: dict[str, Path]) -> None:
    result = run_forge(
        str(EXAMPLE), *SMALL_JOB, "job.name=dry", "backend.time=00:10:00", "+backend.roles.policy_0.cpus=2",
        "+job.env.HF_TOKEN=hf_secret_value", "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    request = document["scheduler_request"]
    assert [role["name"] for role in document["app"]["roles"]] == ["client", "policy_0", "trainer"]
    assert "#SBATCH --job-name=policy_0-0 --requeue --time=00:10:00 --ntasks-per-node=1 --cpus-per-task=2 --mem=256" in request["script"]
    assert any(line.startswith("--chdir=") for line in request["sbatch"])
    assert request["environment"]["HF_TOKEN"] == "****"
    assert "hf_secret_value" not in result.stdout
    assert not (forge_env["storage"] / "forge_runs" / "dry").exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("backend.partition=nosuch", "partition 'nosuch' not found"),
        ("backend.worker.cpus=4096", "requests 4096 CPUs per host"),
        ("backend.worker.mem_mb=99999999", "requests 99999999 MB of memory per host"),
        ("+backend.roles.trainer.gpus=1", "requests 1 GPUs per host"),
    ],
)
def test_cluster_mismatch_queues_nothing(override: str, expected: str, forge_env: dict[str, Path]) -> None:
    result = run_forge(str(EXAMPLE), *SMALL_JOB, "job.name=misfit", override)

    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert not (forge_env["home"] / "jobs" / "misfit.json").exists()
    assert not (forge_env["storage"] / "forge_runs" / "misfit").exists()


def test_example_runs_in_foreground() -> None:
    # detached=false: the client runs here and only the worker meshes go to Slurm.
    result = run_forge(str(EXAMPLE), *SMALL_JOB, "detached=false", "job.name=slurm-fg")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "toy_rl: done" in result.stdout
    assert "slurm-fg: SUCCEEDED" in result.stdout
    assert status_of("slurm-fg") == "SUCCEEDED"
    assert wait_for(lambda: not processes_of("slurm-fg"), timeout=90)
