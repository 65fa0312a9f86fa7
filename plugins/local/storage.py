"""The ``local`` storage: a plain directory on this machine (``storage.root``).

Besides ``root``, the section may set ``root_mode``, the octal mode given to
the root when this plugin creates it (default ``0755``). It may also set
``marker``, a path that must exist, relative to the root unless absolute: for
example a file on a network share that proves the share is mounted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from forge_launcher import hookimpl
from forge_launcher.errors import UserError
from forge_launcher.mounts import check_marker, parse_mode, prepare_root
from forge_launcher.plugins import StorageSpec

log = logging.getLogger(__name__)

DEFAULT_ROOT_MODE = 0o755


@hookimpl
def forge_launcher_storages() -> list[StorageSpec]:
    return [StorageSpec("local", "a directory on this machine (storage.root)")]


@hookimpl
def forge_launcher_mount(storage: dict[str, Any]) -> str:
    root = storage.get("root")
    if not root:
        raise UserError("storage.root is not set. Give the storage directory with storage.root=/path.")
    mode = parse_mode(storage["root_mode"], "storage.root_mode") if storage.get("root_mode") is not None else DEFAULT_ROOT_MODE

    path = prepare_root(str(Path(str(root)).expanduser().absolute()), mode)
    check_marker(
        storage.get("marker"),
        path,
        consequence=f"the local storage at {str(path)!r} is not ready",
        fix="Mount or create what storage.marker points to, or set storage.marker=null to disable the check.",
    )
    log.debug("local storage at %s", path)
    return str(path)


@hookimpl
def forge_launcher_unmount(storage: dict[str, Any]) -> bool:
    # A plain directory has nothing to release.
    return False
