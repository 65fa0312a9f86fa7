"""Loading plugins and finding the one that owns a backend or storage name."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pluggy

from forge_launcher import hookspecs
from forge_launcher.errors import PluginError, UserError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "forge_launcher.plugins"


@dataclass(frozen=True)
class BackendSpec:
    """A backend a plugin provides, and what it can do."""

    #: Name used in ``+backend=NAME``; must match ``backend/NAME.yaml``.
    name: str
    #: One-line description shown by ``forge plugins``.
    description: str = ""
    #: The job can run a client role inside the cluster (``detached=true``).
    supports_detached: bool = True
    #: Mode used when the config leaves ``detached`` unset.
    default_detached: bool = False
    #: ``forge logs -f`` follows a running job without waiting for it to end.
    streams_logs: bool = True
    #: The backend gives each GPU process its own device set.
    assigns_gpus: bool = False
    #: The client role runs on a host with GPUs. When it does not, each GPU
    #: actor without ``hosts`` gets a one-host mesh of its own.
    client_has_gpus: bool = True
    #: Maximum length of a job name that the scheduler accepts.
    max_job_name_length: int = 64


@dataclass(frozen=True)
class StorageSpec:
    """A storage kind a plugin provides."""

    #: Name used in ``+storage=NAME``; must match ``storage/NAME.yaml``.
    name: str
    description: str = ""


@dataclass
class PluginInfo:
    """One loaded plugin, as ``forge plugins`` shows it."""

    name: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)


class PluginRegistry:
    """The plugin manager plus the backend and storage names each plugin owns."""

    def __init__(self, pm: pluggy.PluginManager, distributions: dict[int, tuple[str, str]] | None = None) -> None:
        self.pm = pm
        # id(plugin) -> (distribution name, version), for plugins loaded from entry points.
        self._distributions = distributions or {}
        self.backends: dict[str, BackendSpec] = {}
        self.storages: dict[str, StorageSpec] = {}
        self._owners: dict[tuple[str, str], object] = {}
        self._collect("backend", "forge_launcher_backends", self.backends)
        self._collect("storage", "forge_launcher_storages", self.storages)

    def _collect(self, kind: str, hook_name: str, table: dict[str, Any]) -> None:
        # Each implementation is called on its own so every name maps to the
        # plugin object that declared it.
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            for spec in impl.function() or []:
                key = (kind, spec.name)
                previous = self._owners.get(key)
                if previous is not None:
                    first = "%s (%s)" % (self.pm.get_name(previous), self.distribution_of(previous)[0])
                    second = "%s (%s)" % (impl.plugin_name, self.distribution_of(impl.plugin)[0])
                    raise PluginError(
                        f"Two plugins declare the {kind} {spec.name!r}: {first} and {second}. "
                        f"Uninstall one of the two distributions."
                    )
                self._owners[key] = impl.plugin
                table[spec.name] = spec

    def distribution_of(self, plugin: object) -> tuple[str, str]:
        """Return ``(name, version)`` of the distribution that provides ``plugin``."""
        return self._distributions.get(id(plugin), ("<registered in code>", ""))

    def backend(self, name: str) -> BackendSpec:
        """Return the spec of backend ``name`` or raise a user error listing the known ones."""
        if name not in self.backends:
            raise UserError(
                f"Unknown backend {name!r}. Available backends: {', '.join(sorted(self.backends))}. "
                f"Select one with +backend=NAME, or install the plugin that provides {name!r}."
            )
        return self.backends[name]

    def storage(self, name: str) -> StorageSpec:
        """Return the spec of storage ``name`` or raise a user error listing the known ones."""
        if name not in self.storages:
            raise UserError(
                f"Unknown storage {name!r}. Available storage: {', '.join(sorted(self.storages))}. "
                f"Select one with +storage=NAME, or install the plugin that provides {name!r}."
            )
        return self.storages[name]

    def backend_hooks(self, name: str) -> Any:
        """Return a hook relay that calls only the plugin owning backend ``name``."""
        self.backend(name)
        return self._owner_hooks(self._owners[("backend", name)])

    def storage_hooks(self, name: str) -> Any:
        """Return a hook relay that calls only the plugin owning storage ``name``."""
        self.storage(name)
        return self._owner_hooks(self._owners[("storage", name)])

    def _owner_hooks(self, owner: object) -> Any:
        others = [p for p in self.pm.get_plugins() if p is not owner]
        return _OwnerRelay(self.pm, others)

    def describe(self) -> list[PluginInfo]:
        """Return every loaded plugin with its distribution and implemented hooks."""
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None or plugin is hookspecs:
                continue
            distribution, version = self.distribution_of(plugin)
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            infos.append(PluginInfo(name, distribution, version, hooks))
        return infos


class _OwnerRelay:
    """Attribute access like ``pm.hook`` but restricted to one plugin."""

    def __init__(self, pm: pluggy.PluginManager, removed: list[object]) -> None:
        self._pm = pm
        self._removed = removed

    def __getattr__(self, hook_name: str) -> Any:
        return self._pm.subset_hook_caller(hook_name, remove_plugins=self._removed)


def create_plugin_manager() -> pluggy.PluginManager:
    """Create a plugin manager with the hookspecs added and no plugin registered."""
    pm = pluggy.PluginManager("forge_launcher")
    pm.add_hookspecs(hookspecs)
    return pm


def load_entry_points(pm: pluggy.PluginManager) -> dict[int, tuple[str, str]]:
    """Register every plugin of the entry-point group and return their distributions by ``id``."""
    # pluggy's own load_setuptools_entrypoints skips an entry point whose name
    # is already registered, which would hide a conflict between two
    # distributions. This loader reports it instead.
    from importlib.metadata import entry_points

    registered_by: dict[str, str] = {}
    distributions: dict[int, tuple[str, str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist_name = ep.dist.name if ep.dist is not None else "<unknown>"
        if ep.name in registered_by:
            raise PluginError(
                f"Two distributions register the plugin name {ep.name!r} in the entry-point group "
                f"{ENTRY_POINT_GROUP!r}: {registered_by[ep.name]} and {dist_name}. "
                f"Uninstall one of them or rename its entry point."
            )
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"Failed to load plugin {ep.name!r} ({ep.value}) from distribution {dist_name}: {exc}. "
                f"Reinstall or uninstall that distribution."
            ) from exc
        pm.register(plugin, name=ep.name)
        registered_by[ep.name] = dist_name
        distributions[id(plugin)] = (dist_name, ep.dist.version if ep.dist is not None else "")
    return distributions


def load_registry(extra_plugins: list[object] | None = None) -> PluginRegistry:
    """Load every installed plugin, register ``extra_plugins``, and index their names."""
    pm = create_plugin_manager()
    distributions = load_entry_points(pm)
    for plugin in extra_plugins or []:
        pm.register(plugin)
    log.debug("loaded plugins: %s", [name for name, _ in pm.list_name_plugin()])
    return PluginRegistry(pm, distributions)
