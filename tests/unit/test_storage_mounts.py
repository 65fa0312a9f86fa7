"""Mount helpers shared by storage plugins: mountinfo, commands, the host lock, the root."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from forge_launcher.errors import ConfigError
from forge_launcher.mounts import (
    CommandFailed,
    CommandNotFound,
    CommandResult,
    CommandTimeout,
    HostLock,
    MountError,
    MountState,
    environment_without,
    find_mount,
    format_failure,
    mask_secret_values,
    normalize_mount_point,
    parse_mode,
    parse_mountinfo,
    probe_mount,
    read_mount_point,
    run_command,
)

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
45 22 0:40 / /mnt/wsfuse rw,nosuid,nodev,relatime shared:7 master:3 - fuse.oilfs ws://ws.example/team rw,user_id=0
46 22 0:41 / /mnt/with\\040space rw - fuse /srv/a\\134b rw
47 45 0:42 / /mnt/wsfuse rw - tmpfs tmpfs rw
48 22 0:43 /sub /mnt/bound rw - ext4 /dev/sdb1 rw
"""


def test_mountinfo_fields() -> None:
    entries = parse_mountinfo(MOUNTINFO)

    fuse = entries[1]
    assert fuse.mount_id == 45
    assert fuse.parent_id == 22
    assert fuse.mount_point == "/mnt/wsfuse"
    assert fuse.fstype == "fuse.oilfs"
    assert fuse.source == "ws://ws.example/team"
    assert fuse.is_fuse
    assert entries[4].root == "/sub"


def test_mountinfo_octal_escapes() -> None:
    entry = parse_mountinfo(MOUNTINFO)[2]

    assert entry.mount_point == "/mnt/with space"
    assert entry.source == "/srv/a\\b"


def test_mountinfo_skips_malformed_lines() -> None:
    assert parse_mountinfo("garbage line\n\n") == []


def test_find_mount_returns_topmost() -> None:
    entry = find_mount("/mnt/wsfuse", parse_mountinfo(MOUNTINFO))

    assert entry is not None
    assert entry.fstype == "tmpfs"
    assert not entry.is_fuse


def test_find_mount_absent() -> None:
    assert find_mount("/mnt/other", parse_mountinfo(MOUNTINFO)) is None


def test_normalize_mount_point_resolves_parent(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")

    assert normalize_mount_point(tmp_path / "link" / "mnt") == str((tmp_path / "real" / "mnt").resolve())


def test_read_mount_point_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))

    assert read_mount_point("/mnt/wsfuse/", "storage.mount_point", "/mnt/x") == "/mnt/wsfuse"
    assert read_mount_point("~/mnt", "storage.mount_point", "/mnt/x") == str(tmp_path / "mnt")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "storage.mount_point is not set"),
        ("", "storage.mount_point is empty"),
        ("  ", "storage.mount_point is empty"),
        ("mnt/rel", "Invalid storage.mount_point 'mnt/rel': it must be an absolute path"),
        ("./mnt", "Invalid storage.mount_point './mnt': it must be an absolute path"),
        (5, "Invalid storage.mount_point '5': it must be an absolute path"),
    ],
)
def test_read_mount_point_invalid(value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_mount_point(value, "storage.mount_point", "/mnt/x")

    assert expected in str(caught.value)
    assert "storage.mount_point=/mnt/x" in str(caught.value)


def test_probe_plain_directory(tmp_path: Path) -> None:
    assert probe_mount(tmp_path).state is MountState.NOT_MOUNTED


def test_probe_root_filesystem() -> None:
    assert probe_mount("/").state is MountState.LIVE


@pytest.mark.parametrize(("value", "mode"), [("2775", 0o2775), ("0755", 0o755), ("0o700", 0o700), (755, 0o755)])
def test_parse_mode_valid(value: object, mode: int) -> None:
    assert parse_mode(value, "storage.root_mode") == mode


@pytest.mark.parametrize("value", ["", "rwx", "789", "17777", True, -1])
def test_parse_mode_invalid(value: object) -> None:
    with pytest.raises(ConfigError, match="storage.root_mode") as caught:
        parse_mode(value, "storage.root_mode")
    assert repr(value) in str(caught.value)


def test_environment_without_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/lib")

    env = environment_without(("LD_LIBRARY_PATH",))

    assert "LD_LIBRARY_PATH" not in env
    assert env["PATH"] == os.environ["PATH"]
    assert os.environ["LD_LIBRARY_PATH"] == "/opt/lib"


def test_run_command_output() -> None:
    result = run_command([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"], timeout=60)

    assert result.returncode == 3
    assert result.stdout == "out"
    assert result.stderr == "err"


def test_run_command_masks_secret_values() -> None:
    env = {"PATH": os.environ["PATH"], "HF_TOKEN": "hf-SECRET", "SERVICE_API_KEY": "key-SECRET", "PLAIN": "plain-value"}
    script = "import os, sys; print(os.environ['HF_TOKEN']); print(os.environ['SERVICE_API_KEY'], os.environ['PLAIN'], file=sys.stderr)"

    result = run_command([sys.executable, "-c", script], timeout=60, env=env)

    assert result.stdout == "****"
    assert result.stderr == "**** plain-value"


def test_mask_secret_values_longest_first() -> None:
    env = {"A_TOKEN": "abc", "B_SECRET": "abcdef", "MAX_TOKENS": "abcdef-not-secret", "EMPTY_KEY": ""}

    assert mask_secret_values("x abcdef y abc z", env) == "x **** y **** z"


def test_format_failure_output_last() -> None:
    result = CommandResult(["fusermount", "-u", "/mnt/x"], 1, "", "fusermount: busy\nsecond line")

    assert format_failure(result) == "Command ['fusermount', '-u', '/mnt/x'] failed with exit status 1.\nThe command's stderr was:\nfusermount: busy\nsecond line"
    assert CommandFailed.from_result(result).describe("Try again.").splitlines()[0].endswith("exit status 1. Try again.")


def test_run_command_not_found(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFound, match="not found"):
        run_command([str(tmp_path / "missing")], timeout=60)


def test_run_command_timeout_kills_group(tmp_path: Path) -> None:
    # The child sleeps in a grandchild too, so only a process group kill stops both.
    script = tmp_path / "slow.sh"
    script.write_text(f"#!/bin/sh\necho started >&2\nsleep 600 &\necho $! > {tmp_path}/grandchild.pid\nwait\n")
    script.chmod(0o755)

    with pytest.raises(CommandTimeout, match="timed out after 1 s") as caught:
        run_command([str(script)], timeout=1)

    assert "started" in str(caught.value)
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    # SIGKILL is delivered asynchronously, so wait (bounded) for the grandchild to exit.
    deadline = time.monotonic() + 60
    while not _exited(grandchild):
        assert time.monotonic() < deadline, f"grandchild {grandchild} still runs 60 s after the timeout"
        time.sleep(0.05)


def _exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] in "ZX"
    except FileNotFoundError:
        return True


def _wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    deadline = time.monotonic() + 60
    while not any(text in record.getMessage() for record in caplog.records):
        assert time.monotonic() < deadline, f"no log record containing {text!r} within 60 s"
        time.sleep(0.05)


def test_host_lock_reports_missed_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="forge_launcher.mounts")
    holder = HostLock("/mnt/test", timeout=60, lock_dir=tmp_path)
    waiter = HostLock("/mnt/test", timeout=60, lock_dir=tmp_path)
    entered = threading.Event()

    holder.__enter__()

    def wait() -> None:
        with waiter:
            entered.set()

    thread = threading.Thread(target=wait)
    thread.start()
    _wait_for_log(caplog, "waiting for another process")
    assert not entered.is_set()
    holder.record(ok=False, message="mount failed: quota exceeded")
    holder.__exit__(None, None, None)
    thread.join(60)

    assert entered.is_set()
    assert waiter.missed_attempt is not None
    assert not waiter.missed_attempt.ok
    assert waiter.missed_attempt.message == "mount failed: quota exceeded"


def test_host_lock_ignores_old_attempt(tmp_path: Path) -> None:
    with HostLock("/mnt/test", timeout=60, lock_dir=tmp_path) as first:
        first.record(ok=False, message="old failure")

    with HostLock("/mnt/test", timeout=60, lock_dir=tmp_path) as second:
        assert second.missed_attempt is None


def test_host_lock_timeout(tmp_path: Path) -> None:
    with HostLock("/mnt/test", timeout=60, lock_dir=tmp_path):
        with pytest.raises(MountError, match="Timed out after 0.2 s") as caught:
            with HostLock("/mnt/test", timeout=0.2, lock_dir=tmp_path):
                pass
    assert "/mnt/test" in str(caught.value)


def test_host_lock_per_key(tmp_path: Path) -> None:
    with HostLock("/mnt/a", timeout=60, lock_dir=tmp_path):
        with HostLock("/mnt/b", timeout=0.2, lock_dir=tmp_path) as other:
            assert other.missed_attempt is None
