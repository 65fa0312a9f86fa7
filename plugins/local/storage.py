"""The ``local`` storage: a plain directory on this machine (``storage.root``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from forge_launcher import hookimpl
from forge_launcher.errors import UserError
from forge_launcher.plugins import StorageSpec

log = logging.getLogger(__name__)


@hookimpl
def forge_launcher_storages() -> list[StorageSpec]:
    return [StorageSpec("local", "a directory on this machine (storage.root)")]


@hookimpl
def forge_launcher_mount(storage: dict[str, Any]) -> str:
    root = storage.get("root")
    if not root:
        raise UserError("storage.root is not set. Give the storage directory with storage.root=/path.")
    path = Path(str(root)).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create storage.root {str(path)!r}: {exc.strerror}. Choose a writable directory with storage.root=/path.") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"storage.root {str(path)!r} is not writable. Choose a writable directory with storage.root=/path.")
    log.debug("local storage at %s", path)
    return str(path)


@hookimpl
def forge_launcher_unmount(storage: dict[str, Any]) -> bool:
    # A plain directory has nothing to release.
    return False
