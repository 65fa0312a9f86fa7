"""Finding the models that a Forge config names.

A key is matched against glob patterns over its dotted path, where ``*``
matches any run of characters including dots: ``*.hf_assets_path`` matches
``trainer.model.hf_assets_path``. The defaults are the keys Forge's GRPO
configs use for the model; ``job.model_keys`` in the config replaces them.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge_launcher.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MODEL_KEYS = ("model", "*.hf_assets_path", "*.initial_load_path", "policy.engine_args.model")
#: The config key that replaces :data:`DEFAULT_MODEL_KEYS`; an empty list turns the check off.
MODEL_KEYS_SETTING = "model_keys"
#: Prefix of a model reference in Forge configs, as in ``hf://Qwen/Qwen3-1.7B``.
HF_URL_PREFIX = "hf://"
# Top-level sections that belong to the launcher, not to the workload.
_LAUNCHER_SECTIONS = {"job", "backend", "storage", "hydra"}
# A repository id as huggingface_hub accepts it: an optional namespace and a name.
_REPO_ID = re.compile(r"^(?:[\w\-.]+/)?[\w\-.]+$")
# Replaces job.name and job.dir while values are resolved, to recognise paths
# inside the job directory, which the job itself creates.
_JOB_SENTINEL = "@forge-job-not-created-yet@"


@dataclass(frozen=True)
class ModelReference:
    """A config value that names a model: a Hub repository or a path."""

    key: str
    value: str
    #: Set when the value names a Hub repository.
    repo_id: str | None = None
    #: Set when the value names a file system path.
    path: Path | None = None


def model_key_patterns(cfg: Any) -> list[str]:
    """Return the key patterns to check: ``job.model_keys`` when set, else the defaults."""
    from omegaconf import OmegaConf

    job = cfg.get("job") or {}
    if MODEL_KEYS_SETTING not in job or job.get(MODEL_KEYS_SETTING) is None:
        return list(DEFAULT_MODEL_KEYS)
    patterns = job.get(MODEL_KEYS_SETTING)
    container = OmegaConf.to_container(patterns, resolve=True) if OmegaConf.is_config(patterns) else patterns
    if not isinstance(container, list) or not all(isinstance(p, str) for p in container):
        raise ConfigError(
            f"job.{MODEL_KEYS_SETTING} must be a list of key patterns such as ['model', '*.hf_assets_path'], "
            f"got {container!r}. Set it to [] to skip the model check."
        )
    return container


def _leaf_keys(container: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    if not isinstance(container, dict):
        return keys
    for key, value in container.items():
        key = str(key)
        if "." in key or (not prefix and key in _LAUNCHER_SECTIONS):
            continue
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            keys.extend(_leaf_keys(value, dotted))
        else:
            keys.append(dotted)
    return keys


def classify(key: str, value: str) -> ModelReference | None:
    """Return what ``value`` names: a repository, a path, or ``None`` for anything else."""
    value = value.strip()
    if not value:
        return None
    if value.startswith(HF_URL_PREFIX):
        return ModelReference(key, value, repo_id=value[len(HF_URL_PREFIX) :].strip("/"))
    if value.startswith(("/", "~", "./", "../")):
        return ModelReference(key, value, path=Path(os.path.expanduser(value)))
    if os.path.exists(value):
        return ModelReference(key, value, path=Path(value).absolute())
    if _REPO_ID.match(value):
        return ModelReference(key, value, repo_id=value)
    log.debug("%s = %r names neither a repository nor a path; not checked", key, value)
    return None


def find_model_references(cfg: Any, patterns: list[str]) -> list[ModelReference]:
    """Return the model references in ``cfg`` under keys that match ``patterns``.

    Values are resolved one by one. A value that cannot be resolved here (a
    resolver the workload registers, for example) is skipped with a warning,
    and so is a path inside the job directory, which does not exist before the
    job runs.
    """
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    if not patterns:
        return []
    probe = copy.deepcopy(cfg)
    with open_dict(probe):
        probe.job.name = _JOB_SENTINEL
        probe.job.dir = _JOB_SENTINEL

    references: list[ModelReference] = []
    for key in _leaf_keys(OmegaConf.to_container(probe, resolve=False)):
        if not any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns):
            continue
        try:
            value = OmegaConf.select(probe, key, throw_on_resolution_failure=True)
        except OmegaConfBaseException as exc:
            log.warning("failed to resolve %s, so the model it names is not checked: %s", key, str(exc).splitlines()[0])
            continue
        if not isinstance(value, str):
            continue
        if _JOB_SENTINEL in value:
            log.debug("%s = %r is inside the job directory; not checked", key, value)
            continue
        reference = classify(key, value)
        if reference is not None:
            references.append(reference)
    return references
