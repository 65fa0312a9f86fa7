"""Preparing a download folder and the cache before ``forge model stage`` downloads into them again.

After a stage, each file of the download folder is usually a hard link to its
blob in the cache, so damage to either is damage to both. huggingface_hub 2.4
does not expect that:

* It keeps a file whose download metadata names the requested commit without
  checking its size, so a truncated file stays truncated.
* It repairs other files by copying the cached blob over the file, which fails
  with ``shutil.SameFileError`` when the two are hard links. When the link
  points at the blob of another commit, the copy overwrites that blob.

:func:`remove_damaged_files` removes what huggingface_hub would keep or
overwrite wrongly, so the download that follows fetches those files again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from forge_launcher.models.cache import TreeEntry
from forge_launcher.models.hydrate import ETAG_PATTERN, METADATA_DIR, _read_metadata, _walk_files

log = logging.getLogger(__name__)


@dataclass
class RepairResult:
    """The files and blobs that :func:`remove_damaged_files` removed."""

    #: Files of the download folder removed because they were damaged.
    damaged: list[str]
    #: Blobs of the cache removed because they had the wrong size or shared a damaged file.
    blobs: list[Path]
    #: Hard links removed from the download folder so that the download cannot write through them.
    unlinked: list[str]


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _remove_wrong_size_blobs(blobs_dir: Path, listing: dict[str, TreeEntry], result: RepairResult) -> None:
    # huggingface_hub copies a cached blob into the download folder without checking its size.
    for entry in listing.values():
        if not ETAG_PATTERN.match(entry.etag):
            continue
        blob = blobs_dir / entry.etag
        try:
            size = blob.stat().st_size
        except FileNotFoundError:
            continue
        if size != entry.size:
            log.warning("removing the blob %s of %s: %d bytes instead of %d", blob, entry.path, size, entry.size)
            _remove(blob)
            result.blobs.append(blob)


def _remove_linked_blobs(source: Path, blobs_dir: Path, etags: set[str], result: RepairResult) -> None:
    for etag in sorted(etags):
        blob = blobs_dir / etag
        if ETAG_PATTERN.match(etag) and blob.is_file() and os.path.samefile(source, blob):
            log.warning("removing the blob %s, a hard link to the damaged file %s", blob, source)
            _remove(blob)
            result.blobs.append(blob)


def remove_damaged_files(local_dir: Path, repo_folder: Path, commit: str, listing: dict[str, TreeEntry]) -> RepairResult:
    """Remove the files and blobs that would keep a download of ``commit`` into ``local_dir`` from repairing it.

    ``listing`` is the tree listing of ``commit`` and ``repo_folder`` the
    cache folder of the repository. Removed are:

    * cache blobs of ``commit`` whose size differs from the listing;
    * files whose download metadata names the listed ETag but whose size differs;
    * hard-linked files whose metadata is stale or missing, with the blobs
      they are linked to, because a change to one changed both;
    * hard links to files of another version, only from the download folder.
    """
    result = RepairResult(damaged=[], blobs=[], unlinked=[])
    blobs_dir = repo_folder / "blobs"
    # Files come first, while the link counts still show which files share a blob.
    for path, source in sorted(_walk_files(local_dir).items()):
        listed = listing.get(path)
        if listed is None or source.is_symlink():
            continue
        stat = source.stat()
        metadata = _read_metadata(local_dir, path, source)
        is_linked = stat.st_nlink > 1
        claims_listed_etag = isinstance(metadata, tuple) and metadata[1] == listed.etag
        if claims_listed_etag:
            is_damaged = stat.st_size != listed.size
        elif not isinstance(metadata, tuple):
            # NOTE: a hard-linked file without valid metadata may be intact,
            # but its contents cannot be trusted without hashing, so it is
            # downloaded again.
            is_damaged = is_linked or stat.st_size != listed.size
        else:
            # The metadata names another version of the file, whose size may differ.
            is_damaged = False

        if is_damaged:
            if is_linked:
                etags = {listed.etag} | ({metadata[1]} if isinstance(metadata, tuple) else set())
                _remove_linked_blobs(source, blobs_dir, etags, result)
            log.warning("removing the damaged file %s (%d bytes, %d expected)", source, stat.st_size, listed.size)
            _remove(source)
            _remove(local_dir / METADATA_DIR / "download" / f"{path}.metadata")
            result.damaged.append(path)
        elif is_linked and not claims_listed_etag:
            # huggingface_hub would copy the new version over this file and so
            # into the blob of the old version that shares its inode.
            log.info("removing the hard link %s to another version before the download", source)
            _remove(source)
            result.unlinked.append(path)

    _remove_wrong_size_blobs(blobs_dir, listing, result)
    return result
