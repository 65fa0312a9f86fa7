"""Built-in plugin for models on offline clusters.

Every job gets ``HF_HOME=${storage.root}/hf``, ``HF_HUB_OFFLINE=1`` and
``TRANSFORMERS_OFFLINE=1`` unless its ``job.env`` sets them. The preflight hook
adds them to ``job.env``, which the core passes to every role's process when it
starts: huggingface_hub and transformers read these variables once, at import,
so setting them later in the process has no effect. Preflight then checks that
each model the config names is staged in that cache, or is a path that exists.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from forge_launcher import hookimpl
from forge_launcher.errors import PreflightError, UserError
from forge_launcher.models.cache import (
    DEFAULT_REVISION,
    check_snapshot,
    hf_home_for,
    hub_cache_of,
    list_refs,
    repo_folder,
    validate_repo_id,
)
from forge_launcher.models.references import ModelReference, find_model_references, model_key_patterns

if TYPE_CHECKING:
    from forge_launcher.job import Job

log = logging.getLogger(__name__)

# Values of HF_HUB_OFFLINE that huggingface_hub reads as "online".
_FALSE_VALUES = {"0", "false", "no", "off", ""}


def hf_environment(job: Job) -> dict[str, str]:
    """Return the Hugging Face variables a job gets by default."""
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    root = job.storage_config.get("root")
    if root:
        env["HF_HOME"] = str(hf_home_for(root))
    return env


def stage_command(repo_id: str, job: Job) -> str:
    """Return the ``forge model stage`` command that fills the cache this job reads."""
    root = job.storage_config.get("root")
    hf_home = job.env.get("HF_HOME")
    words = ["forge", "model", "stage", repo_id]
    if root and hf_home == str(hf_home_for(root)):
        words += ["--storage-root", str(root)]
    elif hf_home:
        words += ["--hf-home", hf_home]
    return " ".join(shlex.quote(word) for word in words)


@dataclass
class _Finding:
    """One model or path that fails the check, and every key that names it."""

    keys: list[str] = field(default_factory=list)
    reason: str = ""
    fix: str = ""


def _check_repo(reference: ModelReference, hub_cache: Path, job: Job) -> tuple[str, str] | None:
    repo_id = str(reference.repo_id)
    try:
        validate_repo_id(repo_id)
    except UserError:
        return (f"{reference.value!r} is not a valid repository id", "Write it as ORG/NAME or hf://ORG/NAME, or give a path.")

    command = stage_command(repo_id, job)
    check = check_snapshot(hub_cache, repo_id, DEFAULT_REVISION)
    if check is None:
        others = sorted(list_refs(repo_folder(hub_cache, repo_id)))
        staged = f" (staged only at {', '.join(others)}, but jobs load revision {DEFAULT_REVISION!r})" if others else ""
        return (f"model {repo_id!r} is not staged in {str(hub_cache)!r}{staged}", f"Stage it with: {command}")
    if not check.complete:
        summary = "; ".join(check.problems[:3]) + (f"; {len(check.problems) - 3} more" if len(check.problems) > 3 else "")
        return (f"model {repo_id!r} is staged in {str(hub_cache)!r} but incomplete ({summary})", f"Stage it again with: {command}")
    return None


def _check_path(reference: ModelReference, storage_root: Path | None) -> tuple[str, str] | None:
    path = Path(str(reference.path))
    # NOTE: only paths on the storage root are checked, because other paths
    # may exist on the cluster's hosts but not on the submitting machine.
    if storage_root is None or not path.is_relative_to(storage_root):
        log.debug("%s = %s is outside the storage root; not checked", reference.key, path)
        return None
    if path.exists():
        return None
    return (f"path {str(path)!r} not found on storage", "Copy the model there, fix the path, or name a Hub repository staged with 'forge model stage'.")


def check_models(job: Job) -> None:
    """Raise a :class:`PreflightError` listing every model the config names that a job cannot load offline."""
    if job.env.get("HF_HUB_OFFLINE", "1").strip().lower() in _FALSE_VALUES:
        log.info("HF_HUB_OFFLINE is off in job.env, so models may download at run time; not checking them")
        return
    hf_home = job.env.get("HF_HOME")
    if not hf_home:
        return

    hub_cache = Path(job.env.get("HF_HUB_CACHE") or hub_cache_of(hf_home))
    root = job.storage_config.get("root")
    storage_root = Path(root) if root else None
    findings: dict[tuple[str, str], _Finding] = {}
    for reference in find_model_references(job.config, model_key_patterns(job.config)):
        result = _check_repo(reference, hub_cache, job) if reference.repo_id is not None else _check_path(reference, storage_root)
        if result is None:
            continue
        finding = findings.setdefault(result, _Finding(reason=result[0], fix=result[1]))
        finding.keys.append(reference.key)

    if not findings:
        return
    lines = [f"  {', '.join(f.keys)}: {f.reason}. {f.fix}" for f in findings.values()]
    raise PreflightError(
        "The config names models that the job cannot load: it runs with HF_HUB_OFFLINE=1, so it cannot "
        "download them.\n" + "\n".join(lines) + "\nTo skip this check, set job.env.HF_HUB_OFFLINE=0 or job.model_keys=[]."
    )


@hookimpl
def forge_launcher_preflight(job: Job) -> None:
    for name, value in hf_environment(job).items():
        job.env.setdefault(name, value)
    check_models(job)


@hookimpl
def forge_launcher_bootstrap_env(job: Job) -> dict[str, str]:
    return hf_environment(job)
