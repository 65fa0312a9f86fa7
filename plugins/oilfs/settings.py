"""The ``oilfs`` storage section, read and checked once per call."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Any

from forge_launcher.errors import UserError
from forge_launcher.mounts import normalize_mount_point, parse_mode

#: Path of the OilFS wrapper on MAST hosts.
OILFS_WRAPPER = "/packages/oil.oilfs/oilfs-wrapper"
DEFAULT_MOUNT_POINT = "/mnt/wsfuse"
DEFAULT_TIMEOUT = 120.0
DEFAULT_ROOT_MODE = 0o2775


@dataclass(frozen=True)
class OilfsSettings:
    """The resolved ``storage`` section of ``+storage=oilfs`` (conf/storage/oilfs.yaml documents each key)."""

    #: OilFS workspace URL, ``ws://HOST/NAME``.
    workspace: str
    #: Absolute mount point, with the parent's symlinks resolved.
    mount_point: str
    #: Storage root: the mount point or a directory below it.
    root: str
    #: Argv prefix of the mount command. The workspace and the mount point are appended.
    mount_command: list[str]
    #: Argv prefix of the unmount command, or ``None`` for ``umount``/``fusermount``.
    unmount_command: list[str] | None
    #: Path relative to the mount point that exists only when the workspace is mounted.
    marker: str | None
    #: Source that /proc/self/mountinfo must show for the mount, or ``None`` to accept any FUSE source.
    source: str | None
    #: Seconds the mount or unmount command may run.
    timeout: float
    #: Mode of the storage root when the plugin creates it.
    root_mode: int
    #: Whether ``forge umount`` detaches a busy mount instead of failing.
    lazy_unmount: bool

    @classmethod
    def from_storage(cls, storage: dict[str, Any]) -> OilfsSettings:
        """Read ``storage``, raising :class:`UserError` with the setting and the fix for invalid values."""
        workspace = storage.get("workspace")
        if not workspace:
            raise UserError(
                "storage.workspace is not set, and the OilFS workspace URL is required. "
                "Set it with storage.workspace=ws://HOST/NAME or the FORGE_OILFS_WORKSPACE environment variable."
            )
        if not isinstance(workspace, str):
            raise UserError(
                f"Invalid storage.workspace {workspace!r}: expected a URL string. "
                f"Set it with storage.workspace=ws://HOST/NAME or the FORGE_OILFS_WORKSPACE environment variable."
            )

        given_mount_point = os.path.abspath(os.path.expanduser(str(storage.get("mount_point") or DEFAULT_MOUNT_POINT)))
        mount_point = normalize_mount_point(given_mount_point)
        root = os.path.abspath(os.path.expanduser(str(storage.get("root") or mount_point)))
        if not any(_is_within(root, base) for base in (given_mount_point, mount_point)):
            raise UserError(
                f"storage.root {root!r} is not under storage.mount_point {mount_point!r}, so jobs would not write to OilFS. "
                f"Set storage.root to a directory below the mount point, such as {mount_point}/teamforge."
            )

        return cls(
            workspace=workspace,
            mount_point=mount_point,
            root=root,
            mount_command=_read_command(storage.get("mount_command"), "storage.mount_command") or default_mount_command(),
            unmount_command=_read_command(storage.get("unmount_command"), "storage.unmount_command"),
            marker=_read_marker(storage.get("marker")),
            source=str(storage["source"]) if storage.get("source") else None,
            timeout=_read_timeout(storage.get("timeout")),
            root_mode=parse_mode(storage["root_mode"], "storage.root_mode") if storage.get("root_mode") is not None else DEFAULT_ROOT_MODE,
            lazy_unmount=bool(storage.get("lazy_unmount", False)),
        )


def default_mount_command() -> list[str]:
    """Return the OilFS wrapper where it is installed, else ``oilfs`` (through ``sudo -n`` unless root)."""
    if os.path.exists(OILFS_WRAPPER):
        return [OILFS_WRAPPER]
    if os.geteuid() == 0:
        return ["oilfs"]
    # -n: fail with a message instead of prompting for a password.
    return ["sudo", "-n", "oilfs"]


def _is_within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def _read_command(value: object, setting: str) -> list[str] | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        # Hydra keeps a list override as text when an item contains '=' or a space.
        raise UserError(
            f"Invalid {setting} {value!r}: Hydra read it as a string, not a list, because an item contains a character "
            f"such as '=' or a space. Quote that item ({setting}=[PROGRAM,\"--opt=value\"]) "
            f"or give the whole command as one string ({setting}=\"PROGRAM --opt=value\")."
        )
    if isinstance(value, str):
        # Split like a shell would, but nothing runs through a shell.
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise UserError(f"Invalid {setting} {value!r}: {exc}. Give it as a list: {setting}=[PROGRAM,ARG,...].") from exc
    if isinstance(value, (list, tuple)) and all(isinstance(item, (str, int, float)) for item in value):
        return [str(item) for item in value]
    raise UserError(f"Invalid {setting} {value!r}: expected a list of strings. Give it as {setting}=[PROGRAM,ARG,...].")


def _read_marker(value: object) -> str | None:
    if value is None or value == "":
        return None
    marker = str(value)
    if os.path.isabs(marker) or ".." in marker.split("/"):
        raise UserError(
            f"Invalid storage.marker {marker!r}: it must be a path relative to the mount point, inside it, "
            f"such as 'teamforge/.oilfs_marker'. Set storage.marker=null to disable the check."
        )
    return marker


def _read_timeout(value: object) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        timeout = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        timeout = -1.0
    if isinstance(value, bool) or not timeout > 0:
        raise UserError(f"Invalid storage.timeout {value!r}: expected a positive number of seconds, such as storage.timeout=120.")
    return timeout
