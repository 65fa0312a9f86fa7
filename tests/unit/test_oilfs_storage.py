"""The ``oilfs`` storage plugin without a FUSE mount: settings and mount command failures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from forge_launcher.errors import UserError
from forge_launcher.mounts import MountError
from forge_launcher.plugins import load_registry
from forge_launcher_oilfs.settings import OILFS_WRAPPER, OilfsSettings, default_mount_command


def mount(storage: dict[str, Any]) -> str:
    return load_registry().storage_hooks("oilfs").forge_launcher_mount(storage=storage)


def write_script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def storage(tmp_path: Path) -> dict[str, Any]:
    mount_point = tmp_path / "wsfuse"
    return {
        "name": "oilfs",
        "workspace": "ws://test/team",
        "mount_point": str(mount_point),
        "root": str(mount_point / "teamforge"),
        "mount_command": [str(tmp_path / "missing-oilfs")],
        "timeout": 60,
    }


def test_settings_defaults(storage: dict[str, Any]) -> None:
    settings = OilfsSettings.from_storage({"workspace": "ws://test/team"})

    assert settings.mount_point == "/mnt/wsfuse"
    assert settings.root == "/mnt/wsfuse"
    assert settings.root_mode == 0o2775
    assert settings.timeout == 120
    assert settings.mount_command == default_mount_command()


def test_default_command_without_wrapper() -> None:
    if os.path.exists(OILFS_WRAPPER):
        pytest.skip(f"{OILFS_WRAPPER} exists on this host")

    expected = ["oilfs"] if os.geteuid() == 0 else ["sudo", "-n", "oilfs"]
    assert default_mount_command() == expected


def test_settings_command_string_split(storage: dict[str, Any]) -> None:
    storage["mount_command"] = "sudo -n '/opt/oil fs/oilfs' --profile=genai"

    assert OilfsSettings.from_storage(storage).mount_command == ["sudo", "-n", "/opt/oil fs/oilfs", "--profile=genai"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("workspace", None, "storage.workspace is not set"),
        ("workspace", 5, "Invalid storage.workspace 5"),
        ("root", "/elsewhere/teamforge", "is not under storage.mount_point"),
        ("mount_command", {"a": 1}, "Invalid storage.mount_command"),
        ("mount_command", "oilfs 'unclosed", "Invalid storage.mount_command"),
        ("unmount_command", [["nested"]], "Invalid storage.unmount_command"),
        ("marker", "/abs/marker", "Invalid storage.marker '/abs/marker'"),
        ("marker", "../outside", "Invalid storage.marker '../outside'"),
        ("timeout", 0, "Invalid storage.timeout 0"),
        ("timeout", "soon", "Invalid storage.timeout 'soon'"),
        ("root_mode", "99", "Invalid storage.root_mode '99'"),
    ],
)
def test_settings_invalid(storage: dict[str, Any], key: str, value: object, expected: str) -> None:
    storage[key] = value

    with pytest.raises(UserError) as caught:
        mount(storage)
    assert expected in str(caught.value)


def test_command_missing(storage: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        mount(storage)

    message = str(caught.value)
    assert str(tmp_path / "missing-oilfs") in message
    assert "not found" in message
    assert "storage.mount_command" in message


def test_command_failure_shows_stderr(storage: dict[str, Any], tmp_path: Path) -> None:
    storage["mount_command"] = [write_script(tmp_path / "oilfs", "echo 'oilfs: workspace ws://test/team not found' >&2\nexit 4\n")]

    with pytest.raises(MountError) as caught:
        mount(storage)

    message = str(caught.value)
    assert "exit status 4" in message
    assert "oilfs: workspace ws://test/team not found" in message
    assert "storage.workspace" in message


def test_command_receives_workspace_and_mount_point(storage: dict[str, Any], tmp_path: Path) -> None:
    arguments = tmp_path / "arguments"
    storage["mount_command"] = [write_script(tmp_path / "oilfs", f'printf "%s\\n" "$@" > {arguments}\nexit 1\n'), "--profile=genai"]

    with pytest.raises(MountError):
        mount(storage)

    assert arguments.read_text().splitlines() == ["--profile=genai", "ws://test/team", storage["mount_point"]]


def test_command_timeout(storage: dict[str, Any], tmp_path: Path) -> None:
    storage["mount_command"] = [write_script(tmp_path / "oilfs", "echo connecting >&2\nexec sleep 600\n")]
    storage["timeout"] = 1

    with pytest.raises(MountError) as caught:
        mount(storage)

    message = str(caught.value)
    assert "timed out after 1 s" in message
    assert "connecting" in message
    assert "storage.timeout" in message


def test_ld_library_path_scrubbed(storage: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = tmp_path / "environment"
    storage["mount_command"] = [write_script(tmp_path / "oilfs", f"env > {environment}\nexit 1\n")]
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/job/lib")
    monkeypatch.setenv("FORGE_TEST_MARK", "kept")

    with pytest.raises(MountError):
        mount(storage)

    names = [line.split("=", 1)[0] for line in environment.read_text().splitlines()]
    assert "FORGE_TEST_MARK" in names
    assert "LD_LIBRARY_PATH" not in names
    assert os.environ["LD_LIBRARY_PATH"] == "/opt/job/lib"


def test_command_that_mounts_nothing(storage: dict[str, Any], tmp_path: Path) -> None:
    storage["mount_command"] = [write_script(tmp_path / "oilfs", "exit 0\n")]

    with pytest.raises(MountError) as caught:
        mount(storage)

    assert "exited with status 0" in str(caught.value)
    assert "not mounted" in str(caught.value)


def test_mount_point_is_a_file(storage: dict[str, Any]) -> None:
    Path(storage["mount_point"]).write_text("")

    with pytest.raises(UserError) as caught:
        mount(storage)

    assert f"Cannot create storage.mount_point {storage['mount_point']!r}" in str(caught.value)


def test_unmount_nothing_mounted(storage: dict[str, Any]) -> None:
    released = load_registry().storage_hooks("oilfs").forge_launcher_unmount(storage=storage)

    assert released is False
