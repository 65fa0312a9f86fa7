"""Checking that a staged model loads offline, the way a job will load it.

The check runs in a subprocess because huggingface_hub reads ``HF_HOME`` and
``HF_HUB_OFFLINE`` when it is imported. Only a new process resolves the cache
exactly as a job with those variables does. The subprocess is this module run
with ``python -m``; it prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from forge_launcher.errors import ForgeLauncherError
from forge_launcher.models.cache import DEFAULT_REVISION, check_snapshot, validate_repo_id, validate_revision

log = logging.getLogger(__name__)

#: Seconds the offline check may take; it reads file sizes only.
PROBE_TIMEOUT = 120.0
# Variables that would point huggingface_hub at another cache than HF_HOME/hub.
_CACHE_OVERRIDES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE")


@dataclass
class VerifyReport:
    """The result of the offline check of one repository at one revision."""

    repo_id: str
    revision: str
    #: The hub cache that huggingface_hub used in the subprocess.
    hub_cache: str = ""
    #: ``None`` when the revision is not in the cache at all.
    commit: str | None = None
    #: The folder ``snapshot_download(local_files_only=True)`` returned.
    resolved: str | None = None
    #: What ``snapshot_download`` raised, as ``ErrorName: message``.
    loader_error: str | None = None
    files: int = 0
    size: int = 0
    has_tree_listing: bool = False
    #: One line per missing or wrong file.
    problems: list[str] = field(default_factory=list)

    @property
    def staged(self) -> bool:
        return self.commit is not None

    @property
    def ok(self) -> bool:
        return self.staged and self.resolved is not None and not self.problems and self.loader_error is None


def offline_environment(hf_home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Return ``base`` (default: this process's environment) set up as a job's: offline, on ``hf_home``."""
    env = dict(os.environ if base is None else base)
    for name in _CACHE_OVERRIDES:
        env.pop(name, None)
    env.update({"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return env


def verify(repo_id: str, hf_home: Path, revision: str = DEFAULT_REVISION) -> VerifyReport:
    """Run the offline check of ``repo_id`` at ``revision`` against the cache in ``hf_home``."""
    validate_repo_id(repo_id)
    validate_revision(revision)

    command = [sys.executable, "-m", __name__, repo_id, revision]
    log.debug("running offline check: %s (HF_HOME=%s)", command, hf_home)
    try:
        completed = subprocess.run(
            command, env=offline_environment(hf_home), capture_output=True, text=True, timeout=PROBE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise ForgeLauncherError(f"The offline check of {repo_id!r} timed out after {PROBE_TIMEOUT:.0f} s. Is {str(hf_home)!r} on a hung mount?") from exc

    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise _probe_failure(repo_id, completed)
    return VerifyReport(**json.loads(lines[-1]))


def _probe_failure(repo_id: str, completed: subprocess.CompletedProcess) -> ForgeLauncherError:
    """Describe a failed offline check by the last line of its output, and keep the whole output in a log file."""
    output = (completed.stderr or "") + (completed.stdout or "")
    last_line = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "no output")
    log.debug("output of the failed offline check of %s:\n%s", repo_id, output)
    try:
        with tempfile.NamedTemporaryFile("w", prefix="forge-model-verify-", suffix=".log", delete=False) as stream:
            stream.write(output)
        details = f"Its full output is in {stream.name}."
    except OSError as exc:
        details = f"Its full output could not be saved ({exc.strerror}); run the command again with -vv to see it."
    return ForgeLauncherError(
        f"The offline check of {repo_id!r} failed with exit code {completed.returncode}: {last_line}. {details}"
    )


def _probe(repo_id: str, revision: str) -> VerifyReport:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    report = VerifyReport(repo_id=repo_id, revision=revision, hub_cache=str(constants.HF_HUB_CACHE))
    try:
        report.resolved = snapshot_download(repo_id, revision=revision, repo_type="model", local_files_only=True)
    except LocalEntryNotFoundError as exc:
        # Includes IncompleteSnapshotError, raised when the tree listing names
        # files that the snapshot lacks.
        report.loader_error = f"{type(exc).__name__}: {exc}".replace("\n", " ")

    check = check_snapshot(Path(constants.HF_HUB_CACHE), repo_id, revision)
    if check is not None:
        report.commit = check.commit
        report.files = check.files
        report.size = check.size
        report.has_tree_listing = check.has_tree_listing
        report.problems = check.problems
    return report


if __name__ == "__main__":
    print(json.dumps(asdict(_probe(sys.argv[1], sys.argv[2]))))
