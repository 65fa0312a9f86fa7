"""Building the Hugging Face cache from a directory that huggingface_hub downloaded.

A local-dir download (``hf download --local-dir DIR``, ``snapshot_download(local_dir=DIR)``)
leaves its metadata in ``DIR/.cache/huggingface/``:

* ``download/<path>.metadata``: three lines, the commit, the file's ETag and the
  Unix time of the download. A file modified after that time has stale metadata.
* ``trees/<commit>.json``: the repository's file listing at that commit
  (written by huggingface_hub 2.4; older versions leave none).

Hydrating reads only that metadata and the directory listing, never the model
files: blobs are hard links to the downloaded files where the filesystem
allows, copies otherwise. Hashing happens only for files without metadata, and
only when the caller names the commit.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shlex
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from forge_launcher.errors import ForgeLauncherError, UserError
from forge_launcher.models.cache import (
    COMMIT_PATTERN,
    DEFAULT_REVISION,
    TreeEntry,
    read_tree_listing,
    repo_folder,
    tree_listing_path,
    validate_repo_id,
    validate_revision,
)

log = logging.getLogger(__name__)

#: Metadata folder of a local-dir download, relative to the directory. Never part of a snapshot.
METADATA_DIR = Path(".cache") / "huggingface"
# NOTE: the Hub stores a file in LFS when the repository's .gitattributes
# matches it or when it is larger than about 10 MB. Without a tree listing, files of
# this size or more are guessed to be LFS files. A wrong guess only changes the
# blob's name in the cache, which offline loading never reads.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
# Folders that never belong to a snapshot, relative to the downloaded directory.
_SKIPPED_DIRS = {METADATA_DIR.as_posix(), ".git"}
# Errors from os.link that mean "this filesystem cannot hard-link these two paths".
_NO_HARD_LINK_ERRNOS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}
#: A blob name: a git blob sha1 or an LFS sha256. Anything else could name a path outside blobs/.
ETAG_PATTERN = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_HASH_CHUNK = 8 * 1024 * 1024
_MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class LocalFile:
    """One file of the downloaded directory and the blob it becomes."""

    path: str
    source: Path
    size: int
    etag: str


@dataclass
class HydrateResult:
    """The summary of one :func:`hydrate` run: the snapshot and how its blobs were made."""

    repo_id: str
    revision: str
    commit: str
    snapshot: Path
    files: int
    size: int
    #: Blobs created as hard links to the downloaded files.
    linked: int = 0
    #: Blobs created as copies, because hard links failed (see ``link_error``).
    copied: int = 0
    #: Blobs that were already in the cache.
    existing: int = 0
    #: Why the first hard link failed, when files were copied.
    link_error: str | None = None
    #: The repository's tree listing was found and kept, so missing files are detectable.
    has_tree_listing: bool = False
    #: Files whose ETag was computed from their contents (``--commit``).
    hashed: int = 0


def git_blob_sha1(path: Path) -> str:
    """Return the git blob id of a file: sha1 of ``blob <size>\\0`` followed by the contents."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """Return the sha256 of a file's contents, the ETag the Hub gives LFS files."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _walk_files(local_dir: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory, dirs, files in os.walk(local_dir):
        relative = Path(directory).relative_to(local_dir).as_posix()
        dirs[:] = sorted(d for d in dirs if (d if relative == "." else f"{relative}/{d}") not in _SKIPPED_DIRS)
        for name in files:
            path = Path(directory) / name
            found[path.relative_to(local_dir).as_posix()] = path
    return found


def _is_safe_repo_path(path: str) -> bool:
    parts = path.split("/")
    return not path.startswith("/") and all(part not in ("", ".", "..") for part in parts)


def _read_metadata(local_dir: Path, path: str, source: Path) -> tuple[str, str] | str:
    """Return ``(commit, etag)`` from a file's download metadata, or why there is none."""
    metadata = local_dir / METADATA_DIR / "download" / f"{path}.metadata"
    try:
        lines = metadata.read_text().splitlines()
        commit, etag, timestamp = lines[0].strip(), lines[1].strip(), float(lines[2].strip())
    except FileNotFoundError:
        return "no download metadata"
    except (OSError, ValueError, IndexError):
        return f"unreadable download metadata {str(metadata)!r}"
    # huggingface_hub treats metadata as stale when the file changed after the
    # download, allowing 1 s of timestamp imprecision; so does this check.
    if source.stat().st_mtime - 1 > timestamp:
        return "modified after download"
    if not COMMIT_PATTERN.match(commit) or not ETAG_PATTERN.match(etag):
        return f"invalid download metadata {str(metadata)!r}"
    return commit, etag


def _choose_commit(local_dir: Path, metadata: dict[str, tuple[str, str] | str]) -> str:
    commits: dict[str, int] = {}
    for value in metadata.values():
        if isinstance(value, tuple):
            commits[value[0]] = commits.get(value[0], 0) + 1
    if not commits:
        raise UserError(
            f"No file in {str(local_dir)!r} has valid download metadata, so its commit is unknown. "
            f"Download it again with 'forge model stage', or pass --commit COMMIT to compute the ETags from the files."
        )
    if len(commits) > 1:
        counts = ", ".join(f"{commit} ({count} files)" for commit, count in sorted(commits.items()))
        raise UserError(
            f"Files in {str(local_dir)!r} come from different commits: {counts}. Download one revision again "
            f"with 'forge model stage', or pass --commit COMMIT to hydrate one commit."
        )
    return next(iter(commits))


def _compute_etag(source: Path, size: int, listed: TreeEntry | None) -> str:
    is_lfs = COMMIT_PATTERN.match(listed.etag) is None if listed is not None else size >= LFS_SIZE_THRESHOLD
    return file_sha256(source) if is_lfs else git_blob_sha1(source)


def _collect(
    local_dir: Path, commit: str, metadata: dict[str, tuple[str, str] | str], on_disk: dict[str, Path],
    listing: dict[str, TreeEntry] | None, hash_missing: bool,
) -> tuple[list[LocalFile], list[str], int]:
    expected_paths = sorted(listing) if listing is not None else sorted(on_disk)
    if listing is not None:
        for extra in sorted(set(on_disk) - set(listing)):
            log.warning("%s is not in the tree listing of commit %s and is left out of the snapshot", extra, commit)

    files: list[LocalFile] = []
    problems: list[str] = []
    hashed = 0
    for path in expected_paths:
        source = on_disk.get(path)
        listed = listing.get(path) if listing is not None else None
        if listed is not None and not (_is_safe_repo_path(path) and ETAG_PATTERN.match(listed.etag)):
            problems.append(f"invalid tree listing entry: {path!r}")
            continue
        if source is None:
            problems.append(f"missing: {path}" + (f" ({listed.size} bytes)" if listed is not None else ""))
            continue
        size = source.stat().st_size
        if listed is not None and size != listed.size:
            problems.append(f"wrong size: {path} (expected {listed.size} bytes, found {size})")
            continue

        value = metadata.get(path, "no download metadata")
        if isinstance(value, tuple) and value[0] == commit:
            files.append(LocalFile(path, source, size, value[1]))
        elif hash_missing:
            etag = _compute_etag(source, size, listed)
            hashed += 1
            if listed is not None and etag != listed.etag:
                problems.append(f"wrong contents: {path} (ETag {etag}, tree listing has {listed.etag})")
                continue
            files.append(LocalFile(path, source, size, etag))
        else:
            reason = f"downloaded at commit {value[0]}" if isinstance(value, tuple) else value
            problems.append(f"{reason}: {path}")
    return files, problems, hashed


def _raise_problems(
    local_dir: Path, repo_id: str, commit: str, problems: list[str], hash_missing: bool, stage_command: str | None,
) -> None:
    listed_problems = problems[:_MAX_LISTED_PROBLEMS]
    more = f"\n  ... and {len(problems) - len(listed_problems)} more" if len(problems) > len(listed_problems) else ""
    if stage_command is None:
        stage_command = shlex.join(["forge", "model", "stage", repo_id, "--local-dir", str(local_dir)])
    # 'forge model stage' removes files of the wrong size and downloads them again.
    fix = f"Download the missing and damaged files again with: {stage_command}"
    if not hash_missing:
        fix += ", or pass --commit COMMIT to compute the ETags of files without metadata"
    raise UserError(
        f"{str(local_dir)!r} is not a complete snapshot of {repo_id} at commit {commit}; "
        f"{len(problems)} file(s) cannot be hydrated:\n  " + "\n  ".join(listed_problems) + more + "\n" + fix + "."
    )


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class _BlobWriter:
    """Places blobs by hard link, falling back to copies once links fail."""

    def __init__(self, result: HydrateResult) -> None:
        self.result = result

    def place(self, source: Path, target: Path, size: int) -> None:
        if target.exists():
            if os.path.samefile(source, target) or target.stat().st_size == size:
                # Blob names are content hashes, so a blob of the right size is kept.
                self.result.existing += 1
                return
            target.unlink()

        target.parent.mkdir(parents=True, exist_ok=True)
        if self.result.link_error is None:
            try:
                os.link(source, target)
                self.result.linked += 1
                return
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINK_ERRNOS:
                    raise ForgeLauncherError(f"Cannot create the blob {str(target)!r}: {exc.strerror}.") from exc
                self.result.link_error = exc.strerror or str(exc)
                log.warning("cannot hard-link %s to %s (%s); copying the files instead", source, target, self.result.link_error)

        # The copy goes to a temporary name first, so an interrupted copy never
        # leaves a blob that looks complete.
        partial = target.with_name(target.name + ".incomplete")
        shutil.copyfile(source, partial)
        os.replace(partial, target)
        self.result.copied += 1


def _link_snapshot_entry(entry: Path, blob: Path) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, entry.parent)
    if entry.is_symlink() and os.readlink(entry) == target:
        return
    temporary = entry.with_name(f"{entry.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.symlink(target, temporary)
    except OSError:
        # NOTE: like huggingface_hub on filesystems without symlinks, the
        # snapshot then contains the file itself (hard link or copy of the blob).
        log.warning("failed to create a symlink in %s, so the snapshot contains copies of the blobs", entry.parent)
        try:
            os.link(blob, temporary)
        except OSError:
            shutil.copyfile(blob, temporary)
    os.replace(temporary, entry)


def hydrate(
    local_dir: Path | str,
    repo_id: str,
    hub_cache: Path,
    revision: str = DEFAULT_REVISION,
    commit: str | None = None,
    hash_missing: bool = False,
    stage_command: str | None = None,
) -> HydrateResult:
    """Build the cache entry of ``repo_id`` in ``hub_cache`` from a downloaded directory.

    The commit and each file's ETag come from the directory's download
    metadata, or ``commit`` names the commit. With ``hash_missing``, files
    without valid metadata for that commit are hashed instead (git blob sha1,
    or sha256 for LFS files), which needs ``commit``.

    ``refs/<revision>`` is written last, so an interrupted run never leaves a
    ref to a partial snapshot. A ``revision`` that is itself a commit hash gets
    no ref, as in huggingface_hub. ``stage_command`` is the ``forge model stage``
    command that the error for an incomplete directory gives, by default one
    with ``--local-dir`` only.
    """
    validate_repo_id(repo_id)
    validate_revision(revision)
    local_dir = Path(os.path.abspath(os.path.expanduser(str(local_dir))))
    if not local_dir.is_dir():
        found = "is not a directory" if os.path.lexists(local_dir) else "not found"
        raise UserError(
            f"Local directory {str(local_dir)!r} {found}. Give the directory that 'forge model stage' "
            f"or 'hf download --local-dir' downloaded the model into."
        )
    if commit is not None and not COMMIT_PATTERN.match(commit):
        raise UserError(f"Invalid commit {commit!r}: give the full 40-character commit hash of the revision the files come from.")
    if COMMIT_PATTERN.match(revision) and commit is not None and revision != commit:
        raise UserError(f"Revision {revision!r} is a commit hash but --commit is {commit!r}. Give one of the two.")

    metadata_dir = local_dir / METADATA_DIR / "download"
    if hash_missing and commit is None:
        raise UserError("Hashing files without download metadata needs the commit they come from: pass --commit COMMIT.")
    if not hash_missing and not metadata_dir.is_dir():
        raise UserError(
            f"No huggingface_hub download metadata in {str(metadata_dir)!r}, so the commit and the ETags of "
            f"the files in {str(local_dir)!r} are unknown. Download the model with 'forge model stage {repo_id}' "
            f"(or 'hf download {repo_id} --local-dir {local_dir}'), or pass --commit COMMIT to compute the ETags "
            f"from the files."
        )

    on_disk = _walk_files(local_dir)
    metadata = {path: _read_metadata(local_dir, path, source) for path, source in on_disk.items()}
    if commit is None:
        commit = revision if COMMIT_PATTERN.match(revision) else _choose_commit(local_dir, metadata)
    listing_file = tree_listing_path(local_dir / METADATA_DIR, commit)
    listing = read_tree_listing(listing_file)
    files, problems, hashed = _collect(local_dir, commit, metadata, on_disk, listing, hash_missing)
    if problems:
        _raise_problems(local_dir, repo_id, commit, problems, hash_missing, stage_command)
    if not files:
        raise UserError(f"{str(local_dir)!r} contains no files to hydrate. Download the model into it with 'forge model stage {repo_id}'.")

    folder = repo_folder(hub_cache, repo_id)
    snapshot = folder / "snapshots" / commit
    result = HydrateResult(
        repo_id=repo_id, revision=revision, commit=commit, snapshot=snapshot,
        files=len(files), size=sum(f.size for f in files), has_tree_listing=listing is not None, hashed=hashed,
    )
    writer = _BlobWriter(result)
    for local_file in files:
        blob = folder / "blobs" / local_file.etag
        writer.place(local_file.source, blob, local_file.size)
        _link_snapshot_entry(snapshot / local_file.path, blob)

    if listing is not None:
        _write_atomic(tree_listing_path(folder, commit), listing_file.read_bytes())
    if revision != commit:
        _write_atomic(folder / "refs" / revision, commit.encode())
    log.info("hydrated %s at %s (%s): %d linked, %d copied, %d already cached", repo_id, revision, commit, result.linked, result.copied, result.existing)
    return result
