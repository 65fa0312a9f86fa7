"""Process checks shared by the launcher and the local backend (Linux ``/proc``)."""

from __future__ import annotations

import os


def pid_alive(pid: int | None) -> bool:
    """Return whether process ``pid`` exists and is not a zombie; False for None or 0."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # kill(pid, 0) succeeds on a zombie too, so read its state letter.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
