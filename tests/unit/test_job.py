"""The job model: meshes from services and actors, names and job directories."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from forge_launcher.errors import ConfigError, UserError
from forge_launcher.job import Mesh, allocate_job_dir, derive_meshes, generate_job_name, validate_job_name

FORGE_SHAPED = """
services:
  policy: {procs: 4, num_replicas: 2, hosts: 2, with_gpus: true}
  reward: {procs: 1, num_replicas: 2, with_gpus: false}
  ref: {procs: 1, num_replicas: 1, with_gpus: true}
actors:
  trainer: {procs: 8, hosts: 1, with_gpus: true}
  replay_buffer: {procs: 1, with_gpus: false}
  compute_advantages: {procs: 1, with_gpus: true}
"""


def test_meshes_client_with_gpus() -> None:
    meshes, client_gpus = derive_meshes(OmegaConf.create(FORGE_SHAPED), client_has_gpus=True)
    assert meshes == [
        Mesh("policy_0", 2, 4, True, "services.policy"),
        Mesh("policy_1", 2, 4, True, "services.policy"),
        Mesh("trainer", 1, 8, True, "actors.trainer"),
    ]
    # ref (1 GPU) and compute_advantages (1 GPU) run inside the client.
    assert client_gpus == 2


def test_meshes_client_without_gpus() -> None:
    meshes, client_gpus = derive_meshes(OmegaConf.create(FORGE_SHAPED), client_has_gpus=False)
    names = [mesh.name for mesh in meshes]
    assert names == ["policy_0", "policy_1", "trainer", "compute_advantages"]
    assert meshes[-1] == Mesh("compute_advantages", 1, 1, True, "actors.compute_advantages")
    # A GPU service without hosts stays in the client: only actors move.
    assert client_gpus == 1


def test_meshes_use_mesh_name() -> None:
    cfg = OmegaConf.create({"services": {"policy": {"hosts": 1, "num_replicas": 2, "mesh_name": "gen"}}})
    meshes, _ = derive_meshes(cfg, client_has_gpus=True)
    assert [m.name for m in meshes] == ["gen_0", "gen_1"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"hosts": -1}, "actors.a.hosts must be >= 0, got -1"),
        ({"hosts": "two"}, "actors.a.hosts must be an integer"),
        ({"procs": 0}, "actors.a.procs must be >= 1"),
        ({"procs": 1.5}, "actors.a.procs must be an integer"),
        ({"procs": True}, "actors.a.procs must be an integer"),
        ({"with_gpus": "yes"}, "actors.a.with_gpus must be true or false"),
        ({"hosts": 1, "mesh_name": "Bad Name"}, "not a valid role name"),
    ],
)
def test_meshes_reject_bad_entries(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        derive_meshes(OmegaConf.create({"actors": {"a": entry}}), client_has_gpus=True)


def test_meshes_reject_duplicate_names() -> None:
    cfg = OmegaConf.create({"actors": {"a": {"hosts": 1, "mesh_name": "x"}, "b": {"hosts": 1, "mesh_name": "x"}}})
    with pytest.raises(ConfigError, match="used by both actors.a and actors.b"):
        derive_meshes(cfg, client_has_gpus=True)


def test_meshes_reject_zero_replicas() -> None:
    with pytest.raises(ConfigError, match="services.p.num_replicas must be >= 1"):
        derive_meshes(OmegaConf.create({"services": {"p": {"hosts": 1, "num_replicas": 0}}}), client_has_gpus=True)


@pytest.mark.parametrize("name", ["a/b", "..", "a..b", "UPPER", "-lead", "x" * 65, "", "sp ace"])
def test_validate_job_name_rejects(name: str) -> None:
    with pytest.raises(UserError):
        validate_job_name(name)


def test_validate_job_name_accepts() -> None:
    assert validate_job_name("grpo-qwen3_1") == "grpo-qwen3_1"


def test_generated_names_are_unique_and_valid() -> None:
    names = {generate_job_name(Path("/x/GRPO Qwen3.yaml")) for _ in range(200)}
    assert len(names) == 200
    for name in names:
        assert name.startswith("grpo-qwen3-")
        assert validate_job_name(name) == name


def test_generated_name_respects_max_length() -> None:
    name = generate_job_name(Path("/x/" + "a" * 100 + ".yaml"), max_length=20)
    assert len(name) == 20


def test_allocate_job_dir_is_exclusive(tmp_path: Path) -> None:
    name, job_dir = allocate_job_dir(tmp_path, Path("c.yaml"), "run1", 64)
    assert job_dir == tmp_path / "forge_runs" / "run1"
    assert job_dir.is_dir()
    with pytest.raises(UserError, match="already exists"):
        allocate_job_dir(tmp_path, Path("c.yaml"), "run1", 64)


def test_allocate_generated_dirs_never_collide(tmp_path: Path) -> None:
    dirs = {allocate_job_dir(tmp_path, Path("c.yaml"), None, 64)[1] for _ in range(50)}
    assert len(dirs) == 50
