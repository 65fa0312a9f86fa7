"""The backend-neutral job model built from a composed Forge config."""

from __future__ import annotations

import os
import re
import secrets as random_source
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge_launcher.errors import ConfigError, UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from forge_launcher.plugins import BackendSpec

JOB_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MAX_JOB_NAME_LENGTH = 64
RUNS_DIR = "forge_runs"
SAVED_CONFIG = "config.yaml"
SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class Mesh:
    """A group of worker hosts that the client attaches to as one Monarch host mesh."""

    #: Mesh and TorchX role name: ``<service>_<i>`` or ``<actor>``.
    name: str
    #: Number of hosts, the TorchX role's replica count.
    hosts: int
    #: Processes per host that the workload spawns on this mesh.
    procs: int
    with_gpus: bool
    #: Config path of the entry this mesh comes from, such as ``services.policy``.
    source: str

    @property
    def gpus_per_host(self) -> int:
        return self.procs if self.with_gpus else 0


@dataclass
class Job:
    """Everything a backend needs to run one job, with the config left unresolved."""

    name: str
    dir: Path
    config_path: Path
    backend: str
    storage: str
    detached: bool
    meshes: list[Mesh]
    #: GPUs the client's host needs for GPU entries that run inside the client.
    client_gpus: int
    script: str | None
    module: str | None
    args: list[str]
    env: dict[str, str]
    backend_config: dict[str, Any]
    storage_config: dict[str, Any]
    config: Any = field(default=None, repr=False)
    #: Variables only the client process gets, on top of ``env``. A backend
    #: sets ``CUDA_VISIBLE_DEVICES`` here when it assigns GPUs.
    client_env: dict[str, str] = field(default_factory=dict)

    @property
    def saved_config(self) -> Path:
        return self.dir / SAVED_CONFIG


def _integer_field(entry: Any, key: str, source: str, default: int, minimum: int) -> int:
    from omegaconf.errors import OmegaConfBaseException

    try:
        value = entry.get(key, default)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"Cannot resolve {source}.{key}: {exc}".replace("\n", " ")) from exc
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{source}.{key} must be an integer >= {minimum}, got {value!r}. Fix it in the config or override it with {source}.{key}=N.")
    if value < minimum:
        raise ConfigError(f"{source}.{key} must be >= {minimum}, got {value}. Fix it in the config or override it with {source}.{key}=N.")
    return value


def _bool_field(entry: Any, key: str, source: str) -> bool:
    value = entry.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigError(f"{source}.{key} must be true or false, got {value!r}.")
    return value


def derive_meshes(cfg: DictConfig, client_has_gpus: bool) -> tuple[list[Mesh], int]:
    """Derive worker meshes from ``services:`` and ``actors:``, and the GPUs left to the client.

    An entry with ``hosts > 0`` is placed on worker hosts: a service becomes
    ``num_replicas`` meshes ``<name>_<i>``, an actor one mesh ``<name>``. When
    the client has no GPUs, a GPU actor without hosts gets a one-host mesh.
    Everything else runs inside the client's host.
    """
    from omegaconf import OmegaConf

    meshes: list[Mesh] = []
    client_gpus = 0
    for section in ("services", "actors"):
        entries = cfg.get(section)
        if entries is None:
            continue
        if not OmegaConf.is_dict(entries):
            raise ConfigError(f"'{section}' must be a mapping of names to settings, got {OmegaConf.to_yaml(entries).strip()!r}.")
        for key in entries:
            source = f"{section}.{key}"
            entry = entries[key]
            if entry is None:
                entry = OmegaConf.create({})
            if not OmegaConf.is_dict(entry):
                raise ConfigError(f"{source} must be a mapping with procs, hosts and with_gpus, got {entry!r}.")
            procs = _integer_field(entry, "procs", source, default=1, minimum=1)
            hosts = _integer_field(entry, "hosts", source, default=0, minimum=0)
            replicas = _integer_field(entry, "num_replicas", source, default=1, minimum=1) if section == "services" else 1
            with_gpus = _bool_field(entry, "with_gpus", source)
            base = str(entry.get("mesh_name") or key)

            if hosts == 0 and with_gpus and section == "actors" and not client_has_gpus:
                hosts = 1
            if hosts == 0:
                client_gpus += procs * replicas if with_gpus else 0
                continue
            if section == "services":
                meshes.extend(Mesh(f"{base}_{i}", hosts, procs, with_gpus, source) for i in range(replicas))
            else:
                meshes.append(Mesh(base, hosts, procs, with_gpus, source))

    seen: dict[str, str] = {}
    for mesh in meshes:
        if not JOB_NAME_PATTERN.match(mesh.name):
            raise ConfigError(
                f"Mesh name {mesh.name!r} (from {mesh.source}) is not a valid role name: use lowercase letters, "
                f"digits, '-' and '_', starting with a letter or digit. Set {mesh.source}.mesh_name to rename it."
            )
        if mesh.name in seen:
            raise ConfigError(f"Mesh name {mesh.name!r} is used by both {seen[mesh.name]} and {mesh.source}. Set mesh_name on one of them.")
        seen[mesh.name] = mesh.source
    return meshes, client_gpus


def validate_job_name(name: str, max_length: int = MAX_JOB_NAME_LENGTH) -> str:
    """Return ``name`` if it is a valid job name, else raise a :class:`UserError` saying why."""
    if not name:
        raise UserError("Job name is empty. Give one with job.name=NAME or leave it unset.")
    if "/" in name or ".." in name or "\\" in name:
        raise UserError(f"Invalid job name {name!r}: it must not contain '/', '\\' or '..'. Use lowercase letters, digits, '-' and '_'.")
    if len(name) > max_length:
        raise UserError(f"Job name {name!r} is {len(name)} characters long; the maximum is {max_length}. Choose a shorter job.name.")
    if not JOB_NAME_PATTERN.match(name):
        raise UserError(f"Invalid job name {name!r}: use lowercase letters, digits, '-' and '_', starting with a letter or digit.")
    return name


def generate_job_name(config_path: Path, max_length: int = MAX_JOB_NAME_LENGTH) -> str:
    """Return ``<config stem>-<6 random [a-z0-9]>``, with the stem made a valid name."""
    stem = re.sub(r"[^a-z0-9_-]+", "-", config_path.stem.lower()).strip("-_") or "job"
    suffix = "".join(random_source.choice(SUFFIX_ALPHABET) for _ in range(6))
    stem = stem[: max_length - len(suffix) - 1]
    return f"{stem}-{suffix}"


def create_job_dir(storage_root: Path, name: str) -> Path:
    """Create ``<storage root>/forge_runs/<name>`` exclusively; an existing one is an error."""
    runs = storage_root / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    job_dir = runs / name
    try:
        job_dir.mkdir()
    except FileExistsError as exc:
        raise UserError(f"Job directory {str(job_dir)!r} already exists. Choose another job.name or leave it unset.") from exc
    return job_dir


def allocate_job_dir(storage_root: Path, config_path: Path, requested: str | None, max_length: int) -> tuple[str, Path]:
    """Pick the job name and create its directory, retrying generated names on a clash."""
    if requested:
        name = validate_job_name(requested, max_length)
        return name, create_job_dir(storage_root, name)

    # 36**6 names per stem: a clash is rare, and mkdir makes the check atomic.
    for _ in range(16):
        name = generate_job_name(config_path, max_length)
        try:
            return name, create_job_dir(storage_root, name)
        except UserError:
            continue
    raise UserError(f"Could not find a free job name under {str(storage_root / RUNS_DIR)!r}. Give one with job.name=NAME.")


ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def job_value(cfg: DictConfig, key: str, kind: str = "value") -> Any:
    """Return ``job.<key>`` resolved to plain data, or raise a :class:`ConfigError` naming it.

    ``kind`` is ``"list"``, ``"mapping"`` or ``"value"`` (a scalar or None).
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        value = cfg.job.get(key)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"Cannot resolve job.{key}: {exc}".replace("\n", " ")) from exc
    if kind == "list" and value is not None and not isinstance(value, list):
        raise ConfigError(f"job.{key} must be a list, got {value!r}. Write it as job.{key}=[a,b] or as a YAML list.")
    if kind == "mapping" and value is not None and not isinstance(value, dict):
        raise ConfigError(f"job.{key} must be a mapping of names to values, got {value!r}.")
    if kind == "value" and isinstance(value, (dict, list)):
        raise ConfigError(f"job.{key} must be a single value, got {value!r}.")
    return value


def read_job_name(cfg: DictConfig) -> str | None:
    """Return ``job.name`` as given, or None; a non-string value is a config error."""
    name = job_value(cfg, "name")
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise ConfigError(f"job.name must be text, got {name!r} ({type(name).__name__}). Quote it: job.name=\"'{name}'\".")
    return name


def read_env(cfg: DictConfig) -> dict[str, str]:
    """Return ``job.env`` as strings, rejecting names and values a process environment cannot hold."""
    env = {}
    for name, value in (job_value(cfg, "env", "mapping") or {}).items():
        name = str(name)
        if not ENV_NAME_PATTERN.match(name):
            raise ConfigError(f"job.env has an invalid variable name {name!r}: use letters, digits and '_', not starting with a digit.")
        if isinstance(value, (dict, list)):
            raise ConfigError(f"job.env.{name} must be a single value, got {value!r}.")
        text = "" if value is None else str(value)
        if "\0" in text:
            raise ConfigError(f"job.env.{name} contains a NUL character, which no environment variable can hold.")
        env[name] = text
    return env


def read_entrypoint(cfg: DictConfig) -> tuple[str | None, str | None]:
    """Return ``(script, module)`` from ``job.script``/``job.module``; exactly one must be set."""
    script = job_value(cfg, "script")
    module = job_value(cfg, "module")
    if bool(script) == bool(module):
        raise ConfigError(
            "Set exactly one of job.script (a Python file) or job.module (a module run with -m) "
            f"to name the workload; got script={script!r}, module={module!r}."
        )
    if script:
        path = Path(os.path.expanduser(str(script)))
        if not path.is_absolute():
            path = Path.cwd() / path
        if path.is_dir():
            raise ConfigError(f"job.script {str(script)!r} is a directory. Give the Python file to run, or use job.module.")
        if not path.is_file():
            raise ConfigError(f"job.script {str(script)!r} not found (looked at {str(path)!r}). Paths are relative to the directory forge runs in.")
        return str(path), None
    return None, str(module)


def build_job(
    cfg: DictConfig,
    config_path: Path,
    backend: BackendSpec,
    storage_name: str,
    storage_config: dict[str, Any],
    backend_config: dict[str, Any],
    forwarded_args: list[str],
) -> Job:
    """Build the :class:`Job` for a composed config; the job directory is not created yet."""

    detached = cfg.get("detached")
    if detached is None:
        detached = backend.default_detached
    if not isinstance(detached, bool):
        raise ConfigError(f"detached must be true or false, got {detached!r}.")
    if detached and not backend.supports_detached:
        raise ConfigError(f"Backend {backend.name!r} does not support detached mode. Set detached=false.")

    client_has_gpus = backend.client_has_gpus or not detached
    meshes, client_gpus = derive_meshes(cfg, client_has_gpus)
    script, module = read_entrypoint(cfg)

    if job_value(cfg, "dir") is not None:
        raise ConfigError("job.dir is set by the launcher to <storage root>/forge_runs/<job name>; remove it from the config and set storage.root or job.name instead.")
    args = [str(a) for a in (job_value(cfg, "args", "list") or [])] + list(forwarded_args)
    env = read_env(cfg)
    return Job(
        name="",
        dir=Path(),
        config_path=config_path,
        backend=backend.name,
        storage=storage_name,
        detached=detached,
        meshes=meshes,
        client_gpus=client_gpus,
        script=script,
        module=module,
        args=args,
        env=env,
        backend_config=backend_config,
        storage_config=storage_config,
        config=cfg,
    )
