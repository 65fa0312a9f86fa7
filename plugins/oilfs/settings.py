"""The ``oilfs`` storage section, read and checked once per call."""

from __future__ import annotations

import os
import shlex
import unicodedata
from dataclasses import dataclass
from typing import Any

from forge_launcher.errors import ConfigError
from forge_launcher.mounts import normalize_mount_point, parse_mode, read_mount_point

#: Path of the OilFS wrapper on MAST hosts.
OILFS_WRAPPER = "/packages/oil.oilfs/oilfs-wrapper"
DEFAULT_MOUNT_POINT = "/mnt/wsfuse"
DEFAULT_TIMEOUT = 120.0
DEFAULT_ROOT_MODE = 0o2775


@dataclass(frozen=True)
class OilfsSettings:
    """The resolved ``storage`` section of ``+storage=oilfs`` (conf/storage/oilfs.yaml documents each key)."""

    #: OilFS workspace URL, ``ws://HOST/NAME``, or ``None`` when the settings were read for unmounting.
    workspace: str | None
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
    def from_storage(cls, storage: dict[str, Any], require_workspace: bool = True) -> OilfsSettings:
        """Read ``storage``, raising :class:`ConfigError` with the setting and the fix for invalid values.

        Only mounting uses the workspace, so with ``require_workspace=False``
        (for unmounting) it is neither required nor checked, and
        :attr:`workspace` is ``None``.
        """
        workspace = _read_workspace(storage.get("workspace")) if require_workspace else None

        given_mount_point = read_mount_point(storage.get("mount_point", DEFAULT_MOUNT_POINT), "storage.mount_point", DEFAULT_MOUNT_POINT)
        mount_point = normalize_mount_point(given_mount_point)
        root = _read_root(storage.get("root"), mount_point)
        if not any(_is_within(root, base) for base in (given_mount_point, mount_point)):
            raise ConfigError(
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


def _read_workspace(value: object) -> str:
    if value is None or value == "":
        raise ConfigError(
            "storage.workspace is not set or empty, but mounting OilFS requires the workspace URL. "
            "Set it with storage.workspace=ws://HOST/NAME or the FORGE_OILFS_WORKSPACE environment variable."
        )
    # The URL is passed to the mount command as an argument, so a leading '-'
    # would make it an option. Other forms are left to OilFS to judge.
    if not isinstance(value, str) or not value.strip() or value.startswith("-") or any(_is_control(c) for c in value):
        raise ConfigError(
            f"Invalid storage.workspace {value!r}: expected a workspace URL such as ws://HOST/NAME. "
            f"Set it with storage.workspace=ws://HOST/NAME or the FORGE_OILFS_WORKSPACE environment variable."
        )
    return value


def _is_control(character: str) -> bool:
    return unicodedata.category(character) == "Cc"


def _read_root(value: object, mount_point: str) -> str:
    if value is None or value == "":
        return mount_point
    root = os.path.expanduser(str(value))
    if not os.path.isabs(root):
        raise ConfigError(
            f"Invalid storage.root {str(value)!r}: it must be an absolute path below storage.mount_point, "
            f"such as {mount_point}/teamforge."
        )
    return os.path.abspath(root)


def _is_within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def _read_command(value: object, setting: str) -> list[str] | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        # Hydra keeps a list override as text when an item contains '=' or a space.
        raise ConfigError(
            f"Invalid {setting} {value!r}: Hydra read it as a string, not a list, because an item contains a character "
            f"such as '=' or a space. Quote that item ({setting}=[PROGRAM,\"--opt=value\"]) "
            f"or give the whole command as one string ({setting}=\"PROGRAM --opt=value\")."
        )
    if isinstance(value, str):
        # Split like a shell would, but nothing runs through a shell.
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"Invalid {setting} {value!r}: {exc}. Give it as a list: {setting}=[PROGRAM,ARG,...].") from exc
    if isinstance(value, (list, tuple)) and all(isinstance(item, (str, int, float)) for item in value):
        return [str(item) for item in value]
    raise ConfigError(f"Invalid {setting} {value!r}: expected a list of strings. Give it as {setting}=[PROGRAM,ARG,...].")


def _read_marker(value: object) -> str | None:
    if value is None or value == "":
        return None
    marker = str(value)
    if os.path.isabs(marker) or ".." in marker.split("/"):
        raise ConfigError(
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
        raise ConfigError(f"Invalid storage.timeout {value!r}: expected a positive number of seconds, such as storage.timeout=120.")
    return timeout
