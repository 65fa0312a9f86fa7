"""Worker registration in the job directory, and how the client finds and watches workers.

Layout under ``<job dir>/workers/<mesh>/``:

* ``<replica>.json``: address, host and pid, written once the worker accepts connections.
* ``<replica>.alive``: touched every ``HEARTBEAT_INTERVAL`` seconds while the worker runs.
* ``<replica>.exit``: the worker's exit code, written when it ends.

The client touches ``<job dir>/client.alive`` while it runs and writes
``client_exit.json`` when it ends. Workers stop by themselves when the client
is gone, so no worker outlives its job on any backend.

Only the shared job directory is needed, so this works on every backend whose
storage all hosts mount.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from forge_launcher.errors import ProvisionError
from forge_launcher.records import write_json_atomic

if TYPE_CHECKING:
    from forge_launcher.job import Mesh

log = logging.getLogger(__name__)

WORKERS_DIR = "workers"
HEARTBEAT_INTERVAL = 1.0
#: A worker or client whose heartbeat is older than this many seconds counts as dead.
HEARTBEAT_TIMEOUT = 10.0
#: Seconds workers keep running after the client ended, for the workload's own shutdown.
CLIENT_EXIT_GRACE = 30.0
#: Written by the client when it ends, so workers and backends end the job with it.
CLIENT_EXIT_FILE = "client_exit.json"
CLIENT_ALIVE_FILE = "client.alive"


def _paths(job_dir: Path, mesh: str, replica: int) -> tuple[Path, Path, Path]:
    base = job_dir / WORKERS_DIR / mesh
    return base / f"{replica}.json", base / f"{replica}.alive", base / f"{replica}.exit"


def register_worker(job_dir: Path, mesh: str, replica: int, address: str, host: str, pid: int) -> None:
    """Publish a worker's address so the client can attach to it."""
    info, alive, _ = _paths(job_dir, mesh, replica)
    alive.parent.mkdir(parents=True, exist_ok=True)
    alive.touch()
    write_json_atomic(info, {"address": address, "host": host, "pid": pid, "mesh": mesh, "replica": replica})


def record_worker_exit(job_dir: Path, mesh: str, replica: int, code: int) -> None:
    """Record the exit code of a worker so the client reports it."""
    _, _, exit_file = _paths(job_dir, mesh, replica)
    exit_file.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(exit_file, {"code": code})


class Heartbeat:
    """A daemon thread that touches a file every ``interval`` seconds until stopped."""

    def __init__(self, path: Path, interval: float = HEARTBEAT_INTERVAL) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{path.name}", daemon=True)

    def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.touch()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                os.utime(self._path)
            except OSError as exc:
                log.warning("failed to touch heartbeat file %s: %s", self._path, exc)


def worker_heartbeat(job_dir: Path, mesh: str, replica: int) -> Heartbeat:
    """Return the heartbeat of one worker host."""
    return Heartbeat(_paths(job_dir, mesh, replica)[1])


def client_heartbeat(job_dir: Path) -> Heartbeat:
    """Return the heartbeat of the job's client, which workers watch."""
    return Heartbeat(job_dir / CLIENT_ALIVE_FILE)


def client_gone(job_dir: Path, heartbeat_timeout: float = HEARTBEAT_TIMEOUT, exit_grace: float = CLIENT_EXIT_GRACE) -> str | None:
    """Return why a worker should stop because its client is gone, or None while it may be needed.

    A client that ended gets ``exit_grace`` seconds for the workload to shut
    its meshes down; a client that stopped sending heartbeats was killed.
    Before the client has started there is nothing to watch.
    """
    now = time.time()
    try:
        ended = now - (job_dir / CLIENT_EXIT_FILE).stat().st_mtime
    except OSError:
        ended = None
    if ended is not None:
        return f"the client exited {ended:.0f} s ago" if ended > exit_grace else None
    try:
        silent = now - (job_dir / CLIENT_ALIVE_FILE).stat().st_mtime
    except OSError:
        return None
    return f"the client sent no heartbeat for {silent:.0f} s" if silent > heartbeat_timeout else None


@dataclass(frozen=True)
class WorkerFailure:
    """A worker that ended or stopped sending heartbeats."""

    mesh: str
    replica: int
    host: str
    reason: str

    def __str__(self) -> str:
        return f"mesh {self.mesh!r} host {self.replica} ({self.host}) {self.reason}"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def find_failures(job_dir: Path, meshes: list[Mesh], heartbeat_timeout: float = HEARTBEAT_TIMEOUT, allow_clean_exit: bool = False) -> list[WorkerFailure]:
    """Return workers that exited or whose heartbeat is older than ``heartbeat_timeout`` seconds.

    A registered worker that exited with code 0 counts only when
    ``allow_clean_exit`` is false, because before the client shuts a mesh
    down no worker should end.
    """
    failures = []
    now = time.time()
    for mesh in meshes:
        for replica in range(mesh.hosts):
            info_path, alive, exit_file = _paths(job_dir, mesh.name, replica)
            info = _read_json(info_path)
            if info is None:
                exit_info = _read_json(exit_file)
                if exit_info is not None:
                    failures.append(WorkerFailure(mesh.name, replica, "?", f"exited with code {exit_info.get('code')} before registering"))
                continue
            host = str(info.get("host", "?"))
            exit_info = _read_json(exit_file)
            if exit_info is not None:
                code = exit_info.get("code")
                if code != 0 or not allow_clean_exit:
                    failures.append(WorkerFailure(mesh.name, replica, host, f"exited with code {code}"))
                continue
            try:
                age = now - alive.stat().st_mtime
            except OSError:
                age = float("inf")
            if age > heartbeat_timeout:
                failures.append(WorkerFailure(mesh.name, replica, host, f"sent no heartbeat for {age:.0f} s"))
    return failures


def wait_for_workers(job_dir: Path, meshes: list[Mesh], timeout: float, poll_interval: float = 0.2) -> dict[str, list[str]]:
    """Wait until every host of every mesh has registered and return their addresses.

    Raises :class:`ProvisionError` naming the missing meshes and hosts after
    ``timeout`` seconds, or at once when a worker exits before registering.
    """
    deadline = time.monotonic() + timeout
    while True:
        addresses: dict[str, list[str]] = {}
        missing: dict[str, list[int]] = {}
        for mesh in meshes:
            found = []
            for replica in range(mesh.hosts):
                info = _read_json(_paths(job_dir, mesh.name, replica)[0])
                if info is None:
                    missing.setdefault(mesh.name, []).append(replica)
                else:
                    found.append(str(info["address"]))
            addresses[mesh.name] = found

        if not missing:
            return addresses

        failures = find_failures(job_dir, meshes)
        if failures:
            raise ProvisionError("Worker failed while the job was starting: " + "; ".join(str(f) for f in failures) + ". Check that worker's log with 'forge logs JOB --role MESH'.")
        if time.monotonic() >= deadline:
            detail = "; ".join(f"mesh {name!r} hosts {hosts}" for name, hosts in missing.items())
            raise ProvisionError(
                f"Timed out after {timeout:.0f} s waiting for workers to register in {str(job_dir / WORKERS_DIR)!r}: "
                f"missing {detail}. Check the workers' logs, or raise job.provision_timeout."
            )
        time.sleep(poll_interval)
