"""``forge setup`` and ``forge umount``: prepare this machine's environment and storage.

Both take Hydra overrides for the storage group only (``+storage=oilfs
storage.workspace=...``), so no job config is needed. ``forge setup`` may also
take a job config, and then checks that its workload is importable.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge_launcher.config import (
    DEFAULT_STORAGE,
    compose,
    config_dirs,
    normalize_override,
    quote_value,
    resolve_section,
    split_selection,
)
from forge_launcher.errors import ConfigError, ForgeLauncherError, UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from forge_launcher.plugins import PluginRegistry

log = logging.getLogger(__name__)

MIN_PYTHON = (3, 10)
#: Modules reported when missing, without failing setup: (module, what needs it, fix).
OPTIONAL_MODULES = (("monarch", "worker meshes", "pip install 'forge-launcher[monarch]'"),)


# -- composing the storage section ----------------------------------------------


def compose_storage(overrides: list[str], registry: PluginRegistry) -> tuple[str, dict[str, Any]]:
    """Compose only the ``storage`` group with ``overrides``; return its name and resolved section."""
    from omegaconf import OmegaConf

    selection = split_selection(overrides)
    storage = selection.storage or DEFAULT_STORAGE
    registry.storage(storage)
    for override in selection.overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if not key.startswith("storage."):
            raise UserError(
                f"Override {override!r} does not set the storage section. Without a job config, only "
                f"storage.KEY=VALUE overrides apply; give the job config first to check a whole job."
            )

    searchpath = "hydra.searchpath=[" + ",".join(quote_value("file://" + d) for d in config_dirs(registry)) + "]"
    hydra_overrides = [searchpath, f"+storage={storage}", *(normalize_override(o) for o in selection.overrides)]
    cfg = _compose_without_primary(hydra_overrides)
    if "storage" not in cfg or not OmegaConf.is_dict(cfg.storage):
        raise ConfigError(f"Storage {storage!r} has no config group file storage/{storage}.yaml in {config_dirs(registry)}.")
    return storage, resolve_section(cfg, "storage")


def _compose_without_primary(overrides: list[str]) -> DictConfig:
    from importlib.resources import files

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(files("forge_launcher.conf")), version_base=None, job_name="forge"):
            return hydra_compose(config_name=None, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        message = str(exc).strip().replace("\n", " ")
        raise ConfigError(f"Failed to compose the storage config: {message}") from exc


def _is_job_config(argument: str) -> bool:
    return "=" not in argument and argument.endswith((".yaml", ".yml"))


def _load_storage(arguments: list[str], registry: PluginRegistry) -> tuple[str, dict[str, Any], DictConfig | None]:
    if arguments and _is_job_config(arguments[0]):
        cfg = compose(arguments[0], arguments[1:], registry)
        return str(cfg.storage.name), resolve_section(cfg, "storage"), cfg
    name, section = compose_storage(arguments, registry)
    return name, section, None


# -- forge setup -----------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """The outcome of one setup check, as printed."""

    label: str
    ok: bool
    detail: str
    #: What to do when the check failed.
    fix: str = ""
    #: Whether a failure makes ``forge setup`` exit non-zero.
    required: bool = True

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "failed" if self.required else "warning"


def check_python() -> Check:
    version = ".".join(str(part) for part in sys.version_info[:3])
    ok = sys.version_info[:2] >= MIN_PYTHON
    minimum = ".".join(str(part) for part in MIN_PYTHON)
    return Check("python", ok, f"{version} at {sys.executable}", fix=f"Use Python {minimum} or newer.")


def check_launcher() -> Check:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("forge-launcher")
    except PackageNotFoundError:
        return Check("forge-launcher", False, "not installed in this environment", fix="Install it with pip install forge-launcher.")
    return Check("forge-launcher", True, f"{installed} at {Path(__file__).parent}")


def check_plugins(registry: PluginRegistry) -> Check:
    detail = f"backends: {', '.join(sorted(registry.backends))}; storage: {', '.join(sorted(registry.storages))}"
    return Check("plugins", True, detail)


def check_module(module: str, needed_for: str, fix: str, required: bool) -> Check:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError) as exc:
        return Check(f"module {module}", False, f"cannot be found: {exc}", fix=fix, required=required)
    if not found:
        return Check(f"module {module}", False, f"not importable, needed for {needed_for}", fix=fix, required=required)
    return Check(f"module {module}", True, f"importable ({needed_for})", required=required)


def check_workload(cfg: DictConfig, config: str) -> Check:
    from forge_launcher.job import read_entrypoint

    try:
        script, module = read_entrypoint(cfg)
    except ConfigError as exc:
        return Check("workload", False, str(exc), fix=f"Fix job.script or job.module in {config}.")
    if module:
        return check_module(module, f"the workload of {config}", fix="Install the workload's package in this environment.", required=True)
    return Check("workload", True, f"script {script}")


def check_storage(name: str, section: dict[str, Any], registry: PluginRegistry, mount: bool) -> Check:
    """Mount the storage (``mount=True``) or only report its state.

    Raises :class:`ConfigError` for an invalid setting, so that ``forge setup``
    exits 2 as ``forge umount`` does, rather than reporting a failed check.
    """
    from forge_launcher.mounts import MountError, MountState, probe_mount, read_mount_point

    label = f"storage {name}"
    mount_point = None
    before = None
    if "mount_point" in section:
        mount_point = read_mount_point(section["mount_point"], "storage.mount_point", example=f"/mnt/{name}")
        try:
            before = probe_mount(mount_point).state
        except MountError as exc:
            return Check(label, False, str(exc), fix=f"Run 'forge umount +storage={name}' and then 'forge setup +storage={name}'.")

    if not mount:
        return _report_storage(name, section, mount_point, before)

    try:
        root = registry.storage_hooks(name).forge_launcher_mount(storage=section)
    except ConfigError:
        raise
    except ForgeLauncherError as exc:
        return Check(label, False, str(exc))
    if mount_point is None:
        return Check(label, True, f"root {root}")
    if before is MountState.LIVE:
        return Check(label, True, f"already mounted at {mount_point}, root {root}")
    if before is MountState.STALE:
        return Check(label, True, f"stale mount at {mount_point} replaced by a new one, root {root}")
    return Check(label, True, f"mounted at {mount_point}, root {root}")


def _report_storage(name: str, section: dict[str, Any], mount_point: str | None, state: Any) -> Check:
    from forge_launcher.mounts import MountState

    label = f"storage {name}"
    fix = f"Run 'forge setup +storage={name}' without --check to mount it."
    if state is MountState.LIVE:
        return Check(label, True, f"mounted at {mount_point}")
    if state is MountState.STALE:
        return Check(label, False, f"stale mount at {mount_point} (its FUSE daemon is gone)", fix=fix)
    if state is MountState.NOT_MOUNTED:
        return Check(label, False, f"not mounted at {mount_point}", fix=fix)

    root = Path(str(section.get("root") or ""))
    if root.is_dir():
        return Check(label, True, f"root {root} exists")
    return Check(label, False, f"root {str(root)!r} does not exist", fix=f"Run 'forge setup +storage={name}' without --check to create it.")


def run_checks(arguments: list[str], modules: list[str], mount: bool) -> list[Check]:
    """Run every setup check in order and return the results."""
    from forge_launcher.plugins import load_registry

    checks = [check_python(), check_launcher()]
    registry = load_registry()
    checks.append(check_plugins(registry))

    name, section, cfg = _load_storage(arguments, registry)
    if cfg is not None:
        checks.append(check_workload(cfg, arguments[0]))
    for module in modules:
        checks.append(check_module(module, "this setup (--module)", fix=f"Install the package that provides {module!r}.", required=True))
    for module, needed_for, fix in OPTIONAL_MODULES:
        checks.append(check_module(module, needed_for, fix=f"Install it with {fix}.", required=False))

    checks.append(check_storage(name, section, registry, mount))
    return checks


def _build_setup_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forge setup",
        description="Check this Python environment and mount the configured storage. "
        "Each check prints ok, failed or warning; the exit status is 1 if a required check failed, "
        "and 2 for an invalid override or storage setting.",
    )
    parser.add_argument(
        "arguments", nargs="*", metavar="[CONFIG.yaml] OVERRIDE",
        help="an optional job config whose workload is checked, then overrides such as +storage=oilfs storage.workspace=ws://HOST/NAME",
    )
    parser.add_argument("--check", action="store_true", help="only report; mount and create nothing")
    parser.add_argument("--module", action="append", default=[], help="a module that must be importable (repeatable)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    return parser


def setup_main(argv: list[str]) -> int:
    """Run ``forge setup`` and return its exit code: 0, or 1 when a required check failed.

    An invalid setting raises :class:`ConfigError`, which the CLI reports with exit code 2.
    """
    args = _build_setup_parser().parse_intermixed_args(argv)
    checks = run_checks(args.arguments, args.module, mount=not args.check)

    width = max(len(check.label) for check in checks)
    for check in checks:
        print(f"{check.status:<8} {check.label:<{width}}  {check.detail}")
        if not check.ok and check.fix:
            print(f"{'':<8} {'':<{width}}  fix: {check.fix}")

    failed = [check.label for check in checks if check.required and not check.ok]
    if failed:
        print(f"forge setup: {len(failed)} required check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# -- forge umount ----------------------------------------------------------------


def _build_umount_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forge umount", description="Unmount the configured storage on this host.")
    parser.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="overrides such as +storage=oilfs storage.mount_point=/mnt/wsfuse")
    parser.add_argument("--lazy", action="store_true", help="detach the mount even while processes use it (umount -l)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    return parser


def umount_main(argv: list[str]) -> int:
    """Run ``forge umount`` and return 0 whether or not anything was mounted."""
    from forge_launcher.plugins import load_registry

    args = _build_umount_parser().parse_intermixed_args(argv)
    registry = load_registry()
    name, section = compose_storage(args.overrides, registry)
    if args.lazy:
        section["lazy_unmount"] = True

    released = registry.storage_hooks(name).forge_launcher_unmount(storage=section)
    where = section.get("mount_point") or section.get("root")
    if released:
        print(f"Unmounted storage {name} at {where}.")
    else:
        print(f"Nothing to unmount for storage {name} at {where}.")
    return 0

