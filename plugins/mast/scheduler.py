"""Calls to the configured TorchX scheduler through TorchX's runner.

Every call goes through ``torchx.runner.get_runner()``, so the scheduler is
whatever TorchX finds under that name: ``mast_conda`` inside Meta, or any
scheduler registered in the entry-point group ``torchx.schedulers``.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

from forge_launcher.errors import ConfigError, ForgeLauncherError, UserError
from forge_launcher.secrets import mask_env, mask_secrets
from forge_launcher_mast.config import MastConfig

if TYPE_CHECKING:
    from torchx.runner import Runner
    from torchx.specs import AppDef, AppDryRunInfo, AppStatus

log = logging.getLogger(__name__)


def registered_schedulers() -> list[str]:
    """Return the names of the TorchX schedulers registered on this machine."""
    from torchx.schedulers import get_scheduler_factories

    return sorted(get_scheduler_factories())


def is_registered(name: str) -> bool:
    return name in registered_schedulers()


def require_registered(name: str, action: str) -> None:
    """Raise a :class:`UserError` when TorchX has no scheduler called ``name``."""
    available = registered_schedulers()
    if name in available:
        return
    raise UserError(
        f"Cannot {action}: the TorchX scheduler {name!r} is not registered on this machine "
        f"(registered: {', '.join(available) or 'none'}). Run from a machine where {name!r} is installed, "
        f"choose another scheduler with backend.scheduler=NAME, or add --dry-run to print the job without submitting it."
    )


def _open_runner() -> Runner:
    from torchx.runner import get_runner

    return get_runner()


def _masked_copy(app: AppDef) -> AppDef:
    masked = copy.deepcopy(app)
    for role in masked.roles:
        role.env = mask_env(dict(role.env))
    return masked


def _dryrun(runner: Runner, app: AppDef, config: MastConfig, workspace: str | None) -> AppDryRunInfo:
    from torchx.specs import InvalidRunConfigException

    try:
        return runner.dryrun(app, config.scheduler, cfg=dict(config.scheduler_args), workspace=workspace)
    except InvalidRunConfigException as exc:
        key = getattr(exc, "cfg_key", "")
        raise UserError(
            f"The TorchX scheduler {config.scheduler!r} rejected its run options: {exc}. "
            f"Set the option with backend.scheduler_args.{key or 'NAME'}=VALUE."
        ) from exc
    except ValueError as exc:
        # TorchX's runner and schedulers raise ValueError for an AppDef they cannot run.
        raise ConfigError(f"The TorchX scheduler {config.scheduler!r} rejected the job: {exc}") from exc


def dryrun_request(app: AppDef, config: MastConfig) -> dict[str, Any]:
    """Describe what submission would send, with secret values masked; submit nothing.

    When the scheduler is registered here, its own dry run of the AppDef is
    included. The workspace is not built for a dry run.
    """
    request: dict[str, Any] = {
        "scheduler": config.scheduler,
        "registered": is_registered(config.scheduler),
        "cfg": mask_secrets(dict(config.scheduler_args)),
        "workspace": config.workspace,
    }
    if not request["registered"]:
        request["note"] = (
            f"TorchX scheduler {config.scheduler!r} is not registered on this machine, "
            f"so only the AppDef is shown; submitting needs a machine where it is registered."
        )
        return request

    with _open_runner() as runner:
        info = _dryrun(runner, _masked_copy(app), config, workspace=None)
    request["request"] = _readable(str(info))
    return request


def _readable(text: str) -> Any:
    """Return a scheduler's formatted request as data when it parses as YAML or JSON, else as lines."""
    import yaml

    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = None
    if isinstance(parsed, (dict, list)):
        return parsed
    return text.splitlines()


def _is_running(runner: Runner, handle: str) -> AppStatus | None:
    # A scheduler may raise its own error type for an app it does not know,
    # so any failure here counts as "not running": schedule() reports real
    # connection or permission problems a moment later.
    try:
        status = runner.status(handle)
    except Exception as exc:  # noqa: BLE001
        log.debug("describing %s before submission failed: %s", handle, exc)
        return None
    if status is None or status.is_terminal():
        return None
    return status


def submit(app: AppDef, config: MastConfig, job_name: str) -> tuple[str, str]:
    """Submit ``app`` and return its app handle and UI URL ('' when the scheduler gives none).

    Raises :class:`UserError`, and submits nothing, when the scheduler is not
    registered, a job of the same name is still running, or a run option is
    invalid.
    """
    from torchx.specs import make_app_handle

    require_registered(config.scheduler, f"submit job {job_name!r}")
    with _open_runner() as runner:
        # The scheduler's app id is the job name, as MAST uses it, so a job
        # of the same name is found before a second one is queued.
        existing_handle = make_app_handle(config.scheduler, runner.name(), job_name)
        existing = _is_running(runner, existing_handle)
        if existing is not None:
            raise UserError(
                f"A job named {job_name!r} is already {existing.state.name} on {config.scheduler!r} "
                f"(handle {existing_handle}), so it was not launched again. "
                f"Check it with 'forge status {existing_handle}', or choose another job.name."
            )

        info = _dryrun(runner, app, config, workspace=config.workspace)
        try:
            handle = runner.schedule(info)
        except Exception as exc:  # noqa: BLE001 - each scheduler raises its own client errors
            raise ForgeLauncherError(
                f"Submitting job {job_name!r} to the TorchX scheduler {config.scheduler!r} failed: {exc}. "
                f"Nothing was launched; check the scheduler's credentials and backend.scheduler_args."
            ) from exc
        log.info("submitted %s as %s", job_name, handle)

        try:
            status = runner.status(handle)
        except Exception as exc:  # noqa: BLE001 - the job is queued; only its URL is missing
            log.warning("job %s was submitted, but describing it failed: %s", handle, exc)
            status = None
    return handle, (status.ui_url or "") if status is not None else ""


def scheduler_of(handle: str) -> str:
    from torchx.specs import parse_app_handle

    return parse_app_handle(handle).scheduler_backend


def app_status(handle: str) -> AppStatus | None:
    """Return the scheduler's status of ``handle``, or ``None`` when it has no such app."""
    require_registered(scheduler_of(handle), f"read the state of {handle}")
    with _open_runner() as runner:
        return runner.status(handle)


def cancel(handle: str) -> None:
    """Ask the scheduler to stop ``handle``; does nothing for a finished or unknown app."""
    require_registered(scheduler_of(handle), f"cancel {handle}")
    with _open_runner() as runner:
        runner.cancel(handle)


def log_lines(handle: str, role: str, replica: int, follow: bool) -> Any:
    """Return an iterator over the log lines of one role replica, from the scheduler."""
    from torchx.specs import UnknownAppException

    require_registered(scheduler_of(handle), f"read the logs of {handle}")
    runner = _open_runner()
    try:
        return runner.log_lines(handle, role, k=replica, should_tail=follow)
    except UnknownAppException as exc:
        raise ForgeLauncherError(f"The scheduler has no job {handle}; it may have been purged after it ended.") from exc
    except NotImplementedError as exc:
        raise ForgeLauncherError(f"The TorchX scheduler {scheduler_of(handle)!r} does not provide logs: {exc}.") from exc


def replica_hostnames(handle: str) -> dict[str, list[str]] | None:
    """Return ``{role: [hostname per replica]}`` as the scheduler describes it.

    A replica without a host yet has ``''``. Returns ``None`` when the
    scheduler lists no replica hostnames at all.
    """
    status = app_status(handle)
    if status is None or not status.roles:
        return None
    hostnames: dict[str, list[str]] = {}
    for role in status.roles:
        by_id = {replica.id: replica.hostname or "" for replica in role.replicas}
        size = max(by_id, default=-1) + 1
        hostnames[role.role] = [by_id.get(i, "") for i in range(size)]
    if not any(name for names in hostnames.values() for name in names):
        return None
    return hostnames
