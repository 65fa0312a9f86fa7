"""A conformance suite every backend plugin runs: submit, status, cancel, bad input.

Subclass :class:`BackendConformance` in a test module, set ``backend`` and,
if the backend needs them, ``overrides`` and ``env``. Override
:meth:`finish_job` where the scheduler needs help to end a job (a recording
stand-in scheduler, for example).
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import run_forge

QUICK_SCRIPT = """
import argparse, sys
parser = argparse.ArgumentParser()
parser.add_argument("--config")
args, extra = parser.parse_known_args()
print("conformance workload ran with", extra, flush=True)
"""

SLOW_SCRIPT = """
import time
print("conformance workload sleeping", flush=True)
time.sleep(300)
"""


class BackendConformance:
    backend: str = ""
    overrides: tuple[str, ...] = ()
    env: dict[str, str] = {}
    #: Seconds to wait for a quick job to reach a terminal state.
    finish_timeout: float = 120.0

    def write_config(self, directory: Path, script: str, extra_yaml: str = "") -> Path:
        workload = directory / "workload.py"
        workload.write_text(script)
        config = directory / "conformance.yaml"
        config.write_text(f"job:\n  script: {workload}\n{extra_yaml}")
        return config

    def launch(self, config: Path, *extra: str):
        return run_forge(str(config), f"+backend={self.backend}", "detached=true", *self.overrides, *extra, env=self.env)

    def finish_job(self, handle: str) -> None:
        """Let a quick job finish; real schedulers need nothing here."""

    def wait_terminal(self, name: str) -> str:
        deadline = time.monotonic() + self.finish_timeout
        state = ""
        while time.monotonic() < deadline:
            result = run_forge("status", name, env=self.env)
            assert result.returncode == 0, result.stderr
            state = result.stdout.splitlines()[0].split(": ", 1)[1]
            if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                return state
            time.sleep(0.5)
        return state

    def test_submit_returns_handle(self, tmp_path: Path) -> None:
        config = self.write_config(tmp_path, QUICK_SCRIPT)
        result = self.launch(config, "job.name=conf-submit")
        assert result.returncode == 0, result.stderr
        assert "handle: " in result.stdout
        handle = result.stdout.split("handle: ", 1)[1].split()[0]
        assert "://" in handle

        status = run_forge("status", handle, env=self.env)
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith("conf-submit: ")

    def test_status_reaches_succeeded(self, tmp_path: Path) -> None:
        config = self.write_config(tmp_path, QUICK_SCRIPT)
        result = self.launch(config, "job.name=conf-status")
        assert result.returncode == 0, result.stderr
        self.finish_job(result.stdout.split("handle: ", 1)[1].split()[0])
        assert self.wait_terminal("conf-status") == "SUCCEEDED"

    def test_cancel_reports_cancelled(self, tmp_path: Path) -> None:
        config = self.write_config(tmp_path, SLOW_SCRIPT)
        result = self.launch(config, "job.name=conf-cancel")
        assert result.returncode == 0, result.stderr

        cancelled = run_forge("cancel", "conf-cancel", env=self.env)
        assert cancelled.returncode == 0, cancelled.stderr
        assert self.wait_terminal("conf-cancel") == "CANCELLED"

    def test_unknown_job_is_user_error(self) -> None:
        result = run_forge("status", "no-such-job", env=self.env)
        assert result.returncode == 2
        assert "no-such-job" in result.stderr

    def test_negative_hosts_queues_nothing(self, tmp_path: Path, forge_env: dict[str, Path]) -> None:
        extra = "actors:\n  trainer:\n    procs: 1\n    hosts: -1\n"
        config = self.write_config(tmp_path, QUICK_SCRIPT, extra)
        result = self.launch(config, "job.name=conf-bad")
        assert result.returncode == 2
        assert "actors.trainer.hosts" in result.stderr
        assert not (forge_env["home"] / "jobs" / "conf-bad.json").exists()
        assert not (forge_env["storage"] / "forge_runs" / "conf-bad").exists()
