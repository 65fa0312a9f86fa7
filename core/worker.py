"""``forge worker``: one host of a worker mesh.

Starts the Monarch worker loop as a child process, registers its address in
the job directory once it accepts connections, sends heartbeats, and records
the exit code. TERM and INT are forwarded to the child.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from forge_launcher.workers import client_gone, record_worker_exit, register_worker, worker_heartbeat

log = logging.getLogger(__name__)

#: Seconds to wait for the Monarch worker to accept connections.
STARTUP_TIMEOUT = 120.0


def free_port(host: str) -> int:
    """Return a TCP port that is free on ``host`` right now."""
    # NOTE: another process can take the port between this check and the
    # worker binding it; the worker then exits and the client reports it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_while_client_lives(child: subprocess.Popen, job_dir: Path, mesh: str, replica: int) -> int:
    """Wait for the Monarch worker to exit, stopping it if the job's client is gone."""
    while True:
        try:
            return child.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        reason = client_gone(job_dir)
        if reason is None:
            continue
        log.warning("stopping worker %s/%d because %s", mesh, replica, reason)
        child.terminate()
        try:
            return child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()


def run_worker(job_dir: Path, mesh: str, replica: int, host: str, port: int, gpu_sets: list[str]) -> int:
    """Run one worker host until the client shuts it down; return its exit code."""
    if port == 0:
        port = free_port(host)
    address = f"tcp://{host}:{port}"
    env = dict(os.environ)
    if gpu_sets:
        if replica >= len(gpu_sets):
            log.error("no GPU set for replica %d of mesh %s (sets: %s)", replica, mesh, gpu_sets)
            record_worker_exit(job_dir, mesh, replica, 2)
            return 2
        env["CUDA_VISIBLE_DEVICES"] = gpu_sets[replica]

    child = subprocess.Popen([sys.executable, "-m", "forge_launcher.monarch_worker", address], env=env)
    log.info("worker %s/%d (pid %d) starting on %s", mesh, replica, child.pid, address)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not _accepts_connections(host, port):
        if child.poll() is not None:
            log.error("worker %s/%d exited with code %d before accepting connections", mesh, replica, child.returncode)
            record_worker_exit(job_dir, mesh, replica, child.returncode)
            return child.returncode or 1
        if time.monotonic() > deadline:
            log.error("worker %s/%d did not accept connections on %s within %.0f s", mesh, replica, address, STARTUP_TIMEOUT)
            child.kill()
            child.wait()
            record_worker_exit(job_dir, mesh, replica, 1)
            return 1
        time.sleep(0.05)

    register_worker(job_dir, mesh, replica, address, host, child.pid)
    heartbeat = worker_heartbeat(job_dir, mesh, replica)
    heartbeat.start()
    code = _wait_while_client_lives(child, job_dir, mesh, replica)
    heartbeat.stop()
    record_worker_exit(job_dir, mesh, replica, code)
    log.info("worker %s/%d exited with code %d", mesh, replica, code)
    return code
