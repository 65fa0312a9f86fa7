"""Reading a role's log file, optionally following it until the job ends."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from forge_launcher.errors import ForgeLauncherError

#: Seconds between reads while following a log.
FOLLOW_INTERVAL = 0.5


def read_lines(path: Path, follow: bool, job_ended: Callable[[], bool], job_name: str) -> Iterator[str]:
    """Yield the lines of ``path``, and with ``follow`` keep yielding new ones until ``job_ended()``.

    Without ``follow`` this returns at the end of the file, whether the job
    runs or not.
    """
    while not path.exists():
        if not follow or job_ended():
            raise ForgeLauncherError(
                f"No log file {str(path)!r} for job {job_name!r}, because the role has not started yet or never ran. "
                f"Check 'forge status {job_name}', or follow the log with -f."
            )
        time.sleep(FOLLOW_INTERVAL)

    with open(path, errors="replace") as handle:
        partial = ""
        while True:
            line = handle.readline()
            if line.endswith("\n") or (line and not follow):
                yield partial + line
                partial = ""
                continue
            # While following, a line without its newline is still being written.
            partial += line
            if not follow:
                return
            if job_ended():
                # Lines written between the last read and the end of the job.
                rest = partial + handle.read()
                yield from rest.splitlines(keepends=True)
                return
            time.sleep(FOLLOW_INTERVAL)
