"""Checks of the directories that ``forge model`` reads and writes, done before any download or write.

Each check takes ``name``, what the directory is to the user (``storage
root``), and ``option``, the command-line option that changes it
(``--storage-root``), so that its message names what to change.
"""

from __future__ import annotations

import os
from pathlib import Path

from forge_launcher.errors import UserError


def _nearest_existing(path: Path) -> Path:
    """Return ``path`` or its closest ancestor that exists (a dangling symlink counts as existing)."""
    existing = path
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    return existing


def _write_failure(directory: Path) -> str | None:
    """Return why this process cannot create entries in ``directory``, or ``None`` if it can."""
    effective_ids = os.access in os.supports_effective_ids
    if os.access(directory, os.W_OK | os.X_OK, effective_ids=effective_ids):
        return None
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "is on a read-only file system" if read_only else "is not writable by this user"


def require_writable_dir(path: Path, name: str, option: str) -> None:
    """Raise a :class:`UserError` unless ``path`` is a directory, or can be created as one, that this process can write.

    Nothing is created. The check uses ``os.access``, so it follows the
    permission bits, read-only mounts and immutable directories, but a
    filesystem that decides on the server (NFS with root squashing, for
    example) can still reject the writes later.
    """
    existing = _nearest_existing(path)
    if not existing.is_dir():
        found = "it is a file" if existing == path else f"{str(existing)!r} is a file"
        raise UserError(
            f"The {name} {str(path)!r} cannot be a directory: {found}. "
            f"Give a directory with {option}, or move the file away."
        )
    reason = _write_failure(existing)
    if reason is not None:
        blocker = "it" if existing == path else f"{str(existing)!r}"
        raise UserError(
            f"Cannot write to the {name} {str(path)!r}: {blocker} {reason}. "
            f"Give a writable directory with {option}, or fix the permissions."
        )


def require_existing_dir(path: Path, name: str, option: str) -> None:
    """Raise a :class:`UserError` unless ``path`` is an existing directory."""
    if path.is_dir():
        return
    if os.path.lexists(path):
        raise UserError(f"The {name} {str(path)!r} is not a directory. Give a directory with {option}.")
    raise UserError(f"The {name} {str(path)!r} does not exist. Give an existing directory with {option}.")
