"""The ``oilfs`` storage: an OilFS workspace mounted with FUSE at a fixed path on each host.

Mounting runs ``storage.mount_command`` followed by the workspace URL and the
mount point, as an argv list, with ``LD_LIBRARY_PATH`` removed from the
command's environment only: the job's libraries break the OilFS binaries.
One process per host runs the command while the others wait on a lock.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from forge_launcher import hookimpl
from forge_launcher.errors import ConfigError, ForgeLauncherError, UserError
from forge_launcher.mounts import (
    CommandError,
    CommandFailed,
    CommandNotFound,
    CommandTimeout,
    HostLock,
    MountEntry,
    MountError,
    MountState,
    check_marker,
    describe_entry,
    environment_without,
    prepare_root,
    probe_mount,
    run_command,
    unmount,
)
from forge_launcher.plugins import StorageSpec
from forge_launcher_oilfs.settings import OilfsSettings, default_mount_command

log = logging.getLogger(__name__)

#: Variables removed from the mount command's environment.
SCRUBBED_VARIABLES = ("LD_LIBRARY_PATH",)
#: Seconds a waiter allows beyond the mount timeout for the process holding the lock,
#: which may also need to unmount a stale mount first.
LOCK_GRACE = 30.0


@hookimpl
def forge_launcher_storages() -> list[StorageSpec]:
    return [StorageSpec("oilfs", "an OilFS workspace mounted with FUSE (storage.workspace at storage.mount_point)")]


@hookimpl
def forge_launcher_mount(storage: dict[str, Any]) -> str:
    settings = OilfsSettings.from_storage(storage)
    mount_workspace(settings)
    return str(prepare_root(settings.root, settings.root_mode))


@hookimpl
def forge_launcher_unmount(storage: dict[str, Any]) -> bool:
    settings = OilfsSettings.from_storage(storage, require_workspace=False)
    return unmount_workspace(settings)


def mount_workspace(settings: OilfsSettings) -> None:
    """Make the workspace live at the mount point, unless it already is.

    Raises :class:`UserError` when something else is mounted there or the
    marker is missing, and :class:`MountError` when the command fails.
    ``settings`` must be read with the workspace required.
    """
    probe = probe_mount(settings.mount_point)
    if probe.state is MountState.LIVE:
        _check_mounted(settings, probe.entry)
        log.debug("%s is already mounted at %s", settings.workspace, settings.mount_point)
        return

    with HostLock(settings.mount_point, settings.timeout + LOCK_GRACE) as lock:
        # Another process may have mounted, or failed, while this one waited.
        probe = probe_mount(settings.mount_point)
        if probe.state is MountState.LIVE:
            _check_mounted(settings, probe.entry)
            return
        missed = lock.missed_attempt
        if missed is not None and not missed.ok:
            raise MountError(f"Process {missed.pid} on this host failed to mount OilFS while this one waited: {missed.message}")

        try:
            if probe.state is MountState.STALE:
                _detach_stale(settings, probe.entry, probe.error)
            _run_mount_command(settings)
        except (ForgeLauncherError, OSError) as exc:
            lock.record(ok=False, message=str(exc))
            raise
        lock.record(ok=True)


def _check_mounted(settings: OilfsSettings, entry: MountEntry | None) -> None:
    if entry is None:
        return
    if not entry.is_fuse:
        raise UserError(
            f"storage.mount_point {settings.mount_point!r} is already a mount point of {describe_entry(entry)}, "
            f"not an OilFS (FUSE) mount, and forge does not mount on top of it. "
            f"Unmount it yourself if nothing uses it, or choose another storage.mount_point."
        )
    if settings.source is not None and entry.source != settings.source:
        raise UserError(
            f"storage.mount_point {settings.mount_point!r} is already mounted from {entry.source!r}, "
            f"not from storage.source {settings.source!r}, and forge does not mount on top of it. "
            f"Unmount it with 'forge umount +storage=oilfs storage.source={entry.source}' if nothing uses it, "
            f"or choose another storage.mount_point."
        )
    check_marker(
        settings.marker,
        Path(settings.mount_point),
        consequence=f"{settings.mount_point!r} does not hold the workspace {settings.workspace!r} or it is not ready",
        fix="Check storage.workspace, or set storage.marker to a path that exists in the workspace (null disables the check).",
    )


def _detach_stale(settings: OilfsSettings, entry: MountEntry | None, error: OSError | None) -> None:
    described = describe_entry(entry) if entry is not None else "a mount"
    log.warning(
        "%s at %s is stale (%s); unmounting it lazily and mounting again",
        described, settings.mount_point, error.strerror if error is not None else "stat failed",
    )
    try:
        _run_unmount(settings, lazy=True)
    except CommandError as exc:
        hint = f"Unmount it as root with 'umount -l {settings.mount_point}', or set storage.unmount_command."
        raise MountError(f"Failed to unmount the stale mount at {settings.mount_point!r}: {exc.describe(hint)}") from exc


def _run_mount_command(settings: OilfsSettings) -> None:
    _create_mount_point(settings.mount_point)
    argv = [*settings.mount_command, settings.workspace, settings.mount_point]
    try:
        result = run_command(argv, settings.timeout, env=environment_without(SCRUBBED_VARIABLES))
    except CommandNotFound as exc:
        # A configured command that is missing is a config error, but a missing default means OilFS is not installed.
        error = UserError if settings.mount_command == default_mount_command() else ConfigError
        raise error(
            f"{exc} It is the OilFS mount command (storage.mount_command={settings.mount_command}). "
            f"Install OilFS, or set storage.mount_command=[PROGRAM,ARG,...] to a command that takes WORKSPACE MOUNT_POINT."
        ) from exc
    except CommandTimeout as exc:
        hint = "Raise storage.timeout if the workspace is slow to mount."
        raise MountError(f"Mounting {settings.workspace!r} at {settings.mount_point!r} failed: {exc.describe(hint)}") from exc
    if result.returncode != 0:
        failure = CommandFailed.from_result(result)
        hint = "Check storage.workspace and storage.mount_command."
        raise MountError(f"Mounting {settings.workspace!r} at {settings.mount_point!r} failed: {failure.describe(hint)}")

    probe = probe_mount(settings.mount_point)
    if probe.state is not MountState.LIVE:
        raise MountError(
            f"Mount command {argv} exited with status 0, but {settings.mount_point!r} is {probe.state.value}. "
            f"Check that storage.mount_command mounts its last argument."
        )
    log.info("mounted %s at %s", settings.workspace, settings.mount_point)
    _check_mounted(settings, probe.entry)


def _create_mount_point(mount_point: str) -> None:
    if os.path.lexists(mount_point) and not os.path.isdir(mount_point):
        problem = "is a file, not a directory" if os.path.isfile(mount_point) else "exists but is not a directory"
        raise UserError(
            f"storage.mount_point {mount_point!r} {problem}, so nothing can be mounted on it. "
            f"Choose another path with storage.mount_point=PATH, or remove the file."
        )
    try:
        os.makedirs(mount_point, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        # A component of the path above the mount point is a file.
        raise UserError(
            f"Cannot create storage.mount_point {mount_point!r}: {exc.strerror}, because a parent path is not a directory. "
            f"Choose another path with storage.mount_point=PATH."
        ) from exc
    except OSError as exc:
        raise UserError(
            f"Cannot create storage.mount_point {mount_point!r}: {exc.strerror}. "
            f"Create it with 'sudo mkdir -p {mount_point}', or choose another one with storage.mount_point=PATH."
        ) from exc


def unmount_workspace(settings: OilfsSettings) -> bool:
    """Unmount the workspace; return ``False`` when nothing was mounted.

    A stale mount is always detached lazily. A live one is unmounted lazily
    only with ``storage.lazy_unmount``, so a busy mount is reported rather
    than hidden.
    """
    with HostLock(settings.mount_point, settings.timeout + LOCK_GRACE):
        probe = probe_mount(settings.mount_point)
        if probe.state is MountState.NOT_MOUNTED:
            log.info("nothing is mounted at %s", settings.mount_point)
            return False
        if probe.state is MountState.LIVE:
            _check_ours(settings, probe.entry)

        lazy = settings.lazy_unmount or probe.state is MountState.STALE
        try:
            _run_unmount(settings, lazy=lazy)
        except CommandTimeout as exc:
            hint = "Raise storage.timeout if unmounting is slow."
            raise MountError(f"Failed to unmount {settings.mount_point!r}: {exc.describe(hint)}") from exc
        except CommandFailed as exc:
            hint = "" if lazy else "If it is busy, stop the processes using it, or detach it with 'forge umount --lazy'."
            raise MountError(f"Failed to unmount {settings.mount_point!r}: {exc.describe(hint)}") from exc
        return True


def _run_unmount(settings: OilfsSettings, lazy: bool) -> None:
    """Run the unmount command, explaining a missing command with its fix."""
    try:
        unmount(settings.mount_point, settings.unmount_command, lazy=lazy, timeout=settings.timeout)
    except CommandNotFound as exc:
        if settings.unmount_command is not None:
            raise ConfigError(
                f"{exc} It is the unmount command (storage.unmount_command={settings.unmount_command}). "
                f"Set storage.unmount_command=[PROGRAM,ARG,...] to a command that takes MOUNT_POINT, "
                f"or to null for the default (umount as root, fusermount -u for other users)."
            ) from exc
        raise MountError(
            f"{exc} It is the default unmount command. Install fuse3 (for fusermount3) or util-linux (for umount), "
            f"or set storage.unmount_command=[PROGRAM,ARG,...] to a command that takes MOUNT_POINT."
        ) from exc


def _check_ours(settings: OilfsSettings, entry: MountEntry | None) -> None:
    if entry is None:
        return
    if not entry.is_fuse or (settings.source is not None and entry.source != settings.source):
        raise UserError(
            f"storage.mount_point {settings.mount_point!r} is a mount of {describe_entry(entry)}, which is not this OilFS mount, "
            f"so forge leaves it alone. Unmount it yourself, or check storage.mount_point and storage.source."
        )
