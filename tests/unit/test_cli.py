"""The forge CLI on bad input: clear message, exit code 2, nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, run_forge


def assert_nothing_created(forge_env: dict[str, Path]) -> None:
    assert not (forge_env["home"] / "jobs").exists() or not any((forge_env["home"] / "jobs").iterdir())
    assert not (forge_env["storage"] / "forge_runs").exists() or not any((forge_env["storage"] / "forge_runs").iterdir())


def write_config(tmp_path: Path, body: str) -> Path:
    (tmp_path / "w.py").write_text("print('ran')\n")
    path = tmp_path / "c.yaml"
    path.write_text(f"job:\n  script: {tmp_path / 'w.py'}\n{body}")
    return path


def test_help_lists_commands() -> None:
    result = run_forge("--help")
    assert result.returncode == 0
    assert "+backend=NAME" in result.stdout
    assert "status" in result.stdout


def test_missing_config(forge_env: dict[str, Path]) -> None:
    result = run_forge("does/not/exist.yaml")
    assert result.returncode == 2
    assert "'does/not/exist.yaml' not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_created(forge_env)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("a: 1\nservices:\n  policy: {procs: 2\n")
    result = run_forge(str(path))
    assert result.returncode == 2
    assert f"{path}:" in result.stderr
    assert "YAML syntax error" in result.stderr
    assert_nothing_created(forge_env)


def test_unknown_backend_lists_backends(forge_env: dict[str, Path]) -> None:
    result = run_forge(str(EXAMPLE), "+backend=nope")
    assert result.returncode == 2
    assert "Unknown backend 'nope'" in result.stderr
    assert "Available backends:" in result.stderr
    assert "local" in result.stderr
    assert_nothing_created(forge_env)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("actors:\n  t: {procs: 1, hosts: -2}\n", "actors.t.hosts must be >= 0, got -2"),
        ("actors:\n  t: {procs: 1.5, hosts: 1}\n", "actors.t.procs must be an integer"),
        ("services:\n  p: {procs: x, hosts: 1}\n", "services.p.procs must be an integer"),
    ],
)
def test_bad_hosts_or_procs(tmp_path: Path, forge_env: dict[str, Path], body: str, message: str) -> None:
    result = run_forge(str(write_config(tmp_path, body)))
    assert result.returncode == 2
    assert message in result.stderr
    assert_nothing_created(forge_env)


@pytest.mark.parametrize("name", ["../escape", "a/b", "UPPER", "x" * 80])
def test_invalid_job_name(tmp_path: Path, forge_env: dict[str, Path], name: str) -> None:
    result = run_forge(str(write_config(tmp_path, "")), f"job.name={name}")
    assert result.returncode == 2
    assert "job name" in result.stderr.lower()
    assert_nothing_created(forge_env)


def test_gpus_beyond_visible(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    body = "services:\n  policy: {procs: 2, num_replicas: 2, hosts: 1, with_gpus: true}\n"
    result = run_forge(str(write_config(tmp_path, body)), env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert result.returncode == 2
    assert "needs 4 GPUs but 2 visible" in result.stderr
    assert "mesh 'policy_0' (1 host x 2 GPUs): 2" in result.stderr
    assert_nothing_created(forge_env)


def test_missing_workload_entrypoint(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("x: 1\n")
    result = run_forge(str(path))
    assert result.returncode == 2
    assert "job.script" in result.stderr
    assert_nothing_created(forge_env)


def test_unknown_override_key(forge_env: dict[str, Path]) -> None:
    result = run_forge(str(EXAMPLE), "trainer.lr=1")
    assert result.returncode == 2
    assert "trainer" in result.stderr
    assert_nothing_created(forge_env)


def test_cfg_prints_without_running(forge_env: dict[str, Path]) -> None:
    result = run_forge(str(EXAMPLE), "--cfg", "+job.env.HF_TOKEN=hf_secret_value", "+note=a,b c")
    assert result.returncode == 0, result.stderr
    assert "hf_secret_value" not in result.stdout
    assert "HF_TOKEN: '****'" in result.stdout
    assert "note: a,b c" in result.stdout
    assert "checkpoint:\n  folder: ${job.dir}/checkpoints" in result.stdout
    assert "name: local" in result.stdout
    assert_nothing_created(forge_env)


def test_dry_run_prints_roles(forge_env: dict[str, Path]) -> None:
    result = run_forge(str(EXAMPLE), "--dry-run", "detached=true", "+job.env.WANDB_API_KEY=k123")
    assert result.returncode == 0, result.stderr
    assert "k123" not in result.stdout
    for role in ("name: client", "name: policy_0", "name: trainer"):
        assert role in result.stdout
    assert_nothing_created(forge_env)


def test_plugins_lists_local() -> None:
    result = run_forge("plugins")
    assert result.returncode == 0
    assert "local_backend  (forge-launcher" in result.stdout
    assert "forge_launcher_submit" in result.stdout
    assert "local_storage  (forge-launcher" in result.stdout


def test_status_of_unknown_job() -> None:
    result = run_forge("status", "ghost-123")
    assert result.returncode == 2
    assert "No job named 'ghost-123'" in result.stderr


def test_double_dash_only_for_launch() -> None:
    result = run_forge("status", "x", "--", "y")
    assert result.returncode == 2


def test_too_many_local_hosts(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    result = run_forge(str(write_config(tmp_path, "actors:\n  t: {procs: 1, hosts: 100000}\n")))
    assert result.returncode == 2
    assert "100000 worker hosts" in result.stderr
    assert "backend.max_hosts=64" in result.stderr
    assert_nothing_created(forge_env)


def test_literal_secret_warns(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    result = run_forge(str(write_config(tmp_path, "wandb:\n  api_key: literal123\n")), "job.name=sec1")
    assert result.returncode == 0, result.stderr
    assert "wandb.api_key contains a literal secret value" in result.stderr
    saved = (forge_env["storage"] / "forge_runs" / "sec1" / "config.yaml").read_text()
    assert "literal123" not in saved


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("job.args=notalist", "job.args must be a list"),
        ("job.env=5", "job.env must be a mapping"),
        ("+job.env.BAD-KEY=1", "invalid variable name 'BAD-KEY'"),
        ("job.name=true", "job.name must be text"),
        ("job.name=${nope.missing}", "Cannot resolve job.name"),
    ],
)
def test_bad_job_section(tmp_path: Path, forge_env: dict[str, Path], override: str, message: str) -> None:
    result = run_forge(str(write_config(tmp_path, "")), override)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_created(forge_env)


def test_forge_home_not_directory(tmp_path: Path, forge_env: dict[str, Path]) -> None:
    not_a_dir = tmp_path / "afile"
    not_a_dir.write_text("x")
    result = run_forge(str(write_config(tmp_path, "")), env={"FORGE_HOME": str(not_a_dir)})
    assert result.returncode == 2
    assert "FORGE_HOME" in result.stderr
    assert not (forge_env["storage"] / "forge_runs").exists() or not any((forge_env["storage"] / "forge_runs").iterdir())


def test_corrupt_record_reported(forge_env: dict[str, Path]) -> None:
    jobs = forge_env["home"] / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "bad.json").write_text("[]")
    status = run_forge("status", "bad")
    assert status.returncode == 1
    assert "is corrupt" in status.stderr
    listing = run_forge("list")
    assert listing.returncode == 0


def test_mistyped_command() -> None:
    result = run_forge("stauts", "x")
    assert result.returncode == 2
    assert "'stauts' is neither a command nor a config file" in result.stderr


def test_cfg_and_dry_run_exclusive() -> None:
    result = run_forge(str(EXAMPLE), "--cfg", "--dry-run")
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr
