"""The ``oilfs`` storage plugin without a FUSE mount: settings and mount command failures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from forge_launcher.errors import ConfigError, UserError
from forge_launcher.mounts import HostLock, MountError
from forge_launcher.plugins import load_registry
from forge_launcher_oilfs.settings import OILFS_WRAPPER, OilfsSettings, default_mount_command


def mount(storage: dict[str, Any]) -> str:
    return load_registry().storage_hooks("oilfs").forge_launcher_mount(storage=storage)


def unmount(storage: dict[str, Any]) -> bool:
    return load_registry().storage_hooks("oilfs").forge_launcher_unmount(storage=storage)


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


WORKSPACE_FIX = "expected a workspace URL such as ws://HOST/NAME"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("workspace", None, "storage.workspace is not set or empty"),
        ("workspace", "", "storage.workspace is not set or empty"),
        ("workspace", 5, f"Invalid storage.workspace 5: {WORKSPACE_FIX}"),
        ("workspace", "--help", f"Invalid storage.workspace '--help': {WORKSPACE_FIX}"),
        ("workspace", "-o allow_other", f"Invalid storage.workspace '-o allow_other': {WORKSPACE_FIX}"),
        ("workspace", "   ", f"Invalid storage.workspace '   ': {WORKSPACE_FIX}"),
        ("workspace", "ws://test/team\n--debug", f"Invalid storage.workspace 'ws://test/team\\n--debug': {WORKSPACE_FIX}"),
        ("workspace", "ws://test/\x1b[2Jteam", f"Invalid storage.workspace 'ws://test/\\x1b[2Jteam': {WORKSPACE_FIX}"),
        ("mount_point", "mnt/rel", "Invalid storage.mount_point 'mnt/rel': it must be an absolute path, the same on every host"),
        ("mount_point", "", "storage.mount_point is empty. Set it to an absolute path, such as storage.mount_point=/mnt/wsfuse"),
        ("mount_point", None, "storage.mount_point is not set"),
        ("root", "/elsewhere/teamforge", "is not under storage.mount_point"),
        ("root", "teamforge", "Invalid storage.root 'teamforge': it must be an absolute path"),
        ("mount_command", {"a": 1}, "Invalid storage.mount_command"),
        ("mount_command", "oilfs 'unclosed", "Invalid storage.mount_command"),
        ("unmount_command", [["nested"]], "Invalid storage.unmount_command"),
        ("marker", "/abs/marker", "Invalid storage.marker '/abs/marker'"),
        ("marker", "../outside", "Invalid storage.marker '../outside'"),
        ("timeout", 0, "Invalid storage.timeout 0"),
        ("timeout", -1, "Invalid storage.timeout -1"),
        ("timeout", "soon", "Invalid storage.timeout 'soon'"),
        ("root_mode", "99", "Invalid storage.root_mode '99'"),
    ],
)
def test_settings_invalid(storage: dict[str, Any], key: str, value: object, expected: str) -> None:
    storage[key] = value

    with pytest.raises(ConfigError) as caught:
        mount(storage)
    assert expected in str(caught.value)


@pytest.mark.parametrize("workspace", ["ws://test/team", "ws://oil.example:8080/team/sub-dir", "team-workspace", "ws://test/a b"])
def test_settings_workspace_permissive(storage: dict[str, Any], workspace: str) -> None:
    storage["workspace"] = workspace

    assert OilfsSettings.from_storage(storage).workspace == workspace


def test_empty_mount_point_names_setting(storage: dict[str, Any]) -> None:
    # Hydra resolves root: ${storage.mount_point}/teamforge to /teamforge for an empty mount point.
    storage["mount_point"] = ""
    storage["root"] = "/teamforge"

    with pytest.raises(ConfigError) as caught:
        mount(storage)

    assert "storage.mount_point is empty" in str(caught.value)
    assert "is not under" not in str(caught.value)


def test_relative_mount_point_creates_nothing(storage: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage["mount_point"] = "mnt/rel"
    storage["root"] = "mnt/rel/teamforge"

    with pytest.raises(ConfigError, match="must be an absolute path"):
        mount(storage)
    with pytest.raises(ConfigError, match="must be an absolute path"):
        unmount(storage)

    assert not (tmp_path / "mnt").exists()


def test_workspace_option_never_runs_command(storage: dict[str, Any], tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    storage["mount_command"] = [write_script(tmp_path / "oilfs", f"touch {ran}\nexit 1\n")]
    storage["workspace"] = "--help"

    with pytest.raises(ConfigError):
        mount(storage)

    assert not ran.exists()


def test_unmount_without_workspace(storage: dict[str, Any]) -> None:
    for workspace in (None, ""):
        storage["workspace"] = workspace

        assert unmount(storage) is False


def test_command_missing(storage: dict[str, Any], tmp_path: Path) -> None:
    # storage.mount_command is configured, so a missing command is a config error (exit status 2).
    with pytest.raises(ConfigError) as caught:
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

    first_line, *rest = str(caught.value).splitlines()
    assert "timed out after 1 s." in first_line
    # The hint comes before the command's output, so it cannot read as part of it.
    assert first_line.endswith("Raise storage.timeout if the workspace is slow to mount.")
    assert rest == ["The command's stderr was:", "connecting"]


def test_command_failure_hint_before_output(storage: dict[str, Any], tmp_path: Path) -> None:
    storage["mount_command"] = [write_script(tmp_path / "oilfs", "echo 'line one' >&2\necho 'line two' >&2\nexit 4\n")]

    with pytest.raises(MountError) as caught:
        mount(storage)

    first_line, *rest = str(caught.value).splitlines()
    assert first_line.endswith("failed with exit status 4. Check storage.workspace and storage.mount_command.")
    assert rest == ["The command's stderr was:", "line one", "line two"]


@pytest.fixture
def secret_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefSECRET")
    monkeypatch.setenv("WANDB_API_KEY", "wandb-SECRET-123")
    monkeypatch.setenv("DB_PASSWORD", "pw-SECRET")
    monkeypatch.setenv("FORGE_TEST_MARK", "visible-value")


PRINT_ENVIRONMENT = 'echo "hf=$HF_TOKEN wandb=$WANDB_API_KEY db=$DB_PASSWORD mark=$FORGE_TEST_MARK" >&{fd}\n'


@pytest.mark.usefixtures("secret_environment")
@pytest.mark.parametrize("fd", [1, 2])
def test_command_failure_masks_secrets(storage: dict[str, Any], tmp_path: Path, fd: int) -> None:
    storage["mount_command"] = [write_script(tmp_path / "oilfs", PRINT_ENVIRONMENT.format(fd=fd) + "exit 1\n")]

    with pytest.raises(MountError) as caught:
        mount(storage)

    message = str(caught.value)
    assert "SECRET" not in message
    assert "hf=**** wandb=**** db=**** mark=visible-value" in message


@pytest.mark.usefixtures("secret_environment")
def test_command_timeout_masks_secrets(storage: dict[str, Any], tmp_path: Path) -> None:
    storage["mount_command"] = [write_script(tmp_path / "oilfs", PRINT_ENVIRONMENT.format(fd=2) + "exec sleep 600\n")]
    storage["timeout"] = 1

    with pytest.raises(MountError) as caught:
        mount(storage)

    message = str(caught.value)
    assert "SECRET" not in message
    assert "hf=**** wandb=**** db=**** mark=visible-value" in message
    # Waiting processes read the failure from the host lock's state file, which every user can read.
    state = HostLock(str(Path(storage["mount_point"])), timeout=60).state_path.read_text()
    assert "SECRET" not in state
    assert "mark=visible-value" in state


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

    message = str(caught.value)
    assert f"storage.mount_point {storage['mount_point']!r} is a file, not a directory" in message
    assert "remove the file" in message
    assert "mkdir" not in message


def test_mount_point_parent_is_a_file(storage: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    storage["mount_point"] = str(tmp_path / "plain" / "wsfuse")
    storage["root"] = str(tmp_path / "plain" / "wsfuse" / "teamforge")

    with pytest.raises(UserError) as caught:
        mount(storage)

    message = str(caught.value)
    assert "a parent path is not a directory" in message
    assert "mkdir" not in message


def test_unmount_nothing_mounted(storage: dict[str, Any]) -> None:
    released = load_registry().storage_hooks("oilfs").forge_launcher_unmount(storage=storage)

    assert released is False
