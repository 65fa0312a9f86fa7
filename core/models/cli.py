"""``forge model stage|hydrate|verify|list``: models in the Hugging Face cache on the storage root."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from forge_launcher.errors import UserError
from forge_launcher.models.cache import (
    DEFAULT_REVISION,
    default_storage_root,
    format_size,
    hf_home_for,
    hub_cache_of,
    validate_repo_id,
    validate_revision,
)
from forge_launcher.models.paths import require_existing_dir, require_writable_dir

DESCRIPTION = """Stage Hugging Face models on the storage root for jobs that run offline.

Jobs read models from the cache in <storage root>/hf (their HF_HOME) with
HF_HUB_OFFLINE=1. 'stage' downloads a model and fills that cache; 'hydrate'
fills it from a directory downloaded before; 'verify' checks that a model
loads offline; 'list' shows the staged models."""


def _add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-root", type=Path, default=None, metavar="DIR",
        help="storage root; the cache is DIR/hf (default: $FORGE_STORAGE_ROOT, else ~/forge_storage)",
    )
    parser.add_argument("--hf-home", type=Path, default=None, metavar="DIR", help="Hugging Face home to use instead of <storage root>/hf")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``forge model``."""
    parser = argparse.ArgumentParser(prog="forge model", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{stage,hydrate,verify,list}")

    stage = commands.add_parser("stage", help="download a model from the Hub and fill the cache with it")
    stage.add_argument("repo_id", metavar="REPO_ID", help="Hub repository, such as sentence-transformers/all-MiniLM-L6-v2")
    stage.add_argument("--revision", default=DEFAULT_REVISION, help="branch, tag or commit to download (default: main)")
    stage.add_argument("--local-dir", type=Path, default=None, metavar="DIR", help="download folder (default: <storage root>/hf_artifacts/REPO_ID)")
    _add_location_options(stage)

    hydrate = commands.add_parser("hydrate", help="fill the cache from a directory that huggingface_hub downloaded, without network")
    hydrate.add_argument("local_dir", type=Path, metavar="DIR", help="directory written by 'forge model stage' or 'hf download --local-dir'")
    hydrate.add_argument("--repo-id", required=True, metavar="REPO_ID", help="Hub repository the files come from")
    hydrate.add_argument("--revision", default=DEFAULT_REVISION, help="ref to point at the commit (default: main)")
    hydrate.add_argument(
        "--commit", default=None, metavar="COMMIT",
        help="40-character commit the files come from; files without download metadata are then hashed",
    )
    _add_location_options(hydrate)

    verify = commands.add_parser("verify", help="check in an offline subprocess that a staged model loads")
    verify.add_argument("repo_id", metavar="REPO_ID", help="Hub repository to check")
    verify.add_argument("--revision", default=DEFAULT_REVISION, help="branch, tag or commit to check (default: main)")
    _add_location_options(verify)

    listing = commands.add_parser("list", help="show the staged models")
    _add_location_options(listing)
    return parser


def _storage_root(args: argparse.Namespace) -> Path:
    if args.storage_root is None:
        return default_storage_root()
    return Path(args.storage_root).expanduser().absolute()


def _hf_home(args: argparse.Namespace) -> Path:
    if args.hf_home is not None:
        return Path(args.hf_home).expanduser().absolute()
    return hf_home_for(_storage_root(args))


def _stage_hint(repo_id: str, args: argparse.Namespace, revision: str = DEFAULT_REVISION, local_dir: Path | None = None) -> str:
    words = ["forge", "model", "stage", repo_id]
    if revision != DEFAULT_REVISION:
        words += ["--revision", revision]
    if local_dir is not None:
        words += ["--local-dir", str(local_dir)]
    if args.hf_home is not None:
        words += ["--hf-home", str(_hf_home(args))]
    else:
        words += ["--storage-root", str(_storage_root(args))]
    return " ".join(shlex.quote(word) for word in words)


def _hf_home_option(args: argparse.Namespace) -> str:
    return "--hf-home" if args.hf_home is not None else "--storage-root"


def _check_cache_writable(args: argparse.Namespace) -> None:
    """Raise a :class:`UserError` unless the storage root, the HF home and its hub cache can be written."""
    if args.hf_home is None:
        require_writable_dir(_storage_root(args), "storage root", "--storage-root")
    else:
        require_writable_dir(_hf_home(args), "Hugging Face home", "--hf-home")
    require_writable_dir(hub_cache_of(_hf_home(args)), "hub cache", _hf_home_option(args))


def _print_hydrated(result, hf_home: Path) -> None:
    print(f"  cache: {result.snapshot}")
    counts = f"{result.linked} hard-linked, {result.copied} copied, {result.existing} already cached"
    print(f"  {result.files} files, {format_size(result.size)}: {counts}")
    if result.hashed:
        print(f"  {result.hashed} files without download metadata were hashed")
    if result.copied:
        print(f"  hard links failed ({result.link_error}), so the files were copied")
    if not result.has_tree_listing:
        print("  warning: no tree listing of the commit was found, so files missing from the download cannot be detected")
    print(f"Jobs load it offline with HF_HOME={hf_home}.")


def _stage(args: argparse.Namespace) -> int:
    from forge_launcher.models.stage import default_local_dir, stage

    validate_repo_id(args.repo_id)
    validate_revision(args.revision)
    root = _storage_root(args)
    hf_home = _hf_home(args)
    if args.local_dir is not None:
        local_dir = Path(os.path.abspath(os.path.expanduser(args.local_dir)))
        require_writable_dir(local_dir, "download folder", "--local-dir")
    else:
        require_writable_dir(root, "storage root", "--storage-root")
        local_dir = default_local_dir(root, args.repo_id)
        require_writable_dir(local_dir, "download folder", "--storage-root or --local-dir")
    # Checked before the download, so that an unusable cache does not leave a half-finished stage.
    _check_cache_writable(args)

    stage_command = _stage_hint(args.repo_id, args, args.revision, local_dir if args.local_dir is not None else None)
    result = stage(args.repo_id, hub_cache_of(hf_home), local_dir, revision=args.revision, stage_command=stage_command)
    hydrated = result.hydrated
    print(f"Staged {hydrated.repo_id} at {hydrated.revision} (commit {hydrated.commit})")
    print(f"  files: {result.local_dir}")
    if result.repaired:
        print(f"  downloaded again because they were damaged: {', '.join(result.repaired)}")
    _print_hydrated(hydrated, hf_home)
    return 0


def _hydrate(args: argparse.Namespace) -> int:
    from forge_launcher.models.hydrate import hydrate

    validate_repo_id(args.repo_id)
    validate_revision(args.revision)
    hf_home = _hf_home(args)
    _check_cache_writable(args)
    local_dir = Path(os.path.abspath(os.path.expanduser(args.local_dir)))
    result = hydrate(
        local_dir, args.repo_id, hub_cache_of(hf_home), revision=args.revision,
        commit=args.commit, hash_missing=args.commit is not None,
        stage_command=_stage_hint(args.repo_id, args, args.revision, local_dir),
    )
    print(f"Hydrated {result.repo_id} at {result.revision} (commit {result.commit}) from {local_dir}")
    _print_hydrated(result, hf_home)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from forge_launcher.models.verify import verify

    hf_home = _hf_home(args)
    report = verify(args.repo_id, hf_home, revision=args.revision)
    hint = _stage_hint(args.repo_id, args, args.revision)
    if not report.staged:
        raise UserError(
            f"{args.repo_id} at revision {args.revision!r} is not staged in {report.hub_cache!r}. Stage it with: {hint}"
        )
    if report.ok:
        print(
            f"OK: {report.repo_id} at {report.revision} (commit {report.commit}) loads offline from "
            f"{report.hub_cache}: {report.files} files, {format_size(report.size)}"
        )
        if not report.has_tree_listing:
            print("  warning: no tree listing is kept for this commit, so files missing from the download cannot be detected")
        return 0

    print(f"forge: error: {report.repo_id} at {report.revision} (commit {report.commit}) does not load offline from {report.hub_cache}:", file=sys.stderr)
    for problem in report.problems:
        print(f"  {problem}", file=sys.stderr)
    if report.loader_error and not report.problems:
        print(f"  {report.loader_error}", file=sys.stderr)
    print(f"Stage it again with: {hint}", file=sys.stderr)
    return 1


def _list(args: argparse.Namespace) -> int:
    from forge_launcher.models.listing import list_staged

    if args.hf_home is None:
        require_existing_dir(_storage_root(args), "storage root", "--storage-root")
    else:
        require_existing_dir(_hf_home(args), "Hugging Face home", "--hf-home")
    hub_cache = hub_cache_of(_hf_home(args))
    if os.path.lexists(hub_cache):
        require_existing_dir(hub_cache, "hub cache", _hf_home_option(args))
    models = list_staged(hub_cache)
    if not models:
        print(f"No models staged in {hub_cache}. Stage one with: forge model stage REPO_ID")
        return 0

    header = ("REPO", "REVISION", "COMMIT", "SIZE", "FILES")
    rows = [(m.repo_id, m.revision or "-", m.commit, format_size(m.size), str(m.files)) for m in models]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print("  ".join(title.ljust(width) for title, width in zip(header, widths)).rstrip())
    for model, row in zip(models, rows):
        line = "  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip()
        if model.problems:
            line += f"  (incomplete: {len(model.problems)} file(s) missing or wrong; see forge model verify)"
        print(line)
    return 0


def main(argv: list[str]) -> int:
    """Run ``forge model`` with ``argv`` (the arguments after ``model``) and return the exit code."""
    args = build_parser().parse_args(argv)
    handler = {"stage": _stage, "hydrate": _hydrate, "verify": _verify, "list": _list}[args.command]
    return handler(args)
