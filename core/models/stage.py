"""Downloading a model from the Hub onto the storage root, then hydrating the cache from it."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from forge_launcher.errors import ForgeLauncherError, UserError
from forge_launcher.models.cache import (
    ARTIFACTS_DIR,
    DEFAULT_REVISION,
    TreeEntry,
    read_tree_listing,
    repo_folder,
    tree_listing_path,
    validate_repo_id,
    validate_revision,
)
from forge_launcher.models.hydrate import METADATA_DIR, HydrateResult, hydrate
from forge_launcher.models.repair import remove_damaged_files

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    """The download folder of one :func:`stage` run and the hydrate result."""

    local_dir: Path
    hydrated: HydrateResult
    #: Files found damaged (wrong size, or changed after their download) and downloaded again.
    repaired: list[str] = field(default_factory=list)


def default_local_dir(storage_root: Path, repo_id: str) -> Path:
    """Return the download folder of ``repo_id``: ``<root>/hf_artifacts/ORG/NAME``."""
    return storage_root / ARTIFACTS_DIR / repo_id


def _transport_errors() -> tuple[type[BaseException], ...]:
    # huggingface_hub 2.x sends requests with httpx2, 1.x with httpx and 0.x
    # with requests; a refused connection surfaces as that library's error.
    errors: list[type[BaseException]] = []
    for module_name, attribute in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        try:
            errors.append(getattr(importlib.import_module(module_name), attribute))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _explain_hub_error(exc: BaseException, repo_id: str, revision: str) -> ForgeLauncherError:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = _hub_endpoint()
    if isinstance(exc, GatedRepoError):
        return UserError(
            f"Repository {repo_id!r} on {endpoint} is gated: accept its terms on the Hub, then log in with "
            f"'hf auth login' or set HF_TOKEN, and run the command again."
        )
    if isinstance(exc, RepositoryNotFoundError):
        return UserError(
            f"Repository {repo_id!r} not found on {endpoint}. Check the id (ORG/NAME, case-sensitive); "
            f"for a private repository, log in with 'hf auth login' or set HF_TOKEN."
        )
    if isinstance(exc, RevisionNotFoundError):
        return UserError(f"Revision {revision!r} not found in repository {repo_id!r} on {endpoint}. Give an existing branch, tag or commit with --revision.")
    if isinstance(exc, OfflineModeIsEnabled):
        return UserError(
            "HF_HUB_OFFLINE is set in this shell, so huggingface_hub does not download. "
            "Run 'forge model stage' with HF_HUB_OFFLINE unset, on a machine that reaches the Hub."
        )
    if isinstance(exc, HfHubHTTPError):
        return ForgeLauncherError(f"The Hub at {endpoint} failed while staging {repo_id!r}: {exc}".replace("\n", " "))
    return ForgeLauncherError(
        f"Cannot reach the Hub at {endpoint} to stage {repo_id!r}: {exc}. Check the network, or HF_ENDPOINT if you use a mirror."
    )


def _tree_listing(api, local_dir: Path, folder: Path, repo_id: str, commit: str) -> dict[str, TreeEntry] | None:
    """Return the tree listing of ``commit``: the one kept in ``local_dir`` or the cache, else the Hub's.

    Returns ``None`` when neither ``local_dir`` nor the cache folder exists,
    because there is nothing to repair then and the download fetches the
    listing itself.
    """
    for path in (tree_listing_path(local_dir / METADATA_DIR, commit), tree_listing_path(folder, commit)):
        listing = read_tree_listing(path)
        if listing is not None:
            return listing
    if not local_dir.is_dir() and not folder.is_dir():
        return None

    from huggingface_hub import RepoFile

    listing = {}
    for item in api.list_repo_tree(repo_id, recursive=True, revision=commit, repo_type="model"):
        if isinstance(item, RepoFile):
            etag = item.lfs.sha256 if item.lfs is not None else item.blob_id
            listing[item.path] = TreeEntry(path=item.path, size=item.size, etag=etag)
    return listing


def stage(
    repo_id: str, hub_cache: Path, local_dir: Path, revision: str = DEFAULT_REVISION, stage_command: str | None = None,
) -> StageResult:
    """Download ``repo_id`` at ``revision`` into ``local_dir`` and hydrate ``hub_cache`` from it.

    The revision is resolved to its commit once, and every file is downloaded
    at that commit, so a branch that moves during the download cannot mix two
    commits. Files of ``local_dir`` and blobs of the cache that a download
    would not repair are removed first (see :mod:`forge_launcher.models.repair`),
    so they are downloaded again. huggingface_hub shows its progress bars
    unless ``HF_HUB_DISABLE_PROGRESS_BARS`` is set. ``stage_command`` is the
    command that error messages give for downloading again.
    """
    validate_repo_id(repo_id)
    validate_revision(revision)
    local_dir = Path(os.path.abspath(os.path.expanduser(str(local_dir))))
    if local_dir.exists() and not local_dir.is_dir():
        raise UserError(f"--local-dir {str(local_dir)!r} is a file. Give a directory.")

    # huggingface_hub takes about 0.3 s to import, so only commands that use it pay for it.
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    hub_errors = (HfHubHTTPError, OfflineModeIsEnabled, *_transport_errors())
    api = HfApi()
    try:
        info = api.repo_info(repo_id, revision=revision, repo_type="model")
    except hub_errors as exc:
        raise _explain_hub_error(exc, repo_id, revision) from exc
    commit = info.sha
    if not commit:
        raise ForgeLauncherError(f"The Hub at {_hub_endpoint()} returned no commit for {repo_id!r} at {revision!r}.")
    log.info("%s at %s resolves to commit %s", repo_id, revision, commit)

    folder = repo_folder(hub_cache, repo_id)
    try:
        listing = _tree_listing(api, local_dir, folder, repo_id, commit)
    except hub_errors as exc:
        raise _explain_hub_error(exc, repo_id, revision) from exc
    repaired: list[str] = []
    if listing is not None:
        repaired = remove_damaged_files(local_dir, folder, commit, listing).damaged

    # cache_dir points at the cache being built, so files already hydrated
    # there are copied from it instead of downloaded again.
    try:
        snapshot_download(repo_id, revision=commit, local_dir=str(local_dir), cache_dir=str(hub_cache), repo_type="model")
    except hub_errors as exc:
        raise _explain_hub_error(exc, repo_id, revision) from exc
    except shutil.SameFileError as exc:
        # remove_damaged_files removes every hard link that huggingface_hub
        # would copy over; this is raised only if a case was missed.
        raise ForgeLauncherError(
            f"huggingface_hub tried to copy a cached blob over the hard link to it in {str(local_dir)!r}: {exc}. "
            f"Delete {str(local_dir)!r} and the cache folder {str(folder)!r}, then stage the model again."
        ) from exc

    hydrated = hydrate(
        local_dir, repo_id, hub_cache, revision=revision, commit=commit, hash_missing=False, stage_command=stage_command,
    )
    return StageResult(local_dir=local_dir, hydrated=hydrated, repaired=repaired)
