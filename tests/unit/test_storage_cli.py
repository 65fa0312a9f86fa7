"""``forge setup`` and ``forge umount`` with the local storage, through the real CLI."""

from __future__ import annotations

import stat
from pathlib import Path

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

    assert result.returncode == 1
    assert "Invalid storage.mount_command '[/bin/oilfs,--profile=genai]'" in result.stdout
    assert "Quote that item" in result.stdout


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

    assert result.returncode == 1
    assert "storage.workspace is not set" in result.stdout


def test_umount_local_releases_nothing() -> None:
    result = run_forge("umount")

    assert result.returncode == 0, result.stderr
    assert "Nothing to unmount for storage local" in result.stdout
