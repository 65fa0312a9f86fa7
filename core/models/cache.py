"""The Hugging Face cache on the storage root, read without network access.

The layout is the one huggingface_hub writes under ``HF_HOME/hub``::

    models--ORG--NAME/
        blobs/<etag>                  file contents, named by git blob sha1 or LFS sha256
        snapshots/<commit>/<path>     relative symlinks into blobs/
        refs/<revision>               the 40-character commit, without a newline
        trees/<commit>.json           the repository's file listing at that commit

huggingface_hub 2.4 reads ``trees/<commit>.json`` in offline mode to tell a
complete snapshot from an interrupted one; the checks here use it the same way.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from forge_launcher.errors import UserError

#: Folder of the Hugging Face home (``HF_HOME``) under the storage root.
HF_HOME_DIR = "hf"
#: Folder under the storage root that ``forge model stage`` downloads into.
ARTIFACTS_DIR = "hf_artifacts"
DEFAULT_REVISION = "main"
#: ``format_version`` of huggingface_hub's ``trees/<commit>.json`` files that this module reads.
TREE_FORMAT_VERSION = 1
COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")

# The rules of huggingface_hub 2.4's validate_repo_id: an optional namespace
# and a name, each of 1 to 96 ASCII letters, digits, '_', '-' and '.', starting
# and ending with a letter, digit or '_'. huggingface_hub raises HFValidationError
# for any other id before it sends a request.
_MAX_REPO_ID_PART_LENGTH = 96
_REPO_ID_PART = rf"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{{0,{_MAX_REPO_ID_PART_LENGTH - 2}}}[A-Za-z0-9_])?"
_REPO_ID_PATTERN = re.compile(rf"(?:{_REPO_ID_PART}/)?{_REPO_ID_PART}")
# Characters that git forbids in branch and tag names (see git check-ref-format),
# besides the control characters and whitespace that validate_revision also rejects.
_REVISION_FORBIDDEN_CHARACTERS = set("~^:?*[\\")


def default_storage_root() -> Path:
    """Return the local storage root: ``$FORGE_STORAGE_ROOT``, else ``~/forge_storage``."""
    root = os.environ.get("FORGE_STORAGE_ROOT") or "~/forge_storage"
    return Path(os.path.abspath(os.path.expanduser(root)))


def hf_home_for(storage_root: Path | str) -> Path:
    """Return the ``HF_HOME`` that jobs on ``storage_root`` use: ``<root>/hf``."""
    return Path(storage_root) / HF_HOME_DIR


def hub_cache_of(hf_home: Path | str) -> Path:
    """Return the hub cache inside ``hf_home`` (huggingface_hub's default ``HF_HUB_CACHE``)."""
    return Path(hf_home) / "hub"


def validate_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it is a valid model repository id, else raise a :class:`UserError`."""
    if (
        not _REPO_ID_PATTERN.fullmatch(repo_id)
        or "--" in repo_id
        or ".." in repo_id
        or repo_id.endswith(".git")
    ):
        raise UserError(
            f"Invalid repository id {repo_id!r}: write it as ORG/NAME (for example "
            f"'sentence-transformers/all-MiniLM-L6-v2'). ORG and NAME each have 1 to {_MAX_REPO_ID_PART_LENGTH} "
            f"ASCII letters, digits, '-', '_' and '.', start and end with a letter, digit or '_', "
            f"and contain no '--' or '..'; NAME does not end with '.git'."
        )
    return repo_id


def validate_revision(revision: str) -> str:
    """Return ``revision`` if it can name a file under ``refs/``, else raise a :class:`UserError`."""
    parts = revision.split("/")
    has_invalid_character = any(
        character.isspace() or not character.isprintable() or character in _REVISION_FORBIDDEN_CHARACTERS
        for character in revision
    )
    if not revision or has_invalid_character or any(part in ("", ".", "..") for part in parts):
        raise UserError(
            f"Invalid revision {revision!r}: give a branch, tag or commit such as 'main', 'v1.0' or a "
            f"40-character commit hash, without whitespace, control characters or any of ~^:?*[\\."
        )
    return revision


def repo_folder(hub_cache: Path, repo_id: str) -> Path:
    """Return the cache folder of a model repository: ``models--ORG--NAME``."""
    return hub_cache / ("models--" + repo_id.replace("/", "--"))


def repo_id_of(folder_name: str) -> str | None:
    """Return the repository id of a cache folder name, or ``None`` for a folder that is not a model."""
    prefix = "models--"
    if not folder_name.startswith(prefix) or len(folder_name) == len(prefix):
        return None
    return folder_name[len(prefix) :].replace("--", "/")


def read_ref(folder: Path, revision: str) -> str | None:
    """Return the commit that ``refs/<revision>`` names, or ``None`` if the ref is missing or invalid."""
    try:
        commit = (folder / "refs" / revision).read_text()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return commit if COMMIT_PATTERN.match(commit) else None


def list_refs(folder: Path) -> dict[str, str]:
    """Return every valid ref of a cached repository: ``{revision: commit}``."""
    refs_dir = folder / "refs"
    refs: dict[str, str] = {}
    if not refs_dir.is_dir():
        return refs
    for path in sorted(refs_dir.rglob("*")):
        if path.is_file():
            revision = path.relative_to(refs_dir).as_posix()
            commit = read_ref(folder, revision)
            if commit is not None:
                refs[revision] = commit
    return refs


@dataclass(frozen=True)
class TreeEntry:
    """One file of a repository's tree listing at a commit."""

    path: str
    size: int
    #: The file's ETag as the Hub sends it: the LFS sha256, else the git blob sha1.
    etag: str


def tree_listing_path(folder: Path, commit: str) -> Path:
    """Return the tree listing file of ``commit`` in a cache repository or a local dir's ``.cache/huggingface``."""
    return folder / "trees" / f"{commit}.json"


def read_tree_listing(path: Path) -> dict[str, TreeEntry] | None:
    """Read a ``trees/<commit>.json`` file; return ``None`` if it is missing or of another format."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UserError(f"Cannot read the tree listing {str(path)!r}: {exc}. Delete the file and stage the model again.") from exc
    if not isinstance(data, dict) or data.get("format_version") != TREE_FORMAT_VERSION or not isinstance(data.get("files"), dict):
        return None
    entries = {}
    for file_path, info in data["files"].items():
        etag = info.get("lfs_sha256") or info.get("blob_id")
        entries[file_path] = TreeEntry(path=file_path, size=int(info["size"]), etag=str(etag))
    return entries


@dataclass
class SnapshotCheck:
    """The result of checking a cached snapshot against its tree listing, when one is kept."""

    repo_id: str
    revision: str
    commit: str
    snapshot: Path
    #: Files found with the expected size.
    files: int = 0
    #: Bytes of the files found.
    size: int = 0
    #: The snapshot was compared with a tree listing; without one, missing files go unnoticed.
    has_tree_listing: bool = False
    #: One line per missing or wrong file, such as ``missing: vocab.txt (231508 bytes)``.
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        # A snapshot symlink whose blob is gone lands here too.
        return None


def snapshot_files(snapshot: Path) -> list[str]:
    """Return the repository paths of every entry in a snapshot folder, dangling links included."""
    paths = []
    for directory, _dirs, files in os.walk(snapshot):
        for name in files:
            paths.append((Path(directory) / name).relative_to(snapshot).as_posix())
    return sorted(paths)


def check_snapshot(hub_cache: Path, repo_id: str, revision: str = DEFAULT_REVISION) -> SnapshotCheck | None:
    """Check the cached snapshot of ``repo_id`` at ``revision``; ``None`` if it is not cached at all.

    Only file names and sizes are read, never file contents.
    """
    folder = repo_folder(hub_cache, repo_id)
    commit = revision if COMMIT_PATTERN.match(revision) else read_ref(folder, revision)
    if commit is None:
        return None
    snapshot = folder / "snapshots" / commit
    if not snapshot.is_dir():
        return None

    check = SnapshotCheck(repo_id=repo_id, revision=revision, commit=commit, snapshot=snapshot)
    listing = read_tree_listing(tree_listing_path(folder, commit))
    if listing is None:
        expected: dict[str, int | None] = {path: None for path in snapshot_files(snapshot)}
    else:
        check.has_tree_listing = True
        expected = {path: entry.size for path, entry in listing.items()}

    for path, expected_size in sorted(expected.items()):
        found = _file_size(snapshot / path)
        if found is None:
            suffix = f" ({expected_size} bytes)" if expected_size is not None else ""
            check.problems.append(f"missing: {path}{suffix}")
        elif expected_size is not None and found != expected_size:
            check.problems.append(f"wrong size: {path} (expected {expected_size} bytes, found {found})")
        else:
            check.files += 1
            check.size += found
    return check


def format_size(size: int) -> str:
    """Format a byte count with decimal units, as ``90.9 MB``."""
    units = ("B", "kB", "MB", "GB", "TB")
    value = float(size)
    index = 0
    while value >= 1000 and index < len(units) - 1:
        value /= 1000
        index += 1
    return f"{size} B" if index == 0 else f"{value:.1f} {units[index]}"
