"""Composing a Forge job config with Hydra and the launcher's config groups.

The Forge YAML is the primary config. The launcher adds its groups
(``backend/``, ``storage/``) through ``hydra.searchpath`` and selects one of
each with ``+backend=NAME`` and ``+storage=NAME``. The default backend is
chosen here, not in a defaults list, because a defaults list entry would make
``+backend=...`` on the command line fail with "Multiple values for backend".
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge_launcher.errors import ConfigError, UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from forge_launcher.plugins import PluginRegistry

log = logging.getLogger(__name__)

DEFAULT_BACKEND = "local"
DEFAULT_STORAGE = "local"

# Top-level keys that belong to the launcher. Overrides of these keys are
# applied with Hydra's ``++`` (add or replace) because the Forge YAML usually
# does not define them.
LAUNCHER_KEYS = ("job", "detached")

_SELECTION = re.compile(r"^(?P<prefix>\+{0,2})(?P<group>backend|storage)=(?P<value>.*)$")


@dataclass
class Selection:
    """Command-line overrides split into the group choices and everything else."""

    backend: str | None = None
    storage: str | None = None
    overrides: list[str] = field(default_factory=list)


def split_selection(overrides: list[str]) -> Selection:
    """Pull ``backend=``/``storage=`` choices (with or without ``+``) out of ``overrides``."""
    selection = Selection()
    for override in overrides:
        match = _SELECTION.match(override)
        if match is None:
            selection.overrides.append(override)
            continue
        value = match.group("value").strip("'\"")
        if not value:
            raise UserError(f"Empty {match.group('group')} selection in {override!r}. Write +{match.group('group')}=NAME.")
        setattr(selection, match.group("group"), value)
    return selection


def quote_value(value: str) -> str:
    """Quote ``value`` as a Hydra string literal so it is read verbatim."""
    escaped = re.sub(r"(\\*)(')", lambda m: m.group(1) * 2 + "\\'", value)
    # Backslashes at the end would escape the closing quote.
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


def normalize_override(override: str) -> str:
    """Rewrite one ``key=value`` override so Hydra reads it the way a user means it.

    * A value that Hydra's grammar rejects or would read as a sweep
      (``run/epoch=3-step=900.ckpt``, ``a,b c``) is quoted, so it reaches the
      workload verbatim. One launch never sweeps.
    * A launcher key (``job.*``, ``detached``) is set with ``++`` because the
      Forge YAML need not define it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if "=" not in override:
        if override.startswith("~"):
            return override
        raise UserError(
            f"Invalid override {override!r}: expected KEY=VALUE, +KEY=VALUE or ~KEY. "
            f"Arguments for the workload go after '--'."
        )

    key, value = override.split("=", 1)
    if not key.lstrip("+~"):
        raise UserError(f"Invalid override {override!r}: the key before '=' is empty. Write KEY=VALUE, for example steps=10.")
    if key.lstrip("+") == "job.dir":
        raise UserError("job.dir is set by the launcher to <storage root>/forge_runs/<job name>. Set storage.root or job.name instead.")
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_override(override)
        needs_quotes = parsed.is_sweep_override()
        if needs_quotes and not parsed.value().simple_form:  # type: ignore[union-attr]
            raise UserError(
                f"Override {override!r} is a sweep. forge launches one job, so give one value, "
                f"or quote it to pass the text as it is: {key}={quote_value(value)}"
            )
    except HydraException:
        needs_quotes = True
    if needs_quotes:
        value = quote_value(value)
        try:
            parser.parse_override(f"{key}={value}")
        except HydraException as exc:
            raise UserError(f"Invalid override {override!r}: {exc}. Check the key, for example trainer.lr=0.1.") from exc

    bare_key = key.lstrip("+~")
    if bare_key.split(".")[0] in LAUNCHER_KEYS and not key.startswith("~"):
        key = "++" + bare_key
    return f"{key}={value}"


def _unique_key_loader() -> type:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """A SafeLoader that rejects a key repeated in one mapping, as OmegaConf does."""

        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"found duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_yaml_file(path: Path) -> Any:
    """Parse a YAML file, turning a syntax error into a :class:`ConfigError` with file and line."""
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {str(path)!r}: {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Config file {str(path)!r} is not UTF-8 text (byte {exc.start}). Give the path of a YAML file.") from exc
    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"YAML syntax error in {where}: {exc.problem or exc}. Fix the file and run again.") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"Invalid YAML in {str(path)!r}: {exc}.") from exc


def resolve_config_path(config: str) -> Path:
    """Return the absolute path of the job config, relative to the current directory."""
    path = Path(config).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.exists():
        raise ConfigError(f"Config file {config!r} not found (looked at {str(path)!r}). Check the path.")
    if path.is_dir():
        raise ConfigError(f"Config {config!r} is a directory. Give the path of a .yaml file.")
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"Config file {config!r} must end with .yaml or .yml.")
    return path


def config_dirs(registry: PluginRegistry) -> list[str]:
    """Return the config directories: the core's ``conf`` plus every plugin's."""
    from importlib.resources import files

    dirs = [str(files("forge_launcher.conf"))]
    for contributed in registry.pm.hook.forge_launcher_config_dirs():
        dirs.extend(str(d) for d in contributed or [])
    return dirs


def _defaults_groups(primary: Any) -> set[str]:
    """Return the group names that the primary config's defaults list selects."""
    groups: set[str] = set()
    if not isinstance(primary, dict):
        return groups
    for entry in primary.get("defaults") or []:
        if isinstance(entry, dict):
            for key in entry:
                groups.add(str(key).replace("override ", "").strip())
    return groups


def compose(config: str, overrides: list[str], registry: PluginRegistry) -> DictConfig:
    """Compose the job config at path ``config`` with command-line ``overrides``.

    The launcher's own keys are filled afterwards: ``job.name``, ``job.dir``,
    ``job.script``/``job.module``, ``job.args``, ``job.env`` and ``detached``.
    Nothing is resolved, so workload resolvers such as ``${sum:a,b}`` survive.
    """
    path = resolve_config_path(config)
    primary = load_yaml_file(path)
    if primary is None:
        raise ConfigError(f"Config file {str(path)!r} is empty. A job config needs at least job.script or job.module.")
    if not isinstance(primary, dict):
        raise ConfigError(f"Config file {str(path)!r} must contain a mapping at the top level, not {type(primary).__name__}.")

    selection = split_selection(overrides)
    backend = selection.backend or DEFAULT_BACKEND
    storage = selection.storage or DEFAULT_STORAGE
    registry.backend(backend)
    registry.storage(storage)

    in_defaults = _defaults_groups(primary)
    hydra_overrides = ["hydra.searchpath=[" + ",".join(quote_value("file://" + d) for d in config_dirs(registry)) + "]"]
    for group, name, selected in (("backend", backend, selection.backend), ("storage", storage, selection.storage)):
        if group in in_defaults:
            if selected:
                hydra_overrides.append(f"{group}={name}")
        else:
            hydra_overrides.append(f"+{group}={name}")
    hydra_overrides.extend(normalize_override(o) for o in selection.overrides)
    log.debug("hydra overrides: %s", hydra_overrides)

    cfg = _hydra_compose(path, hydra_overrides)
    _fill_launcher_defaults(cfg)
    return cfg


def _hydra_compose(path: Path, overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base=None, job_name="forge"):
            return hydra_compose(config_name=path.name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        cause = exc
        while not str(cause).strip() and cause.__cause__ is not None:
            cause = cause.__cause__
        message = str(cause).strip().replace("\n", " ")
        raise ConfigError(f"Failed to compose {str(path)!r}: {message}") from exc


def _fill_launcher_defaults(cfg: DictConfig) -> None:
    from omegaconf import OmegaConf, open_dict

    with open_dict(cfg):
        if "job" not in cfg or cfg.job is None:
            cfg.job = {}
        if not OmegaConf.is_dict(cfg.job):
            raise ConfigError(f"The top-level key 'job' is reserved for the launcher and must be a mapping, not {cfg.job!r}.")
        for key, default in (("name", None), ("dir", None), ("script", None), ("module", None), ("args", []), ("env", {})):
            if key not in cfg.job:
                cfg.job[key] = default
        if "detached" not in cfg:
            cfg.detached = None


def to_yaml(cfg: DictConfig, masked: bool = True) -> str:
    """Render ``cfg`` as YAML without resolving it, with secret values masked by default."""
    import yaml
    from omegaconf import OmegaConf

    from forge_launcher.secrets import mask_secrets

    container = OmegaConf.to_container(cfg, resolve=False)
    if masked:
        container = mask_secrets(container)
    return yaml.safe_dump(container, sort_keys=False, default_flow_style=False)


def resolve_section(cfg: DictConfig, key: str) -> dict[str, Any]:
    """Resolve one launcher-owned section (``backend``, ``storage``) to plain values."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    node = cfg.get(key)
    if node is None:
        return {}
    try:
        value = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"Cannot resolve the '{key}' section: {exc}".replace("\n", " ")) from exc
    for name, item in list(value.items()):
        if isinstance(item, str) and item and name in ("root", "dir", "path"):
            value[name] = os.path.abspath(os.path.expanduser(item))
    return value
