"""The ``forge`` command line.

``forge CONFIG.yaml [OVERRIDES...] [-- WORKLOAD ARGS...]`` launches a job; the
other commands manage launched jobs or run inside them. Errors print one
message without a traceback and exit 2 (user error) or 1 (runtime failure).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

from forge_launcher import __version__
from forge_launcher.errors import ForgeLauncherError

log = logging.getLogger(__name__)

COMMANDS = ("run", "plugins", "list", "status", "logs", "cancel", "bootstrap", "worker")
# Commands that parse their own arguments: name -> (module, function taking argv).
DELEGATED_COMMANDS = {
    "model": ("forge_launcher.models.cli", "main"),
    "setup": ("forge_launcher.storage_cli", "setup_main"),
    "umount": ("forge_launcher.storage_cli", "umount_main"),
}

USAGE = """forge CONFIG.yaml [+backend=NAME] [+storage=NAME] [KEY=VALUE ...] [--cfg | --dry-run] [-- ARGS...]
       forge {plugins,list,status,logs,cancel} ...
       forge {model,setup,umount} ...
       forge {bootstrap,worker} ...   (run inside a job)"""

DESCRIPTION = """Launch a Forge job config on this machine, Slurm or MAST.

The config is composed with Hydra: KEY=VALUE overrides change it, +backend=NAME
selects a backend (default: local), +storage=NAME a storage (default: local).
Arguments after '--' reach the workload unchanged."""


def _build_run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forge", usage=USAGE, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="path of the Forge job config (YAML), relative to the current directory")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides such as trainer.lr=1e-5, job.name=NAME, detached=true")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--cfg", action="store_true", help="print the composed config with secrets masked, and exit")
    mode.add_argument("--dry-run", action="store_true", help="print the TorchX AppDef and scheduler request, and submit nothing")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    parser.add_argument("--version", action="version", version=f"forge-launcher {__version__}")
    return parser


def _build_command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forge")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("plugins", help="list loaded plugins, their distributions and hooks")
    commands.add_parser("list", help="list launched jobs and their states")

    status = commands.add_parser("status", help="show the state of a job")
    status.add_argument("job", help="job name or TorchX app handle")

    logs = commands.add_parser("logs", help="print a job's logs")
    logs.add_argument("job", help="job name or TorchX app handle")
    logs.add_argument("--role", default="client", help="role to read: 'client' or a mesh name (default: client)")
    logs.add_argument("--replica", type=int, default=0, help="replica (host) index within the role (default: 0)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the job ends")

    cancel = commands.add_parser("cancel", help="stop every role of a job")
    cancel.add_argument("job", help="job name or TorchX app handle")

    bootstrap = commands.add_parser("bootstrap", help="(inside a job) run the client: env, mount, provision, workload")
    bootstrap.add_argument("--job-dir", required=True, type=Path, help="the job directory on shared storage")

    worker = commands.add_parser("worker", help="(inside a job) run one host of a worker mesh")
    worker.add_argument("--job-dir", required=True, type=Path, help="the job directory on shared storage")
    worker.add_argument("--mesh", required=True, help="mesh (role) name")
    worker.add_argument("--replica", required=True, type=int, help="host index within the mesh")
    worker.add_argument("--host", default=None, help="address to listen on and publish (default: this host's FQDN)")
    worker.add_argument("--port", type=int, default=0, help="TCP port (default: a free port)")
    worker.add_argument("--gpu-sets", default="", help="';'-separated CUDA_VISIBLE_DEVICES values, one per replica")
    return parser


def _configure_logging(verbosity: int) -> None:
    levels = {0: logging.WARNING, 1: logging.INFO}
    level = levels.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except ForgeLauncherError as exc:
        print(f"forge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("forge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (as in 'forge logs JOB | head'); stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] in DELEGATED_COMMANDS:
        import importlib

        module_name, function = DELEGATED_COMMANDS[argv[0]]
        verbosity = sum(1 for a in argv if a == "--verbose") + sum(len(a) - 1 for a in argv if re.fullmatch(r"-v+", a))
        _configure_logging(verbosity)
        return getattr(importlib.import_module(module_name), function)(argv[1:])

    forwarded: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, forwarded = argv[:split], argv[split + 1 :]

    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None or first == "run" or first not in COMMANDS:
        if first == "run":
            argv.remove("run")
        if not argv or argv in (["-h"], ["--help"]):
            _build_run_parser().print_help()
            print("\ncommands: plugins, list, status, logs, cancel, model, setup, umount (forge COMMAND -h for help)")
            return 0 if argv else 2
        args = _build_run_parser().parse_intermixed_args(argv)
        if not os.path.exists(args.config) and "." not in os.path.basename(args.config) and "/" not in args.config:
            known = ", ".join(COMMANDS[1:] + tuple(DELEGATED_COMMANDS))
            print(f"forge: error: {args.config!r} is neither a command nor a config file. Commands: {known}. "
                  f"A config is a path to a .yaml file.", file=sys.stderr)
            return 2
        _configure_logging(args.verbose)
        return _run(args, forwarded)

    if forwarded:
        print(f"forge: error: '--' is only for launching a job, not for 'forge {first}'.", file=sys.stderr)
        return 2
    args = _build_command_parser().parse_args(argv)
    _configure_logging(args.verbose if args.command not in ("bootstrap", "worker") else max(args.verbose, 1))
    handler = {
        "plugins": _plugins,
        "list": _list,
        "status": _status,
        "logs": _logs,
        "cancel": _cancel,
        "bootstrap": _bootstrap,
        "worker": _worker,
    }[args.command]
    return handler(args)


def _run(args: argparse.Namespace, forwarded: list[str]) -> int:
    from forge_launcher.launcher import LaunchRequest, launch
    from forge_launcher.plugins import load_registry

    request = LaunchRequest(args.config, args.overrides, forwarded, print_config=args.cfg, dry_run=args.dry_run)
    return launch(request, load_registry())


def _plugins(args: argparse.Namespace) -> int:
    from forge_launcher.plugins import load_registry

    registry = load_registry()
    for info in registry.describe():
        version = f" {info.version}" if info.version else ""
        print(f"{info.name}  ({info.distribution}{version})")
        print(f"    hooks: {', '.join(info.hooks) or '-'}")
    print(f"backends: {', '.join(sorted(registry.backends)) or '-'}")
    print(f"storage:  {', '.join(sorted(registry.storages)) or '-'}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from forge_launcher import lifecycle

    rows = lifecycle.list_jobs()
    if not rows:
        print("No jobs launched from this machine yet.")
        return 0
    width = max([len("NAME")] + [len(r.name) for r in rows])
    print(f"{'NAME':<{width}}  {'STATE':<10}  {'BACKEND':<8}  HANDLE")
    for status in rows:
        print(f"{status.name:<{width}}  {status.state:<10}  {status.backend:<8}  {status.handle}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from forge_launcher import lifecycle

    status = lifecycle.job_status(args.job)
    print(f"{status.name}: {status.state}")
    if status.handle:
        print(f"  handle: {status.handle}")
    if status.message:
        print(f"  {status.message}")
    if status.ui_url:
        print(f"  ui: {status.ui_url}")
    return 0


def _logs(args: argparse.Namespace) -> int:
    from forge_launcher import lifecycle

    for line in lifecycle.job_logs(args.job, args.role, args.replica, args.follow):
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
        sys.stdout.flush()
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from forge_launcher import lifecycle

    status = lifecycle.cancel_job(args.job)
    print(f"{status.name}: {status.state}")
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    from forge_launcher.bootstrap import run_bootstrap
    from forge_launcher.plugins import load_registry

    return run_bootstrap(args.job_dir.absolute(), load_registry())


def _worker(args: argparse.Namespace) -> int:
    import socket

    from forge_launcher.bootstrap import mount_from_environment
    from forge_launcher.plugins import load_registry
    from forge_launcher.worker import run_worker

    mount_from_environment(load_registry())
    host = args.host or socket.getfqdn()
    gpu_sets = [s for s in args.gpu_sets.split(";")] if args.gpu_sets else []
    code = run_worker(args.job_dir.absolute(), args.mesh, args.replica, host, args.port, gpu_sets)
    return code if code >= 0 else 128 - code
