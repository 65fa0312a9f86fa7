"""End-to-end wall time of the example job: through forge versus started by hand.

Both runs do the same work: two Monarch worker processes on 127.0.0.1 (meshes
policy_0 and trainer) and the toy RL client from examples/toy_rl.py. The
by-hand run starts the workers with ``python -m forge_launcher.monarch_worker``,
writes the provision file itself and runs the client. The forge run is
``forge examples/toy_rl.yaml`` (local backend, foreground client).

Run from the repository root: python benchmarks/bench_e2e.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "toy_rl.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"worker on port {port} did not start")


def run_by_hand(env: dict[str, str]) -> float:
    from omegaconf import OmegaConf

    job_dir = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    ports = {"policy_0": free_port(), "trainer": free_port()}
    workers = [
        subprocess.Popen([sys.executable, "-m", "forge_launcher.monarch_worker", f"tcp://127.0.0.1:{port}"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in ports.values()
    ]
    cfg = OmegaConf.load(EXAMPLE)
    cfg.job.name = "by-hand"
    cfg.job.dir = str(job_dir)
    OmegaConf.save(cfg, job_dir / "config.yaml")
    (job_dir / "provision.json").write_text(json.dumps({"meshes": {m: [f"tcp://127.0.0.1:{p}"] for m, p in ports.items()}}))
    for port in ports.values():
        wait_listening(port)
    client_env = dict(env, FORGE_PROVISION_FILE=str(job_dir / "provision.json"), FORGE_JOB_DIR=str(job_dir))
    subprocess.run([sys.executable, "examples/toy_rl.py", "--config", str(job_dir / "config.yaml")], cwd=REPO_ROOT,
                   env=client_env, check=True, capture_output=True)
    for worker in workers:
        worker.wait(timeout=60)
    return time.perf_counter() - start


def run_forge(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "forge_launcher", str(EXAMPLE)], cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs of each variant (default 5)")
    args = parser.parse_args()

    env = dict(os.environ, FORGE_HOME=tempfile.mkdtemp(), FORGE_STORAGE_ROOT=tempfile.mkdtemp(), PYTHONUNBUFFERED="1")
    by_hand, through_forge = [], []
    for _ in range(args.runs):
        by_hand.append(run_by_hand(env))
        through_forge.append(run_forge(env))
    hand, forge = statistics.median(by_hand), statistics.median(through_forge)
    print(f"by hand        median {hand:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in by_hand)})")
    print(f"through forge  median {forge:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in through_forge)})")
    print(f"overhead       {forge - hand:+.2f} s")


if __name__ == "__main__":
    main()
