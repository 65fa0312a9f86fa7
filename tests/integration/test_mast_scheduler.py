"""``forge ... +backend=mast`` end to end, against the recording TorchX scheduler.

Each test runs the ``forge`` CLI in a subprocess whose TorchX finds the
recording scheduler through the ``torchx.schedulers`` entry-point group, the
same lookup the plugin relies on for ``mast_conda`` inside Meta.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests import mast_fake_scheduler as fake
from tests.conftest import REPO_ROOT, run_forge

pytestmark = pytest.mark.integration

GRPO = str(REPO_ROOT / "examples" / "mast_grpo.yaml")
IDENTITY = "backend.scheduler_args.hpcIdentity=forge-tests"
SECRET = "hf_do_not_leak_4711"


@pytest.fixture
def mast_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Register the recording scheduler as ``mast_conda`` for ``forge`` subprocesses and this process's helpers."""
    env = fake.subprocess_env(tmp_path)
    monkeypatch.setenv(fake.STATE_ENV, env[fake.STATE_ENV])
    return env


def read_record(forge_env: dict[str, Path], name: str) -> dict:
    return json.loads((forge_env["home"] / "jobs" / f"{name}.json").read_text())


def files_containing(root: Path, text: str) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and text in path.read_text(errors="replace")]


def test_launch_records_submission(mast_env: dict[str, str], forge_env: dict[str, Path]) -> None:
    result = run_forge(GRPO, "+backend=mast", IDENTITY, "job.name=grpo-submit", env=mast_env)

    assert result.returncode == 0, result.stderr
    assert "handle: mast_conda://torchx/grpo-submit" in result.stdout
    assert "MAST UI: https://mast.invalid/jobs/grpo-submit" in result.stdout

    [submitted] = fake.submissions()
    roles = submitted["app"]["roles"]
    assert [role["name"] for role in roles] == ["client", "policy_0", "policy_1", "trainer", "ref_model"]
    assert [role["num_replicas"] for role in roles] == [1, 2, 2, 2, 1]
    assert submitted["cfg"]["hpcIdentity"] == "forge-tests"
    job_dir = forge_env["storage"] / "forge_runs" / "grpo-submit"
    assert roles[0]["args"] == ["-m", "forge_launcher", "bootstrap", "--job-dir", str(job_dir)]

    record = read_record(forge_env, "grpo-submit")
    assert record["handle"] == "mast_conda://torchx/grpo-submit"
    assert record["state"] == "RUNNING"
    assert (job_dir / "config.yaml").is_file()
    assert (job_dir / "job_spec.json").is_file()


def test_status_logs_cancel(mast_env: dict[str, str]) -> None:
    launched = run_forge(GRPO, "+backend=mast", IDENTITY, "job.name=grpo-life", env=mast_env)
    assert launched.returncode == 0, launched.stderr
    fake.write_log("grpo-life", "policy_1", 1, "step 1 loss 0.5\nstep 2 loss 0.4\n")

    status = run_forge("status", "grpo-life", env=mast_env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("grpo-life: RUNNING")
    assert "ui: https://mast.invalid/jobs/grpo-life" in status.stdout

    logs = run_forge("logs", "grpo-life", "--role", "policy_1", "--replica", "1", env=mast_env)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "step 1 loss 0.5\nstep 2 loss 0.4\n"

    cancelled = run_forge("cancel", "mast_conda://torchx/grpo-life", env=mast_env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == "grpo-life: CANCELLED"
    assert fake.read_app("grpo-life")["state"] == "CANCELLED"

    listed = run_forge("list", env=mast_env)
    assert "grpo-life  CANCELLED" in listed.stdout


def test_status_reports_succeeded(mast_env: dict[str, str]) -> None:
    launched = run_forge(GRPO, "+backend=mast", IDENTITY, "job.name=grpo-done", env=mast_env)
    assert launched.returncode == 0, launched.stderr
    fake.set_app("grpo-done", state="SUCCEEDED")

    status = run_forge("status", "grpo-done", env=mast_env)
    assert status.stdout.startswith("grpo-done: SUCCEEDED")


def test_unregistered_scheduler(forge_env: dict[str, Path]) -> None:
    result = run_forge(GRPO, "+backend=mast", IDENTITY, "job.name=grpo-nosched")

    assert result.returncode == 2
    assert "'mast_conda' is not registered" in result.stderr
    assert "--dry-run" in result.stderr
    assert not (forge_env["home"] / "jobs" / "grpo-nosched.json").exists()
    assert not (forge_env["storage"] / "forge_runs" / "grpo-nosched").exists()

    status = run_forge("status", "grpo-nosched")
    assert status.returncode == 2


def test_dry_run_without_scheduler() -> None:
    result = run_forge(GRPO, "+backend=mast", "--dry-run", "job.name=grpo-dry")

    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert [role["name"] for role in document["app"]["roles"]] == ["client", "policy_0", "policy_1", "trainer", "ref_model"]
    assert document["scheduler_request"]["registered"] is False
    assert "mast_conda" in document["scheduler_request"]["note"]


def test_dry_run_with_scheduler(mast_env: dict[str, str]) -> None:
    result = run_forge(GRPO, "+backend=mast", IDENTITY, "--dry-run", "job.name=grpo-dry2", env=mast_env)

    assert result.returncode == 0, result.stderr
    request = yaml.safe_load(result.stdout)["scheduler_request"]
    assert request["registered"] is True
    assert request["cfg"] == {"hpcIdentity": "forge-tests"}
    assert request["request"]["app_id"] == "grpo-dry2"
    assert fake.submissions() == []


def test_secret_masked_and_not_saved(mast_env: dict[str, str], forge_env: dict[str, Path]) -> None:
    dry = run_forge(GRPO, "+backend=mast", IDENTITY, f"+job.env.HF_TOKEN={SECRET}", "--dry-run", env=mast_env)
    assert dry.returncode == 0, dry.stderr
    assert SECRET not in dry.stdout
    assert "HF_TOKEN: '****'" in dry.stdout

    launched = run_forge(GRPO, "+backend=mast", IDENTITY, f"+job.env.HF_TOKEN={SECRET}", "job.name=grpo-secret", env=mast_env)
    assert launched.returncode == 0, launched.stderr
    assert SECRET not in launched.stdout + launched.stderr
    assert files_containing(forge_env["storage"], SECRET) == []
    assert files_containing(forge_env["home"], SECRET) == []
    # The roles still get the secret: the scheduler is where it belongs.
    [submitted] = fake.submissions()
    assert all(role["env"]["HF_TOKEN"] == SECRET for role in submitted["app"]["roles"])


def test_missing_required_run_option(mast_env: dict[str, str], forge_env: dict[str, Path]) -> None:
    result = run_forge(GRPO, "+backend=mast", "job.name=grpo-noid", env=mast_env)

    assert result.returncode == 2
    assert "backend.scheduler_args.hpcIdentity=VALUE" in result.stderr
    assert fake.submissions() == []
    assert not (forge_env["home"] / "jobs" / "grpo-noid.json").exists()
    assert not (forge_env["storage"] / "forge_runs" / "grpo-noid").exists()


def test_same_name_running_not_relaunched(mast_env: dict[str, str], forge_env: dict[str, Path]) -> None:
    fake.set_app("grpo-twice", state="RUNNING")

    result = run_forge(GRPO, "+backend=mast", IDENTITY, "job.name=grpo-twice", env=mast_env)

    assert result.returncode == 2
    assert "'grpo-twice' is already RUNNING" in result.stderr
    assert "mast_conda://torchx/grpo-twice" in result.stderr
    assert fake.submissions() == []
    assert not (forge_env["home"] / "jobs" / "grpo-twice.json").exists()


def test_same_name_finished_relaunched(mast_env: dict[str, str]) -> None:
    fake.set_app("grpo-again", state="SUCCEEDED")

    result = run_forge(GRPO, "+backend=mast", IDENTITY, "job.name=grpo-again", env=mast_env)

    assert result.returncode == 0, result.stderr
    assert len(fake.submissions()) == 1


def test_configured_scheduler_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = fake.subprocess_env(tmp_path, names=("mast_team",))
    monkeypatch.setenv(fake.STATE_ENV, env[fake.STATE_ENV])

    result = run_forge(GRPO, "+backend=mast", "backend.scheduler=mast_team", IDENTITY, "job.name=grpo-named", env=env)

    assert result.returncode == 0, result.stderr
    assert "handle: mast_team://torchx/grpo-named" in result.stdout
    status = run_forge("status", "grpo-named", env=env)
    assert status.stdout.startswith("grpo-named: RUNNING")


def test_job_name_too_long() -> None:
    name = "a" * 51

    result = run_forge(GRPO, "+backend=mast", f"job.name={name}", "--dry-run")

    assert result.returncode == 2
    assert "maximum is 50" in result.stderr
    assert "job.name" in result.stderr


def test_non_detached_dry_run() -> None:
    config = str(REPO_ROOT / "tests" / "fixtures" / "mast_non_detached.yaml")

    result = run_forge(config, "+backend=mast", "--dry-run")

    assert result.returncode == 0, result.stderr
    roles = yaml.safe_load(result.stdout)["app"]["roles"]
    assert [(role["name"], role["replicas"]) for role in roles] == [("policy_0", 1), ("trainer", 3)]
