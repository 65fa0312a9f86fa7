"""The MAST plugin's provision hook and lifecycle hooks, in this process, against the recording scheduler."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from forge_launcher.errors import ProvisionError, UserError
from forge_launcher.job import Job
from forge_launcher.launcher import LaunchRequest, prepare_job
from forge_launcher.plugins import load_registry
from forge_launcher.records import JobRecord
from forge_launcher.workers import register_worker
from forge_launcher_mast import backend
from tests import mast_fake_scheduler as fake
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

GRPO = REPO_ROOT / "examples" / "mast_grpo.yaml"


@pytest.fixture
def registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the recording scheduler as ``mast_conda`` in this process."""
    monkeypatch.syspath_prepend(str(fake.install(tmp_path / "site")))
    monkeypatch.setenv(fake.STATE_ENV, str(tmp_path / "state"))
    monkeypatch.delenv(backend.TORCHX_JOB_ID, raising=False)


def submitted_job(name: str) -> tuple[Job, str]:
    """Compose the GRPO example for MAST, create its job directory and submit it; return the job and handle."""
    request = LaunchRequest(str(GRPO), ["+backend=mast", "backend.scheduler_args.hpcIdentity=forge-tests"])
    job = prepare_job(request, load_registry())
    job.name = name
    job.dir = Path(job.storage_config["root"]) / "forge_runs" / name
    job.dir.mkdir(parents=True)
    app = backend.forge_launcher_build_app(job)
    return job, backend.forge_launcher_submit(job, app)


def record_of(job: Job, handle: str, detached: bool = True) -> JobRecord:
    return JobRecord(name=job.name, backend="mast", storage="local", job_dir=str(job.dir), config_path=str(GRPO),
                     detached=detached, created="2026-01-01T00:00:00+00:00", handle=handle, state="RUNNING")


def test_provision_from_hostnames(registered: None, monkeypatch: pytest.MonkeyPatch) -> None:
    job, handle = submitted_job("prov-hosts")
    monkeypatch.setenv(backend.TORCHX_JOB_ID, handle)

    addresses = backend.forge_launcher_provision(job, timeout=5.0)

    assert addresses == {
        "policy_0": ["tcp://policy_0-0.hosts.test:26600", "tcp://policy_0-1.hosts.test:26600"],
        "policy_1": ["tcp://policy_1-0.hosts.test:26600", "tcp://policy_1-1.hosts.test:26600"],
        "trainer": ["tcp://trainer-0.hosts.test:26600", "tcp://trainer-1.hosts.test:26600"],
        "ref_model": ["tcp://ref_model-0.hosts.test:26600"],
    }


def test_provision_handle_from_record(registered: None) -> None:
    job, handle = submitted_job("prov-record")
    (job.dir / "job.json").write_text(json.dumps({"handle": handle}))

    addresses = backend.forge_launcher_provision(job, timeout=5.0)

    assert addresses["ref_model"] == ["tcp://ref_model-0.hosts.test:26600"]


def test_provision_falls_back_to_registration(registered: None, monkeypatch: pytest.MonkeyPatch) -> None:
    job, handle = submitted_job("prov-fallback")
    monkeypatch.setenv(backend.TORCHX_JOB_ID, handle)
    fake.set_app("prov-fallback", hostnames={})
    for mesh in job.meshes:
        for replica in range(mesh.hosts):
            register_worker(job.dir, mesh.name, replica, f"tcp://10.0.0.{replica}:{4000 + replica}", f"10.0.0.{replica}", os.getpid())

    addresses = backend.forge_launcher_provision(job, timeout=5.0)

    assert addresses["policy_1"] == ["tcp://10.0.0.0:4000", "tcp://10.0.0.1:4001"]
    assert addresses["ref_model"] == ["tcp://10.0.0.0:4000"]


def test_provision_partial_hosts_times_out(registered: None, monkeypatch: pytest.MonkeyPatch) -> None:
    job, handle = submitted_job("prov-partial")
    monkeypatch.setenv(backend.TORCHX_JOB_ID, handle)
    monkeypatch.setattr(backend, "POLL_INTERVAL", 0.01)
    hostnames = fake.read_app("prov-partial")["hostnames"]
    hostnames["trainer"] = ["trainer-0.hosts.test", ""]
    fake.set_app("prov-partial", hostnames=hostnames)

    with pytest.raises(ProvisionError) as error:
        backend.forge_launcher_provision(job, timeout=0.05)
    assert "mesh 'trainer' hosts [1]" in str(error.value)
    assert "backend.provision_timeout" in str(error.value)


def test_wait_returns_terminal_state(registered: None) -> None:
    job, handle = submitted_job("wait-done")
    fake.set_app("wait-done", state="FAILED", msg="trainer exited with code 1")

    status = backend.forge_launcher_wait(record_of(job, handle), timeout=5.0)

    assert status.state == "FAILED"
    assert status.message == "trainer exited with code 1"


def test_wait_times_out_running(registered: None) -> None:
    job, handle = submitted_job("wait-running")

    status = backend.forge_launcher_wait(record_of(job, handle), timeout=0.0)

    assert status.state == "RUNNING"


def test_status_of_purged_job(registered: None) -> None:
    job, handle = submitted_job("purged")
    (Path(os.environ[fake.STATE_ENV]) / "purged.json").unlink()

    status = backend.forge_launcher_status(record_of(job, handle))

    assert status.state == "UNKNOWN"
    assert "purged" in status.message


def test_status_without_scheduler(tmp_path: Path) -> None:
    record = JobRecord(name="elsewhere", backend="mast", storage="local", job_dir=str(tmp_path), config_path=str(GRPO),
                       detached=True, created="2026-01-01T00:00:00+00:00", handle="mast_conda://torchx/elsewhere", state="RUNNING")

    status = backend.forge_launcher_status(record)

    assert status.state == "UNKNOWN"
    assert "'mast_conda' is not registered" in status.message


def test_cancel_without_scheduler(tmp_path: Path) -> None:
    record = JobRecord(name="elsewhere", backend="mast", storage="local", job_dir=str(tmp_path), config_path=str(GRPO),
                       detached=True, created="2026-01-01T00:00:00+00:00", handle="mast_conda://torchx/elsewhere", state="RUNNING")

    with pytest.raises(UserError) as error:
        backend.forge_launcher_cancel(record)
    assert "'mast_conda' is not registered" in str(error.value)
