"""The contract between the forge-launcher core and its plugins.

Hooks are grouped by the phase of a job in which the core calls them. Plugins
are found through the entry-point group ``forge_launcher.plugins``, built-in
ones included, and implement hooks with ``@forge_launcher.hookimpl``.

Two kinds of hooks exist:

* Broadcast hooks are called on every plugin (config dirs, declarations,
  preflight, bootstrap environment). A plugin returns ``None`` or acts only on
  what it owns.
* Owner hooks are called only on the plugin that declared the selected
  backend or storage name, so an implementation never checks whether the job
  is meant for it. These are marked "owner" below.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from torchx.specs import AppDef

    from forge_launcher.job import Job
    from forge_launcher.plugins import BackendSpec, StorageSpec
    from forge_launcher.records import JobRecord, JobStatus

hookspec = pluggy.HookspecMarker("forge_launcher")


# -- configure ---------------------------------------------------------------


@hookspec
def forge_launcher_config_dirs() -> list[str]:
    """Return directories that hold Hydra config groups (``backend/``, ``storage/``).

    Called on every plugin before composition. A backend named ``NAME`` needs a
    ``backend/NAME.yaml`` in one of these directories so ``+backend=NAME``
    resolves.
    """


@hookspec
def forge_launcher_backends() -> list[BackendSpec]:
    """Declare the backends this plugin provides, with their capabilities.

    Called on every plugin when the plugin manager loads. Two plugins that
    declare the same name make loading fail with both distributions named.
    """


@hookspec
def forge_launcher_storages() -> list[StorageSpec]:
    """Declare the storage kinds this plugin provides (``+storage=NAME``)."""


# -- preflight ---------------------------------------------------------------


@hookspec
def forge_launcher_preflight(job: Job) -> None:
    """Check that ``job`` can run, before anything is created or queued.

    Called on every plugin. Raise :class:`forge_launcher.errors.PreflightError`
    with the value and the fix; return ``None`` when the job passes or when the
    check belongs to another backend.
    """


# -- storage (owner) ---------------------------------------------------------


@hookspec(firstresult=True)
def forge_launcher_mount(storage: dict[str, Any]) -> str:
    """Make the storage available on this host and return its root directory.

    Owner hook. ``storage`` is the resolved ``storage`` config section.
    Must be idempotent: a second call on a live mount does nothing.
    """


@hookspec(firstresult=True)
def forge_launcher_unmount(storage: dict[str, Any]) -> bool:
    """Release the storage on this host. Return ``True`` if anything was released.

    Owner hook.
    """


# -- submit (owner) ----------------------------------------------------------


@hookspec(firstresult=True)
def forge_launcher_build_app(job: Job) -> AppDef:
    """Build the TorchX ``AppDef`` for ``job``.

    Owner hook. In detached mode the client role comes first, then one role
    per mesh in ``job.meshes``; otherwise the mesh roles only.
    """


@hookspec(firstresult=True)
def forge_launcher_dryrun(job: Job, app: AppDef) -> Any:
    """Return the scheduler request that :func:`forge_launcher_submit` would send.

    Owner hook. The result is printed by ``--dry-run``; nothing is submitted.
    """


@hookspec(firstresult=True)
def forge_launcher_submit(job: Job, app: AppDef) -> str:
    """Submit ``app`` and return its TorchX app handle (``scheduler://session/app_id``).

    Owner hook. In non-detached mode the core runs the client itself after
    this returns and calls :func:`forge_launcher_wait` afterwards.
    """


# -- in-job bootstrap --------------------------------------------------------


@hookspec
def forge_launcher_bootstrap_env(job: Job) -> dict[str, str]:
    """Return environment variables to set in the client before any heavy import.

    Called on every plugin inside the job. Later plugins win on equal keys.
    """


@hookspec(firstresult=True)
def forge_launcher_provision(job: Job, timeout: float) -> dict[str, list[str]]:
    """Return the worker addresses of each mesh: ``{mesh name: [address per host]}``.

    Owner hook, called inside the job by ``forge bootstrap``. Raise
    :class:`forge_launcher.errors.ProvisionError` naming the missing meshes and
    hosts when ``timeout`` seconds pass.
    """


# -- lifecycle (owner) -------------------------------------------------------


@hookspec(firstresult=True)
def forge_launcher_status(record: JobRecord) -> JobStatus:
    """Return the current state of a recorded detached job.

    The core reports a non-detached job's state from its record, because the
    foreground ``forge`` process writes the outcome there.
    """


@hookspec(firstresult=True)
def forge_launcher_logs(
    record: JobRecord, role: str, replica: int, follow: bool
) -> Iterator[str]:
    """Yield log lines of one role replica; with ``follow``, until the job ends.

    The core reads the client log of a non-detached job itself.
    """


@hookspec(firstresult=True)
def forge_launcher_cancel(record: JobRecord) -> None:
    """Stop every role of the job. Must be safe to call on a finished job.

    For a non-detached job the core has already stopped the foreground client.
    """


@hookspec(firstresult=True)
def forge_launcher_wait(record: JobRecord, timeout: float | None) -> JobStatus:
    """Block until the job reaches a terminal state or ``timeout`` seconds pass."""


@hookspec
def forge_launcher_list(storage_root: str) -> list[JobStatus]:
    """Return jobs of this plugin's backends that have no job directory under ``storage_root``.

    Called on every plugin for each storage root in the local job records.
    The core already lists every job directory on those roots, so this is
    for jobs that only the scheduler lists. ``forge list`` adds those it has
    no record of.
    """
