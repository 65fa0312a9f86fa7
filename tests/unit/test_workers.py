"""Worker registration, provisioning waits and failure detection."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from forge_launcher.errors import ProvisionError
from forge_launcher.job import Mesh
from forge_launcher.workers import find_failures, record_worker_exit, register_worker, wait_for_workers

MESHES = [Mesh("policy_0", 2, 1, False, "services.policy"), Mesh("trainer", 1, 1, False, "actors.trainer")]


def test_wait_returns_addresses_in_replica_order(tmp_path: Path) -> None:
    register_worker(tmp_path, "policy_0", 1, "tcp://h1:2", "h1", 11)
    register_worker(tmp_path, "policy_0", 0, "tcp://h0:1", "h0", 10)
    register_worker(tmp_path, "trainer", 0, "tcp://h2:3", "h2", 12)
    assert wait_for_workers(tmp_path, MESHES, timeout=1) == {"policy_0": ["tcp://h0:1", "tcp://h1:2"], "trainer": ["tcp://h2:3"]}


def test_wait_timeout_names_missing(tmp_path: Path) -> None:
    register_worker(tmp_path, "policy_0", 0, "tcp://h0:1", "h0", 10)
    with pytest.raises(ProvisionError) as info:
        wait_for_workers(tmp_path, MESHES, timeout=0.3)
    message = str(info.value)
    assert "mesh 'policy_0' hosts [1]" in message
    assert "mesh 'trainer' hosts [0]" in message


def test_wait_fails_fast_on_exit(tmp_path: Path) -> None:
    record_worker_exit(tmp_path, "trainer", 0, 3)
    with pytest.raises(ProvisionError, match="mesh 'trainer' host 0 .* exited with code 3"):
        wait_for_workers(tmp_path, MESHES, timeout=30)


def test_failures_exit_code_and_stale_heartbeat(tmp_path: Path) -> None:
    register_worker(tmp_path, "policy_0", 0, "a", "h0", 1)
    register_worker(tmp_path, "policy_0", 1, "b", "h1", 2)
    register_worker(tmp_path, "trainer", 0, "c", "h2", 3)
    record_worker_exit(tmp_path, "policy_0", 0, -9)
    old = time.time() - 60
    os.utime(tmp_path / "workers" / "trainer" / "0.alive", (old, old))

    failures = {(f.mesh, f.replica): f.reason for f in find_failures(tmp_path, MESHES)}
    assert failures[("policy_0", 0)] == "exited with code -9"
    assert failures[("trainer", 0)].startswith("sent no heartbeat")
    assert ("policy_0", 1) not in failures


def test_clean_exit_allowed_while_running(tmp_path: Path) -> None:
    register_worker(tmp_path, "trainer", 0, "c", "h2", 3)
    record_worker_exit(tmp_path, "trainer", 0, 0)
    meshes = [MESHES[1]]
    assert find_failures(tmp_path, meshes, allow_clean_exit=True) == []
    assert len(find_failures(tmp_path, meshes)) == 1


def test_client_gone_rules(tmp_path: Path) -> None:
    from forge_launcher.workers import client_gone, client_heartbeat

    assert client_gone(tmp_path) is None

    heartbeat = client_heartbeat(tmp_path)
    heartbeat.start()
    heartbeat.stop()
    assert client_gone(tmp_path) is None
    old = time.time() - 60
    os.utime(tmp_path / "client.alive", (old, old))
    assert "no heartbeat" in client_gone(tmp_path)

    (tmp_path / "client_exit.json").write_text('{"code": 0}')
    assert client_gone(tmp_path, exit_grace=30) is None
    os.utime(tmp_path / "client_exit.json", (old, old))
    assert "exited" in client_gone(tmp_path, exit_grace=30)
