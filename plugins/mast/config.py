"""The ``backend`` section of a MAST job, checked and turned into a dataclass.

Every field is documented in ``conf/backend/mast.yaml``. Errors name the key
as it is written on the command line (``backend.sku``) and give the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forge_launcher.errors import ConfigError


@dataclass(frozen=True)
class HostResources:
    """CPU, GPU and memory of one host, for a SKU that TorchX has no named resource for."""

    cpu: int
    gpu: int
    #: Memory in MiB.
    memMB: int


@dataclass(frozen=True)
class ClientHost:
    """Host of the client role in detached mode."""

    #: Host type; ``None`` means a CPU-only host sized by ``cpu`` and ``memMB``.
    sku: str | None
    cpu: int
    memMB: int


@dataclass(frozen=True)
class MastConfig:
    """Settings of the MAST backend, read from the resolved ``backend`` section."""

    scheduler: str
    #: TorchX run options, with null values left out.
    scheduler_args: dict[str, Any]
    sku: str
    host: HostResources
    capabilities: dict[str, Any]
    client: ClientHost
    client_command: list[str]
    worker_command: list[str]
    worker_port: int
    provision_timeout: float
    idle_timeout: int
    extra_packages: list[str]
    network_affinity: dict[str, Any]
    image: str
    workspace: str | None
    remote_workspace: str
    app_metadata: dict[str, Any]
    env: dict[str, str]


KNOWN_KEYS = frozenset({"name", *MastConfig.__dataclass_fields__})


def _require_mapping(section: dict[str, Any], key: str) -> dict[str, Any]:
    value = section.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"backend.{key} must be a mapping, got {value!r}. Fix it in conf/backend/mast.yaml or override backend.{key}.KEY=VALUE.")
    return value


def _require_int(section: dict[str, Any], key: str, label: str, minimum: int) -> int:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{label} must be an integer >= {minimum}, got {value!r}. Set it with {label}=N.")
    return value


def _require_text(section: dict[str, Any], key: str, label: str, hint: str) -> str:
    value = section.get(key)
    if value is None or not isinstance(value, str) or not value.strip() or value == "???":
        raise ConfigError(f"{label} is empty or missing (got {value!r}). {hint}")
    return value.strip()


def _require_command(section: dict[str, Any], key: str) -> list[str]:
    value = section.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(part, (str, int, float)) for part in value):
        raise ConfigError(
            f"backend.{key} must be a non-empty list of strings, got {value!r}. "
            f"Set it like backend.{key}='[python,-m,forge_launcher]'."
        )
    return [str(part) for part in value]


def _read_port(section: dict[str, Any]) -> int:
    port = _require_int(section, "worker_port", "backend.worker_port", 1)
    if port > 65535:
        raise ConfigError(f"backend.worker_port must be a TCP port from 1 to 65535, got {port}. Set it with backend.worker_port=N.")
    return port


def _read_host(section: dict[str, Any]) -> HostResources:
    host = _require_mapping(section, "host")
    return HostResources(
        cpu=_require_int(host, "cpu", "backend.host.cpu", 1),
        gpu=_require_int(host, "gpu", "backend.host.gpu", 0),
        memMB=_require_int(host, "memMB", "backend.host.memMB", 1),
    )


def _read_client(section: dict[str, Any]) -> ClientHost:
    client = _require_mapping(section, "client")
    sku = client.get("sku")
    if sku is not None and (not isinstance(sku, str) or not sku.strip()):
        raise ConfigError(f"backend.client.sku must be a host type name or null, got {sku!r}.")
    return ClientHost(
        sku=sku.strip() if sku else None,
        cpu=_require_int(client, "cpu", "backend.client.cpu", 1),
        memMB=_require_int(client, "memMB", "backend.client.memMB", 1),
    )


def _read_env(section: dict[str, Any]) -> dict[str, str]:
    env = _require_mapping(section, "env")
    for name, value in env.items():
        if isinstance(value, (dict, list)):
            raise ConfigError(f"backend.env.{name} must be a string, got a {type(value).__name__}.")
    return {str(name): "" if value is None else str(value) for name, value in env.items()}


def _read_packages(section: dict[str, Any]) -> list[str]:
    packages = section.get("extra_packages") or []
    if not isinstance(packages, list) or not all(isinstance(p, str) and p.strip() for p in packages):
        raise ConfigError(f"backend.extra_packages must be a list of package names, got {packages!r}.")
    return list(packages)


def read_config(section: dict[str, Any]) -> MastConfig:
    """Check the resolved ``backend`` section and return it as a :class:`MastConfig`.

    Raises :class:`ConfigError` naming the first invalid or unknown key.
    """
    unknown = sorted(set(section) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(
            f"Unknown key(s) in the MAST backend config: {', '.join('backend.' + k for k in unknown)}. "
            f"Known keys: {', '.join(sorted(KNOWN_KEYS))}. Check the spelling or remove them."
        )

    scheduler = _require_text(section, "scheduler", "backend.scheduler", "Name the TorchX scheduler with backend.scheduler=NAME (default mast_conda).")
    scheduler_args = {str(k): v for k, v in _require_mapping(section, "scheduler_args").items() if v is not None}
    sku = _require_text(
        section, "sku", "backend.sku",
        "The SKU is the host type of the worker hosts; set it with backend.sku=NAME.",
    )
    workspace = section.get("workspace")
    if workspace is not None and (not isinstance(workspace, str) or not workspace.strip()):
        raise ConfigError(f"backend.workspace must be a directory path or null, got {workspace!r}.")
    image = section.get("image")
    if image is None:
        image = ""
    if not isinstance(image, str):
        raise ConfigError(f"backend.image must be a string, got {image!r}.")
    remote_workspace = section.get("remote_workspace") or ""
    if not isinstance(remote_workspace, str):
        raise ConfigError(f"backend.remote_workspace must be a directory path, got {remote_workspace!r}.")
    provision_timeout = section.get("provision_timeout")
    if isinstance(provision_timeout, bool) or not isinstance(provision_timeout, (int, float)) or provision_timeout <= 0:
        raise ConfigError(f"backend.provision_timeout must be a number of seconds > 0, got {provision_timeout!r}.")

    return MastConfig(
        scheduler=scheduler,
        scheduler_args=scheduler_args,
        sku=sku,
        host=_read_host(section),
        capabilities=_require_mapping(section, "capabilities"),
        client=_read_client(section),
        client_command=_require_command(section, "client_command"),
        worker_command=_require_command(section, "worker_command"),
        worker_port=_read_port(section),
        provision_timeout=float(provision_timeout),
        idle_timeout=_require_int(section, "idle_timeout", "backend.idle_timeout", 1),
        extra_packages=_read_packages(section),
        network_affinity=_require_mapping(section, "network_affinity"),
        image=image,
        workspace=workspace,
        remote_workspace=remote_workspace,
        app_metadata=_require_mapping(section, "app_metadata"),
        env=_read_env(section),
    )
