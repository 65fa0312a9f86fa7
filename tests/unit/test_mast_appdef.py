"""The MAST backend's AppDef and its checks, built in this process from Forge-shaped configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge_launcher.bootstrap import save_job_spec
from forge_launcher.errors import ConfigError
from forge_launcher.job import Job
from forge_launcher.launcher import LaunchRequest, prepare_job
from forge_launcher.plugins import load_registry
from forge_launcher_mast import backend
from tests.conftest import REPO_ROOT

GRPO = REPO_ROOT / "examples" / "mast_grpo.yaml"
NON_DETACHED = REPO_ROOT / "tests" / "fixtures" / "mast_non_detached.yaml"

WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "PYTHONPATH": "/packages/monarch_default_workspace/workspace",
}


def make_job(config: Path, *overrides: str, name: str = "golden-job", storage: Path | None = None) -> Job:
    """Compose ``config`` with ``+backend=mast`` and give the job a name and directory, as a launch does."""
    job = prepare_job(LaunchRequest(str(config), ["+backend=mast", *overrides]), load_registry())
    job.name = name
    job.dir = Path(job.storage_config["root"]) / "forge_runs" / name
    return job


def write_config(directory: Path, text: str) -> Path:
    path = directory / "job.yaml"
    path.write_text("job:\n  module: apps.grpo.main\n" + text)
    return path


def test_grpo_roles_and_hosts() -> None:
    job = make_job(GRPO)
    backend.forge_launcher_preflight(job)
    app = backend.forge_launcher_build_app(job)

    assert [role.name for role in app.roles] == ["client", "policy_0", "policy_1", "trainer", "ref_model"]
    assert {role.name: role.num_replicas for role in app.roles} == {"client": 1, "policy_0": 2, "policy_1": 2, "trainer": 2, "ref_model": 1}


def test_grpo_client_role(forge_env: dict[str, Path]) -> None:
    job = make_job(GRPO)
    client = backend.forge_launcher_build_app(job).roles[0]
    job_dir = forge_env["storage"] / "forge_runs" / "golden-job"

    assert client.entrypoint == "python"
    assert client.args == ["-m", "forge_launcher", "bootstrap", "--job-dir", str(job_dir)]
    assert client.resource.gpu == 0
    assert client.resource.cpu == 16
    assert client.env["FORGE_JOB_NAME"] == "golden-job"
    assert client.env["FORGE_CONFIG"] == str(job_dir / "config.yaml")
    assert client.env["HF_HOME"] == str(forge_env["storage"] / "hf")
    for name, value in WORKER_ENV.items():
        assert client.env[name] == value


def test_grpo_worker_roles(forge_env: dict[str, Path]) -> None:
    from torchx.specs import macros

    job = make_job(GRPO)
    roles = {role.name: role for role in backend.forge_launcher_build_app(job).roles}
    job_dir = forge_env["storage"] / "forge_runs" / "golden-job"

    policy = roles["policy_1"]
    assert policy.entrypoint == "python"
    assert policy.args == [
        "-m", "forge_launcher", "worker", "--job-dir", str(job_dir),
        "--mesh", "policy_1", "--replica", macros.replica_id, "--port", "26600",
    ]
    for name in ("policy_0", "policy_1", "trainer", "ref_model"):
        assert roles[name].resource.gpu == 8
        assert roles[name].resource.capabilities["sku"] == "gtt_any"
        assert roles[name].env["FORGE_JOB_NAME"] == "golden-job"
        assert "FORGE_CONFIG" not in roles[name].env
        for env_name, value in WORKER_ENV.items():
            assert roles[name].env[env_name] == value


def test_grpo_app_metadata() -> None:
    app = backend.forge_launcher_build_app(make_job(GRPO))

    assert app.name == "golden-job"
    assert app.metadata["mast"] == {"HpcJobDefinition": {"networkAffinity": {"preferredScope": 3, "fallbackScope": 3}}}
    assert app.metadata["packages"] == ["oil.oilfs:stable", "manifold.manifoldfs"]
    assert app.metadata["idle_timeout_sec"] == 3600


def test_overrides_reach_roles() -> None:
    job = make_job(GRPO, "backend.sku=h100_x8", "backend.worker_port=31000", "backend.client.cpu=4", "+backend.env.EXTRA=yes", "+job.env.EXTRA=job-wins")
    roles = {role.name: role for role in backend.forge_launcher_build_app(job).roles}

    assert roles["trainer"].resource.capabilities["sku"] == "h100_x8"
    assert roles["trainer"].args[-2:] == ["--port", "31000"]
    assert roles["client"].resource.cpu == 4
    assert roles["trainer"].env["EXTRA"] == "job-wins"


def test_non_detached_has_no_client() -> None:
    job = make_job(NON_DETACHED)
    backend.forge_launcher_preflight(job)
    app = backend.forge_launcher_build_app(job)

    assert job.detached is False
    assert [role.name for role in app.roles] == ["policy_0", "trainer"]
    assert [role.num_replicas for role in app.roles] == [1, 3]
    assert all(role.args[2] == "worker" for role in app.roles)


def test_detached_is_default() -> None:
    job = make_job(GRPO)

    assert job.detached is True


@pytest.mark.parametrize("hosts_line", ["    hosts: 0\n", ""])
def test_gpu_service_without_hosts(tmp_path: Path, hosts_line: str) -> None:
    config = write_config(tmp_path, "services:\n  policy:\n    procs: 1\n    with_gpus: true\n" + hosts_line)
    job = make_job(config)

    with pytest.raises(ConfigError) as error:
        backend.forge_launcher_preflight(job)
    assert "services.policy" in str(error.value)
    assert "services.policy.hosts=N" in str(error.value)


def test_gpu_actor_without_hosts_gets_mesh(tmp_path: Path) -> None:
    config = write_config(tmp_path, "actors:\n  ref_model:\n    procs: 1\n    with_gpus: true\n")
    job = make_job(config)
    backend.forge_launcher_preflight(job)

    assert [(mesh.name, mesh.hosts) for mesh in job.meshes] == [("ref_model", 1)]


def test_invalid_mesh_name(tmp_path: Path) -> None:
    config = write_config(tmp_path, "actors:\n  trainer:\n    procs: 1\n    hosts: 1\n    with_gpus: true\n    mesh_name: Trainer.Main\n")

    with pytest.raises(ConfigError) as error:
        make_job(config)
    assert "'Trainer.Main'" in str(error.value)
    assert "actors.trainer.mesh_name" in str(error.value)


def test_mesh_named_client(tmp_path: Path) -> None:
    config = write_config(tmp_path, "actors:\n  client:\n    procs: 1\n    hosts: 1\n    with_gpus: true\n")
    job = make_job(config)

    with pytest.raises(ConfigError) as error:
        backend.forge_launcher_preflight(job)
    assert "'client'" in str(error.value)
    assert "actors.client.mesh_name" in str(error.value)


def test_procs_exceed_host_gpus(tmp_path: Path) -> None:
    config = write_config(tmp_path, "actors:\n  trainer:\n    procs: 16\n    hosts: 1\n    with_gpus: true\n")
    job = make_job(config)

    with pytest.raises(ConfigError) as error:
        backend.forge_launcher_preflight(job)
    assert "actors.trainer.procs is 16" in str(error.value)
    assert "8 GPUs" in str(error.value)


def test_non_detached_without_meshes(tmp_path: Path) -> None:
    config = write_config(tmp_path, "detached: false\nactors:\n  dataset:\n    procs: 1\n")
    job = make_job(config)

    with pytest.raises(ConfigError) as error:
        backend.forge_launcher_preflight(job)
    assert "detached=true" in str(error.value)


@pytest.mark.parametrize("value", ["''", "null"])
def test_empty_sku(value: str) -> None:
    job = make_job(GRPO, f"backend.sku={value}")

    with pytest.raises(ConfigError) as error:
        backend.forge_launcher_preflight(job)
    assert "backend.sku" in str(error.value)
    assert "backend.sku=NAME" in str(error.value)


def test_backend_env_secret_not_saved(forge_env: dict[str, Path]) -> None:
    job = make_job(GRPO, "+backend.env.WANDB_API_KEY=wandb-secret-value")
    job.dir.mkdir(parents=True)
    app = backend.forge_launcher_build_app(job)
    spec = save_job_spec(job)

    assert all(role.env["WANDB_API_KEY"] == "wandb-secret-value" for role in app.roles)
    assert "wandb-secret-value" not in spec.read_text()
    assert "WANDB_API_KEY" not in json.loads(spec.read_text())["backend_config"]["env"]


def test_bootstrap_env_of_mast_job_only() -> None:
    job = make_job(GRPO, "+backend.env.HF_TOKEN=hf-secret-value")
    env = backend.forge_launcher_bootstrap_env(job)

    assert env["HF_HUB_OFFLINE"] == "1"
    assert "HF_TOKEN" not in env

    job.backend = "local"
    assert backend.forge_launcher_bootstrap_env(job) == {}


def test_backend_spec_limits() -> None:
    spec = load_registry().backend("mast")

    assert spec.default_detached is True
    assert spec.client_has_gpus is False
    assert spec.max_job_name_length == backend.MAX_JOB_NAME_LENGTH
