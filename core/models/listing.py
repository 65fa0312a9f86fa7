"""Listing the models staged in a hub cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from forge_launcher.models.cache import check_snapshot, list_refs, repo_id_of


@dataclass
class StagedModel:
    """One snapshot in the cache, with the ref that names it."""

    repo_id: str
    #: The ref (branch or tag) that points at the commit; ``None`` for a snapshot no ref names.
    revision: str | None
    commit: str
    size: int = 0
    files: int = 0
    has_tree_listing: bool = False
    problems: list[str] = field(default_factory=list)


def list_staged(hub_cache: Path) -> list[StagedModel]:
    """Return every snapshot of a model in ``hub_cache``, sorted by repository and revision."""
    if not hub_cache.is_dir():
        return []

    staged: list[StagedModel] = []
    for folder in sorted(hub_cache.iterdir()):
        repo_id = repo_id_of(folder.name)
        if repo_id is None or not folder.is_dir():
            continue

        refs = list_refs(folder)
        snapshots_dir = folder / "snapshots"
        commits = sorted(p.name for p in snapshots_dir.iterdir() if p.is_dir()) if snapshots_dir.is_dir() else []
        named = [(revision, commit) for revision, commit in refs.items()]
        named += [(None, commit) for commit in commits if commit not in refs.values()]
        for revision, commit in named:
            check = check_snapshot(hub_cache, repo_id, commit)
            if check is None:
                staged.append(StagedModel(repo_id, revision, commit, problems=[f"missing: snapshot folder of commit {commit}"]))
                continue
            staged.append(StagedModel(repo_id, revision, commit, check.size, check.files, check.has_tree_listing, check.problems))
    return staged
