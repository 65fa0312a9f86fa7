"""GPU discovery and partitioning on a machine without GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge_launcher.errors import PreflightError
from forge_launcher.job import Job, Mesh
from forge_launcher_local.gpus import assign_gpus, check_gpus, visible_gpus


def make_job(meshes: list[Mesh], client_gpus: int = 0) -> Job:
    return Job(name="j", dir=Path("/tmp/j"), config_path=Path("c.yaml"), backend="local", storage="local", detached=False,
               meshes=meshes, client_gpus=client_gpus, script="w.py", module=None, args=[], env={},
               backend_config={}, storage_config={})


def test_visible_respects_cuda_visible_devices() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3,5, 7"}) == ["3", "5", "7"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,3"}) == ["2"]


def test_visible_rejects_duplicates() -> None:
    with pytest.raises(PreflightError, match="lists GPU '0' twice"):
        visible_gpus({"CUDA_VISIBLE_DEVICES": "0,0"})


def test_visible_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert visible_gpus({}) == []


def test_assign_disjoint_sets() -> None:
    job = make_job([Mesh("policy_0", 2, 2, True, "s"), Mesh("cpu", 1, 4, False, "a"), Mesh("trainer", 1, 1, True, "a")], client_gpus=1)
    assignment = assign_gpus(job, ["4", "5", "6", "7", "8", "9"])
    assert assignment.meshes == {"policy_0": ["4,5", "6,7"], "trainer": ["8"]}
    assert assignment.client == "9"
    used = [gpu for sets in assignment.meshes.values() for s in sets for gpu in s.split(",")] + [assignment.client]
    assert len(used) == len(set(used))


def test_check_gpus_names_the_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    job = make_job([Mesh("policy_0", 2, 2, True, "s")], client_gpus=1)
    with pytest.raises(PreflightError) as info:
        check_gpus(job, ["0", "1"])
    message = str(info.value)
    assert "needs 5 GPUs but 2 visible" in message
    assert "mesh 'policy_0' (2 hosts x 2 GPUs): 4" in message
    assert "inside the client: 1" in message
    assert "CUDA_VISIBLE_DEVICES='0,1'" in message


def test_cpu_job_needs_no_gpus() -> None:
    check_gpus(make_job([Mesh("m", 3, 2, False, "s")]), [])
