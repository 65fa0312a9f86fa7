"""Wall time of quick forge commands: --help, plugins, and --cfg of the example.

Run from the repository root: python benchmarks/bench_cli.py [--runs N]
Prints the median and max over N runs of each command, in seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "forge --help": ["--help"],
    "forge plugins": ["plugins"],
    "forge examples/toy_rl.yaml --cfg": ["examples/toy_rl.yaml", "--cfg"],
}


def time_command(args: list[str], runs: int, env: dict[str, str]) -> list[float]:
    forge = [sys.executable, "-m", "forge_launcher"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(forge + args, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="runs per command (default 10)")
    args = parser.parse_args()

    env = dict(os.environ, FORGE_HOME=tempfile.mkdtemp(), FORGE_STORAGE_ROOT=tempfile.mkdtemp())
    print(f"{'command':<36} {'median s':>9} {'max s':>7}")
    for label, command in COMMANDS.items():
        times = time_command(command, args.runs, env)
        print(f"{label:<36} {statistics.median(times):>9.3f} {max(times):>7.3f}")


if __name__ == "__main__":
    main()
