"""Run a Monarch worker loop on one address: ``python -m forge_launcher.monarch_worker ADDRESS``.

``forge worker`` starts this module as its child so it can record the exit
code and keep sending heartbeats while Monarch blocks.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m forge_launcher.monarch_worker tcp://HOST:PORT", file=sys.stderr)
        return 2
    try:
        from monarch.actor import run_worker_loop_forever
    except ImportError as exc:
        print(f"torchmonarch is not installed ({exc}). Install it with: pip install 'forge-launcher[monarch]'", file=sys.stderr)
        return 3
    run_worker_loop_forever(address=argv[0], ca="trust_all_connections")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
