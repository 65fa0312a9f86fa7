"""``forge setup`` and ``forge umount`` with the local storage, through the real CLI."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from forge_launcher.plugins import load_registry
from forge_launcher.storage_cli import compose_storage
from tests.conftest import run_forge


def test_compose_storage_default(forge_env: dict[str, Path]) -> None:
    name, section = compose_storage([], load_registry())

    assert name == "local"
    assert section["root"] == str(forge_env["storage"])


def test_compose_storage_oilfs_overrides() -> None:
    name, section = compose_storage(
        ["+storage=oilfs", "storage.workspace=ws://test/team", "storage.mount_point=/tmp/x", 'storage.mount_command=[/bin/oilfs,"--profile=genai"]'],
        load_registry(),
    )

    assert name == "oilfs"
    assert section["root"] == "/tmp/x/teamforge"
    assert section["mount_command"] == ["/bin/oilfs", "--profile=genai"]


def test_compose_storage_command_string() -> None:
    _, section = compose_storage(["+storage=oilfs", "storage.mount_command=sudo -n oilfs --profile=genai"], load_registry())

    assert section["mount_command"] == "sudo -n oilfs --profile=genai"


def test_setup_unquoted_list_item(tmp_path: Path) -> None:
    result = run_forge(
        "setup", "+storage=oilfs", "storage.workspace=ws://test/team", f"storage.mount_point={tmp_path / 'mnt'}",
        "storage.mount_command=[/bin/oilfs,--profile=genai]",
    )

    assert result.returncode == 2
    assert "Invalid storage.mount_command '[/bin/oilfs,--profile=genai]'" in result.stderr
    assert "Quote that item" in result.stderr


def test_setup_creates_local_root(forge_env: dict[str, Path]) -> None:
    result = run_forge("setup")

    assert result.returncode == 0, result.stderr
    assert "ok       storage local" in result.stdout
    assert forge_env["storage"].is_dir()
    assert stat.S_IMODE(forge_env["storage"].stat().st_mode) == 0o755


def test_setup_check_creates_nothing(forge_env: dict[str, Path]) -> None:
    result = run_forge("setup", "--check")

    assert result.returncode == 1
    assert "failed   storage local" in result.stdout
    assert "without --check" in result.stdout
    assert not forge_env["storage"].exists()


def test_setup_missing_module() -> None:
    result = run_forge("setup", "--module", "forge_no_such_module")

    assert result.returncode == 1
    assert "failed   module forge_no_such_module" in result.stdout
    assert "fix: Install the package" in result.stdout
    assert "1 required check(s) failed" in result.stderr


def test_setup_with_job_config() -> None:
    result = run_forge("setup", "examples/toy_rl.yaml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok       workload" in result.stdout
    assert "toy_rl.py" in result.stdout


def test_setup_job_config_bad_script(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("job:\n  script: no_such_script.py\n")

    result = run_forge("setup", str(config))

    assert result.returncode == 1
    assert "failed   workload" in result.stdout
    assert "no_such_script.py" in result.stdout


def test_setup_rejects_job_override() -> None:
    result = run_forge("setup", "trainer.lr=1")

    assert result.returncode == 2
    assert "'trainer.lr=1'" in result.stderr
    assert "storage.KEY=VALUE" in result.stderr


def test_setup_unknown_storage() -> None:
    result = run_forge("setup", "+storage=nfs")

    assert result.returncode == 2
    assert "Unknown storage 'nfs'" in result.stderr


def test_setup_oilfs_without_workspace(tmp_path: Path) -> None:
    result = run_forge("setup", "+storage=oilfs", f"storage.mount_point={tmp_path / 'mnt'}", env={"FORGE_OILFS_WORKSPACE": ""})

    assert result.returncode == 2
    assert "storage.workspace is not set or empty" in result.stderr


def test_setup_check_oilfs_without_workspace(tmp_path: Path) -> None:
    result = run_forge("setup", "--check", "+storage=oilfs", f"storage.mount_point={tmp_path / 'mnt'}", env={"FORGE_OILFS_WORKSPACE": ""})

    assert result.returncode == 1
    assert f"not mounted at {tmp_path / 'mnt'}" in result.stdout
    assert "storage.workspace" not in result.stdout + result.stderr


def test_umount_oilfs_without_workspace(tmp_path: Path) -> None:
    result = run_forge("umount", "+storage=oilfs", f"storage.mount_point={tmp_path / 'mnt'}", env={"FORGE_OILFS_WORKSPACE": ""})

    assert result.returncode == 0, result.stderr
    assert f"Nothing to unmount for storage oilfs at {tmp_path / 'mnt'}" in result.stdout


def test_setup_workspace_option_rejected(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    command = tmp_path / "oilfs"
    command.write_text(f"#!/bin/sh\ntouch {ran}\n")
    command.chmod(0o755)

    result = run_forge(
        "setup", "+storage=oilfs", "storage.workspace=--help", f"storage.mount_point={tmp_path / 'mnt'}", f"storage.mount_command=[{command}]",
    )

    assert result.returncode == 2
    assert "Invalid storage.workspace '--help': expected a workspace URL such as ws://HOST/NAME" in result.stderr
    assert not ran.exists()


@pytest.mark.parametrize("check", [[], ["--check"]])
def test_setup_relative_mount_point(tmp_path: Path, check: list[str]) -> None:
    result = run_forge("setup", *check, "+storage=oilfs", "storage.workspace=ws://test/team", "storage.mount_point=mnt/rel", cwd=tmp_path)

    assert result.returncode == 2
    assert "Invalid storage.mount_point 'mnt/rel': it must be an absolute path, the same on every host" in result.stderr
    assert not (tmp_path / "mnt").exists()


@pytest.mark.parametrize("command", ["setup", "umount"])
def test_empty_mount_point(command: str) -> None:
    result = run_forge(command, "+storage=oilfs", "storage.workspace=ws://test/team", "storage.mount_point=")

    assert result.returncode == 2
    assert "storage.mount_point is empty" in result.stderr
    assert "is not under" not in result.stderr


@pytest.mark.parametrize("command", ["setup", "umount"])
@pytest.mark.parametrize(("timeout", "shown"), [("abc", "'abc'"), ("0", "0"), ("-1", "-1")])
def test_invalid_timeout_exits_2(tmp_path: Path, command: str, timeout: str, shown: str) -> None:
    result = run_forge(command, "+storage=oilfs", "storage.workspace=ws://test/team", f"storage.mount_point={tmp_path / 'mnt'}", f"storage.timeout={timeout}")

    assert result.returncode == 2
    assert f"Invalid storage.timeout {shown}: expected a positive number of seconds" in result.stderr


def test_umount_local_releases_nothing() -> None:
    result = run_forge("umount")

    assert result.returncode == 0, result.stderr
    assert "Nothing to unmount for storage local" in result.stdout
