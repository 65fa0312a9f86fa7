"""TorchX's Slurm scheduler with the state queries that TorchX 0.7.0 gets wrong fixed.

:class:`ForgeSlurmScheduler` subclasses ``torchx.schedulers.slurm_scheduler.SlurmScheduler``
and replaces only ``describe``, so ``cancel`` and ``exists`` (which call
``describe``) work on cancelled jobs and on clusters without accounting. The
defects, read in ``torchx/schedulers/slurm_scheduler.py`` of TorchX 0.7.0:

* ``describe`` asserts that every ``sacct`` state is a key of its state table,
  but ``sacct`` reports a cancelled job as ``CANCELLED by <uid>``, so the
  status of every cancelled job raises ``AssertionError: failed to translate
  slurm state CANCELLED by 0 to torchx state``.
* ``describe`` runs ``sacct`` with ``check=True``. On a cluster without
  accounting ``sacct`` exits non-zero, and the status of every job raises
  ``CalledProcessError``. ``squeue`` still lists a job while it runs and for
  ``MinJobAge`` seconds after it ends. After that the job has left every
  record, so its outcome is unknown.
* The app state is the state of the last ``sacct`` row, so one part of a
  heterogeneous job can hide another part that failed.

Later TorchX versions were not checked; the fallbacks run only where
TorchX's own ``describe`` raises or returns nothing.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from torchx.schedulers.api import DescribeAppResponse
from torchx.schedulers.slurm_scheduler import SLURM_STATES, SlurmScheduler
from torchx.specs import AppState, ReplicaStatus, RoleStatus

from forge_launcher.errors import ForgeLauncherError

log = logging.getLogger(__name__)

SESSION_NAME = "forge"
#: Seconds a ``sacct`` or ``squeue`` call may take before it counts as failed.
QUERY_TIMEOUT = 60.0
TERMINAL = (AppState.SUCCEEDED, AppState.FAILED, AppState.CANCELLED)
# squeue states that TorchX 0.7.0's table (taken from sacct) lacks.
EXTRA_STATES = {
    "COMPLETING": AppState.RUNNING,
    "CONFIGURING": AppState.PENDING,
    "STAGE_OUT": AppState.RUNNING,
    "SIGNALING": AppState.RUNNING,
    "STOPPED": AppState.PENDING,
    "REQUEUE_HOLD": AppState.PENDING,
    "REQUEUE_FED": AppState.PENDING,
    "RESV_DEL_HOLD": AppState.PENDING,
    "SPECIAL_EXIT": AppState.FAILED,
}


@dataclass(frozen=True)
class QueueState:
    """The state of one job as ``sacct`` or ``squeue`` reports it."""

    #: Combined state of all parts, or ``None`` when neither accounting nor the queue lists the job.
    state: AppState | None
    #: Slurm's own state text per part, such as ``client-0=CANCELLED by 0``, or why no part was found.
    detail: str


def translate_state(slurm_state: str) -> AppState:
    """Map one Slurm state (``sacct`` or ``squeue`` spelling) to a TorchX ``AppState``.

    Only the first word counts, so ``CANCELLED by 0`` is ``CANCELLED``. An
    unknown state is ``UNKNOWN`` instead of an error.
    """
    words = slurm_state.split()
    if not words:
        return AppState.UNKNOWN
    word = words[0].rstrip("+")
    return SLURM_STATES.get(word) or EXTRA_STATES.get(word) or AppState.UNKNOWN


def combine_states(states: Iterable[AppState]) -> AppState:
    """Return the state of a heterogeneous job from the states of its parts.

    The job runs while any part has not ended; once all have ended, a
    cancelled part makes it CANCELLED, else a failed part FAILED.
    """
    states = list(states)
    if not states:
        return AppState.UNKNOWN
    if AppState.RUNNING in states:
        return AppState.RUNNING
    if any(state not in TERMINAL for state in states):
        return AppState.PENDING if AppState.PENDING in states else AppState.UNKNOWN
    for outcome in (AppState.CANCELLED, AppState.FAILED):
        if outcome in states:
            return outcome
    return AppState.SUCCEEDED


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    log.debug("running %s", argv)
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=QUERY_TIMEOUT)
    except FileNotFoundError as exc:
        raise ForgeLauncherError(f"{argv[0]} not found on PATH. Run forge where the Slurm client commands are installed (Debian: slurm-client).") from exc
    except subprocess.TimeoutExpired as exc:
        raise ForgeLauncherError(f"{' '.join(argv)} timed out after {QUERY_TIMEOUT:.0f} s. Check that slurmctld is reachable (scontrol ping).") from exc


def query_sacct(app_id: str) -> list[tuple[str, str]] | None:
    """Return ``(part name, Slurm state)`` of each part of the job from ``sacct``, or ``None`` if sacct fails."""
    result = _run(["sacct", "--parsable2", "--noheader", "--jobs", app_id, "--format=JobID,JobName,State"])
    if result.returncode != 0:
        log.debug("sacct failed with code %d: %s", result.returncode, result.stderr.strip())
        return None
    parts = []
    for line in result.stdout.splitlines():
        fields = line.split("|")
        if len(fields) < 3:
            continue
        job_id, name, state = fields[0], fields[1], fields[2]
        # Steps (``123+0.batch``, ``123+0.0``) are not parts of the job.
        if job_id.split("+")[0] != app_id or "." in job_id:
            continue
        parts.append((name, state))
    return parts


def query_squeue(app_id: str) -> list[tuple[str, str]]:
    """Return ``(part name, Slurm state)`` of each part of the job that slurmctld still holds."""
    result = _run(["squeue", "--noheader", "--states=all", "--jobs", app_id, "--format=%i|%j|%T"])
    if result.returncode != 0:
        if "Invalid job id" in result.stderr:
            return []
        raise ForgeLauncherError(
            f"squeue failed for Slurm job {app_id} with exit code {result.returncode}: {result.stderr.strip()}. "
            f"Check that slurmctld is reachable (scontrol ping)."
        )
    parts = []
    for line in result.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 3 and fields[0].split("+")[0] == app_id:
            parts.append((fields[1], fields[2]))
    return parts


def _queue_state(parts: list[tuple[str, str]]) -> QueueState:
    detail = ", ".join(f"{name}={state}" for name, state in parts)
    return QueueState(combine_states(translate_state(state) for _, state in parts), detail)


def query_state(app_id: str) -> QueueState:
    """Return the job's state from ``sacct``, or from ``squeue`` where accounting has no rows or fails."""
    parts = query_sacct(app_id)
    if parts:
        return _queue_state(parts)
    accounting_failed = parts is None

    # Accounting is off, slurmdbd is down, or the job is not recorded yet.
    parts = query_squeue(app_id)
    if parts:
        return _queue_state(parts)
    reason = "sacct failed and squeue no longer lists it" if accounting_failed else "neither sacct nor squeue lists it"
    return QueueState(None, f"Slurm job {app_id}: {reason}")


def _response(app_id: str, queue: QueueState) -> DescribeAppResponse:
    return DescribeAppResponse(app_id=app_id, state=queue.state or AppState.UNKNOWN, msg=queue.detail)


class ForgeSlurmScheduler(SlurmScheduler):
    """TorchX's ``slurm`` scheduler whose ``describe`` survives cancelled jobs and missing accounting."""

    def describe(self, app_id: str) -> DescribeAppResponse | None:
        try:
            response = super().describe(app_id)
        except AssertionError as exc:
            # TorchX 0.7.0: sacct's "CANCELLED by <uid>" is not in its state table.
            if "failed to translate slurm state" not in str(exc):
                raise
            log.debug("TorchX could not read the state of Slurm job %s (%s); reading sacct directly", app_id, exc)
            response = None
        except subprocess.CalledProcessError as exc:
            # TorchX 0.7.0: sacct exits non-zero on clusters without accounting.
            log.debug("sacct failed for Slurm job %s (%s); reading squeue", app_id, exc)
            response = None

        if response is not None and response.state != AppState.UNKNOWN:
            # TorchX 0.7.0 takes the state of the last part, so combine all parts instead.
            replica_states = [replica.state for status in response.roles_statuses for replica in status.replicas]
            if replica_states:
                response.state = combine_states(replica_states)
            return response

        queue = query_state(app_id)
        if queue.state is None:
            return None
        response = _response(app_id, queue)
        response.roles_statuses = [RoleStatus("job", [ReplicaStatus(0, "job", queue.state, "")])]
        return response


def create_scheduler(session_name: str = SESSION_NAME) -> ForgeSlurmScheduler:
    """Return the scheduler the backend submits, describes and cancels with."""
    return ForgeSlurmScheduler(session_name=session_name)
