"""The ``oilfs`` storage on a real FUSE mount made by tests/bin/fake-oilfs (bindfs).

The plugin runs the stand-in command exactly as it runs OilFS: the command
line is set through ``storage.mount_command``, and the plugin has no
code path for tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from forge_launcher.errors import UserError
from forge_launcher.mounts import MountError, MountState, find_mount, probe_mount, read_mountinfo, unmount
from forge_launcher.plugins import load_registry
from tests.conftest import REPO_ROOT, run_forge
from tests.storage_conformance import StorageConformance

FAKE_OILFS = REPO_ROOT / "tests" / "bin" / "fake-oilfs"
WORKSPACE = "ws://test/team"
#: Upper bound on waits for other processes, so a broken test fails instead of hanging.
WAIT_LIMIT = 120.0


def fuse_unavailable() -> str | None:
    if shutil.which("bindfs") is None:
        return "bindfs is not installed (apt-get install -y bindfs fuse3)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist, so FUSE mounts are impossible here"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user"
    return None


pytestmark = [pytest.mark.integration, pytest.mark.skipif(fuse_unavailable() is not None, reason=str(fuse_unavailable()))]


class FakeWorkspace:
    """A workspace served by fake-oilfs from a backing directory under ``tmp_path``."""

    def __init__(self, base: Path, name: str = "team") -> None:
        self.backing = base / "backing"
        self.source = self.backing / "test" / name
        self.source.mkdir(parents=True)
        self.url = f"ws://test/{name}"
        self.mount_point = base / "wsfuse"
        self.pid_file = base / f"{name}-bindfs.pid"

    def command(self) -> list[str]:
        return [str(FAKE_OILFS), "--backing", str(self.backing), "--pid-file", str(self.pid_file)]

    def storage(self, **overrides: Any) -> dict[str, Any]:
        storage = {
            "name": "oilfs",
            "workspace": self.url,
            "mount_point": str(self.mount_point),
            "root": str(self.mount_point / "teamforge"),
            "mount_command": self.command(),
            "timeout": 60,
        }
        storage.update(overrides)
        return storage

    def overrides(self) -> list[str]:
        return [
            "+storage=oilfs",
            f"storage.workspace={self.url}",
            f"storage.mount_point={self.mount_point}",
            "storage.mount_command=[" + ",".join(self.command()) + "]",
        ]

    def daemon_pid(self) -> int:
        return int(self.pid_file.read_text())


def wait_until(condition: Any, description: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up after {WAIT_LIMIT:g} s waiting for {description}"
        time.sleep(0.05)


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return True
    return state in "ZX"


def kill_daemon(pid: int, mount_point: Path) -> None:
    """Kill the FUSE daemon and wait until its mount is stale."""
    os.kill(pid, signal.SIGKILL)
    # The kernel drops the FUSE connection once every thread of the daemon has
    # exited, which can be after the main thread already shows as a zombie.
    wait_until(lambda: probe_mount(mount_point).state is MountState.STALE, f"the mount at {mount_point} to go stale")


def mounts_at(path: Path) -> int:
    return sum(1 for entry in read_mountinfo() if entry.mount_point == str(path))


def release_mounts(*mount_points: Path) -> None:
    for mount_point in mount_points:
        while find_mount(mount_point) is not None:
            unmount(str(mount_point), None, lazy=True, timeout=60)


@pytest.fixture
def workspace(tmp_path: Path) -> Any:
    workspace = FakeWorkspace(tmp_path)
    yield workspace
    release_mounts(workspace.mount_point)
    # The daemon exits once unmounted; this stops one that is stuck, by the PID it wrote.
    if workspace.pid_file.exists() and not process_gone(workspace.daemon_pid()):
        os.kill(workspace.daemon_pid(), signal.SIGKILL)


def mount(storage: dict[str, Any]) -> str:
    return load_registry().storage_hooks("oilfs").forge_launcher_mount(storage=storage)


def unmount_hook(storage: dict[str, Any]) -> bool:
    return load_registry().storage_hooks("oilfs").forge_launcher_unmount(storage=storage)


def wrapper(path: Path, body: str) -> list[str]:
    """Write a shell script that runs ``body`` before the mount and return it as a command."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return [str(path)]


# -- the shared storage contract ---------------------------------------------------


class TestOilfsStorage(StorageConformance):
    storage_name = "oilfs"

    @pytest.fixture
    def storage(self, workspace: FakeWorkspace) -> dict[str, Any]:
        return workspace.storage()

    def place_marker(self, storage: dict[str, Any], marker: str) -> None:
        # A relative marker is looked up under the mount point, so it lives in the workspace.
        workspace_dir = Path(storage["mount_command"][2]) / "test" / "team"
        (workspace_dir / marker).write_text("")


# -- mounting ----------------------------------------------------------------------


def test_first_mount(workspace: FakeWorkspace) -> None:
    (workspace.source / "model.txt").write_text("weights")

    root = mount(workspace.storage())

    entry = find_mount(workspace.mount_point)
    assert entry is not None
    assert entry.is_fuse
    assert entry.source == str(workspace.source)
    assert (workspace.mount_point / "model.txt").read_text() == "weights"
    assert root == str(workspace.mount_point / "teamforge")
    assert (workspace.source / "teamforge").is_dir()


def test_second_mount_is_noop(workspace: FakeWorkspace, tmp_path: Path) -> None:
    count = tmp_path / "runs"
    command = wrapper(tmp_path / "counting-oilfs", f'echo run >> {count}\nexec "$@"\n') + workspace.command()
    storage = workspace.storage(mount_command=command)

    first = mount(storage)
    pid = workspace.daemon_pid()
    second = mount(storage)

    assert first == second
    assert count.read_text().splitlines() == ["run"]
    assert workspace.daemon_pid() == pid
    assert mounts_at(workspace.mount_point) == 1


def test_stale_mount_recovered(workspace: FakeWorkspace) -> None:
    mount(workspace.storage())
    (workspace.mount_point / "teamforge" / "step_1.ckpt").write_text("state")
    old_pid = workspace.daemon_pid()

    kill_daemon(old_pid, workspace.mount_point)

    root = mount(workspace.storage())

    assert probe_mount(workspace.mount_point).state is MountState.LIVE
    assert mounts_at(workspace.mount_point) == 1
    assert workspace.daemon_pid() != old_pid
    assert (Path(root) / "step_1.ckpt").read_text() == "state"


def test_ld_library_path_with_real_mount(workspace: FakeWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = tmp_path / "environment"
    command = wrapper(tmp_path / "env-oilfs", f'env > {environment}\nexec "$@"\n') + workspace.command()
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/job/lib")

    mount(workspace.storage(mount_command=command))

    names = [line.split("=", 1)[0] for line in environment.read_text().splitlines()]
    assert "PATH" in names
    assert "LD_LIBRARY_PATH" not in names
    assert os.environ["LD_LIBRARY_PATH"] == "/opt/job/lib"
    assert find_mount(workspace.mount_point) is not None


def test_marker_missing_after_mount(workspace: FakeWorkspace) -> None:
    with pytest.raises(UserError) as caught:
        mount(workspace.storage(marker="teamforge/.oilfs_marker"))

    message = str(caught.value)
    assert str(workspace.mount_point / "teamforge" / ".oilfs_marker") in message
    assert WORKSPACE in message
    assert "storage.marker" in message


def test_marker_present(workspace: FakeWorkspace) -> None:
    (workspace.source / "teamforge").mkdir()
    (workspace.source / "teamforge" / ".oilfs_marker").write_text("")

    assert mount(workspace.storage(marker="teamforge/.oilfs_marker")) == str(workspace.mount_point / "teamforge")


def test_workspace_failure_keeps_stderr(workspace: FakeWorkspace) -> None:
    with pytest.raises(MountError) as caught:
        mount(workspace.storage(workspace="ws://test/absent"))

    assert "fake-oilfs: workspace 'ws://test/absent' not found" in str(caught.value)
    assert find_mount(workspace.mount_point) is None


def test_other_source_not_stacked(workspace: FakeWorkspace, tmp_path: Path) -> None:
    mount(workspace.storage(source=str(workspace.source)))
    other = FakeWorkspace(tmp_path, name="other")

    with pytest.raises(UserError) as caught:
        mount(other.storage(source=str(other.source)))

    message = str(caught.value)
    assert f"already mounted from {str(workspace.source)!r}" in message
    assert "storage.mount_point" in message
    assert mounts_at(workspace.mount_point) == 1
    assert not other.pid_file.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting tmpfs needs root")
def test_non_fuse_mount_not_stacked(workspace: FakeWorkspace) -> None:
    workspace.mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "forge-test-tmpfs", str(workspace.mount_point)], check=True)

    with pytest.raises(UserError) as caught:
        mount(workspace.storage())

    assert "tmpfs from 'forge-test-tmpfs'" in str(caught.value)
    assert "not an OilFS (FUSE) mount" in str(caught.value)
    assert mounts_at(workspace.mount_point) == 1
    assert not workspace.pid_file.exists()


# -- one mount per host --------------------------------------------------------------

MOUNT_IN_PROCESS = """\
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from forge_launcher.plugins import load_registry
storage = json.loads(sys.argv[1])
print(load_registry().storage_hooks("oilfs").forge_launcher_mount(storage=storage))
"""


def start_concurrent_mounts(storage: dict[str, Any], tmp_path: Path, count: int) -> list[tuple[subprocess.Popen[bytes], Path, Path]]:
    processes = []
    for index in range(count):
        stdout, stderr = tmp_path / f"mount-{index}.out", tmp_path / f"mount-{index}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen([sys.executable, "-c", MOUNT_IN_PROCESS, json.dumps(storage)], stdout=out, stderr=err, cwd=REPO_ROOT)
        processes.append((process, stdout, stderr))
    return processes


def gated_command(tmp_path: Path, after_release: str) -> tuple[list[str], Path, Path]:
    """Return a mount command that counts its runs and blocks until the release file exists."""
    count, release = tmp_path / "runs", tmp_path / "release"
    body = f"echo run >> {count}\nwhile [ ! -e {release} ]; do sleep 0.05; done\n{after_release}"
    return wrapper(tmp_path / "gated-oilfs", body), count, release


def release_when_all_wait(processes: list[Any], count: Path, release: Path) -> None:
    # The command runs in one process while the others log that they wait on
    # the host lock, so every process is inside the same mount attempt.
    waiting = "waiting for another process on this host to mount"
    wait_until(lambda: count.exists(), "the first process to run the mount command")
    wait_until(
        lambda: sum(waiting in stderr.read_text() for _, _, stderr in processes) == len(processes) - 1,
        f"{len(processes) - 1} processes to wait on the host lock",
    )
    release.write_text("")
    for process, _, _ in processes:
        process.wait(timeout=WAIT_LIMIT)


def test_concurrent_mounts_run_command_once(workspace: FakeWorkspace, tmp_path: Path) -> None:
    command, count, release = gated_command(tmp_path, f'exec {" ".join(workspace.command())} "$@"\n')
    processes = start_concurrent_mounts(workspace.storage(mount_command=command), tmp_path, count=8)

    release_when_all_wait(processes, count, release)

    for process, stdout, stderr in processes:
        assert process.returncode == 0, stderr.read_text()
        assert stdout.read_text().strip() == str(workspace.mount_point / "teamforge")
    assert count.read_text().splitlines() == ["run"]
    assert mounts_at(workspace.mount_point) == 1


def test_concurrent_failure_reaches_every_waiter(workspace: FakeWorkspace, tmp_path: Path) -> None:
    command, count, release = gated_command(tmp_path, "echo 'oilfs: quota exceeded for ws://test/team' >&2\nexit 3\n")
    processes = start_concurrent_mounts(workspace.storage(mount_command=command), tmp_path, count=8)

    release_when_all_wait(processes, count, release)

    for process, _, stderr in processes:
        assert process.returncode != 0
        assert "oilfs: quota exceeded for ws://test/team" in stderr.read_text()
    assert count.read_text().splitlines() == ["run"]
    assert find_mount(workspace.mount_point) is None


# -- forge setup and forge umount ------------------------------------------------------


def test_setup_mounts_then_reports_mounted(workspace: FakeWorkspace) -> None:
    first = run_forge("setup", *workspace.overrides())

    assert first.returncode == 0, first.stdout + first.stderr
    assert f"ok       storage oilfs   mounted at {workspace.mount_point}" in first.stdout
    assert find_mount(workspace.mount_point) is not None

    second = run_forge("setup", *workspace.overrides())

    assert second.returncode == 0, second.stdout + second.stderr
    assert f"already mounted at {workspace.mount_point}" in second.stdout


def test_setup_check_reports_without_mounting(workspace: FakeWorkspace) -> None:
    result = run_forge("setup", "--check", *workspace.overrides())

    assert result.returncode == 1
    assert f"not mounted at {workspace.mount_point}" in result.stdout
    assert find_mount(workspace.mount_point) is None


def test_setup_reports_command_stderr(workspace: FakeWorkspace) -> None:
    overrides = [o if not o.startswith("storage.workspace=") else "storage.workspace=ws://test/absent" for o in workspace.overrides()]

    result = run_forge("setup", *overrides)

    assert result.returncode == 1
    assert "failed   storage oilfs" in result.stdout
    assert "workspace 'ws://test/absent' not found" in result.stdout


def test_umount_then_nothing(workspace: FakeWorkspace) -> None:
    mount(workspace.storage())
    pid = workspace.daemon_pid()

    first = run_forge("umount", *workspace.overrides())

    assert first.returncode == 0, first.stderr
    assert f"Unmounted storage oilfs at {workspace.mount_point}" in first.stdout
    assert find_mount(workspace.mount_point) is None
    wait_until(lambda: process_gone(pid), "bindfs to exit after the unmount")

    second = run_forge("umount", *workspace.overrides())

    assert second.returncode == 0, second.stderr
    assert "Nothing to unmount" in second.stdout


def test_umount_busy_needs_lazy(workspace: FakeWorkspace) -> None:
    root = mount(workspace.storage())

    with open(Path(root) / "open.log", "w"):
        busy = run_forge("umount", *workspace.overrides())

        assert busy.returncode == 1
        assert "forge umount --lazy" in busy.stderr
        # The hint ends the summary line, and the unmount command's own output follows it.
        lines = busy.stderr.splitlines()
        assert lines[0].endswith("detach it with 'forge umount --lazy'.")
        assert lines[1] == "The command's stderr was:"
        assert find_mount(workspace.mount_point) is not None

        lazy = run_forge("umount", "--lazy", *workspace.overrides())

        assert lazy.returncode == 0, lazy.stderr
        assert find_mount(workspace.mount_point) is None


def test_umount_without_workspace(workspace: FakeWorkspace) -> None:
    mount(workspace.storage())
    overrides = ["+storage=oilfs", f"storage.mount_point={workspace.mount_point}"]

    check = run_forge("setup", "--check", *overrides, env={"FORGE_OILFS_WORKSPACE": ""})

    assert check.returncode == 0, check.stdout + check.stderr
    assert f"ok       storage oilfs   mounted at {workspace.mount_point}" in check.stdout

    result = run_forge("umount", *overrides, env={"FORGE_OILFS_WORKSPACE": ""})

    assert result.returncode == 0, result.stderr
    assert f"Unmounted storage oilfs at {workspace.mount_point}" in result.stdout
    assert find_mount(workspace.mount_point) is None


def test_umount_missing_unmount_command(workspace: FakeWorkspace, tmp_path: Path) -> None:
    mount(workspace.storage())
    missing = tmp_path / "no-such-umount"

    result = run_forge("umount", *workspace.overrides(), f"storage.unmount_command=[{missing}]")

    assert result.returncode == 2
    assert f"Command {str(missing)!r} not found." in result.stderr
    assert "storage.unmount_command" in result.stderr
    assert "--lazy" not in result.stderr
    assert find_mount(workspace.mount_point) is not None


def test_unmount_hook_detaches_stale(workspace: FakeWorkspace) -> None:
    mount(workspace.storage())
    pid = workspace.daemon_pid()
    kill_daemon(pid, workspace.mount_point)

    assert unmount_hook(workspace.storage()) is True
    assert find_mount(workspace.mount_point) is None


# -- a whole job --------------------------------------------------------------------


def test_example_job_on_fuse_mount(workspace: FakeWorkspace) -> None:
    result = run_forge("examples/toy_rl.yaml", *workspace.overrides())

    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"^Job directory: (.+)$", result.stdout, re.MULTILINE)
    assert match is not None, result.stdout
    job_dir = Path(match.group(1))
    assert job_dir.parent == workspace.mount_point / "teamforge" / "forge_runs"
    entry = find_mount(workspace.mount_point)
    assert entry is not None
    assert entry.is_fuse
    # What the job wrote went through FUSE into the workspace's backing directory.
    backing_job_dir = workspace.source / "teamforge" / "forge_runs" / job_dir.name
    assert (backing_job_dir / "config.yaml").is_file()
    assert list((backing_job_dir / "checkpoints").iterdir())
