"""Runs one job's AppDef with TorchX's ``local_cwd`` scheduler and records its state.

TorchX's local scheduler keeps its apps in memory, so the process that
submitted an app is the only one that can describe or cancel it. The local
backend therefore starts this supervisor as a separate process (in its own
session) that owns the scheduler until the app ends, and writes the state to
``<job dir>/local_state.json`` for ``forge status``. TERM cancels the app.

Started as ``python -m forge_launcher_local.supervisor`` with a pickled
payload on stdin, so secret environment values are never written to disk.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

from forge_launcher.workers import CLIENT_EXIT_FILE
from forge_launcher.processes import pid_alive
from forge_launcher.records import write_json_atomic

log = logging.getLogger(__name__)

STATE_FILE = "local_state.json"
SESSION_NAME = "forge"
POLL_INTERVAL = 0.2
#: Seconds the workers get to exit by themselves after a detached client ended.
WORKER_EXIT_GRACE = 30.0


class StateWriter:
    """Writes the supervisor's view of the app to the state file when it changes."""

    def __init__(self, job_dir: Path) -> None:
        self.path = job_dir / STATE_FILE
        self.data: dict[str, Any] = {"pid": os.getpid(), "state": "PENDING", "message": ""}

    def update(self, **values: Any) -> None:
        if all(self.data.get(k) == v for k, v in values.items()):
            return
        self.data.update(values)
        write_json_atomic(self.path, self.data)


def _client_exit_code(job_dir: Path) -> int | None:
    import json

    try:
        return int(json.loads((job_dir / CLIENT_EXIT_FILE).read_text())["code"])
    except (OSError, ValueError, KeyError):
        return None


def supervise(app: Any, cfg: dict[str, Any], job_dir: Path, parent_pid: int | None, detached: bool) -> int:
    """Submit ``app``, follow it to the end and record each state change; return 0 on success."""
    from torchx.schedulers.local_scheduler import SignalException, create_scheduler
    from torchx.specs import AppState, make_app_handle

    writer = StateWriter(job_dir)
    scheduler = create_scheduler(session_name=SESSION_NAME)
    try:
        app_id = scheduler.schedule(scheduler.submit_dryrun(app, cfg))
    except Exception as exc:  # noqa: BLE001 - any submit failure is reported to the launcher
        log.exception("submitting %s failed", app.name)
        writer.update(state="FAILED", message=f"local_cwd submit failed: {exc}")
        return 1

    handle = make_app_handle("local_cwd", SESSION_NAME, app_id)
    log_dir = str(Path(cfg["log_dir"]) / SESSION_NAME / app_id)
    writer.update(state="RUNNING", handle=handle, app_id=app_id, log_dir=log_dir)
    client_done_at: float | None = None
    try:
        while True:
            description = scheduler.describe(app_id)
            state = description.state if description else AppState.UNKNOWN
            if state in (AppState.SUCCEEDED, AppState.FAILED, AppState.CANCELLED):
                final = AppState(state).name
                code = _client_exit_code(job_dir) if detached else None
                if code is not None:
                    final = "SUCCEEDED" if code == 0 else "FAILED"
                message = writer.data["message"]
                if not message and description is not None and description.structured_error_msg != "<NONE>":
                    message = description.structured_error_msg
                writer.update(state=final, message=message)
                return 0 if final == "SUCCEEDED" else 1

            if parent_pid is not None and not pid_alive(parent_pid):
                log.warning("launcher process %d exited; cancelling %s", parent_pid, app_id)
                scheduler.cancel(app_id)
                writer.update(state="CANCELLED", message=f"the launching forge process (pid {parent_pid}) exited")
                return 1

            # In detached mode the job ends with its client: workers still
            # running after the grace period are stopped.
            if detached:
                code = _client_exit_code(job_dir)
                if code is not None:
                    client_done_at = client_done_at or time.monotonic()
                    grace = WORKER_EXIT_GRACE if code == 0 else 0.0
                    if time.monotonic() - client_done_at >= grace:
                        scheduler.cancel(app_id)
                        final = "SUCCEEDED" if code == 0 else "FAILED"
                        writer.update(state=final, message="" if code == 0 else f"client exited with code {code}")
                        return 0 if code == 0 else 1
            time.sleep(POLL_INTERVAL)
    except SignalException as exc:
        log.info("received %s; cancelling %s", exc.sigval.name, app_id)
        scheduler.cancel(app_id)
        writer.update(state="CANCELLED", message="cancelled")
        return 1
    finally:
        scheduler.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    payload = pickle.load(sys.stdin.buffer)
    sys.stdin.close()
    return supervise(payload["app"], payload["cfg"], Path(payload["job_dir"]), payload.get("parent_pid"), payload["detached"])


if __name__ == "__main__":
    sys.exit(main())
