"""Recognising secret values so they never reach printed output or saved files."""

from __future__ import annotations

import re
from typing import Any

MASK = "****"

# Name segments that mark a secret: HF_TOKEN, WANDB_API_KEY, aws_secret_access_key.
# Segments are compared whole, so ``max_tokens`` or ``monkey`` are not secrets.
_SECRET_SEGMENTS = {"token", "key", "secret", "password", "passwd", "apikey", "credentials"}
_SEGMENT_SPLIT = re.compile(r"[_\-.]+")


def is_secret_name(name: str) -> bool:
    """Return whether a config key or environment variable name denotes a secret."""
    return any(segment.lower() in _SECRET_SEGMENTS for segment in _SEGMENT_SPLIT.split(str(name)))


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def _is_literal_secret(key: Any, item: Any) -> bool:
    if not is_secret_name(key) or item is None or isinstance(item, dict):
        return False
    if isinstance(item, list):
        return any(not isinstance(entry, (dict, list)) and not _is_interpolation(entry) for entry in item)
    return not _is_interpolation(item)


def mask_secrets(value: Any) -> Any:
    """Return a copy of a plain container with literal secret values replaced by ``****``.

    Interpolations such as ``${oc.env:HF_TOKEN}`` are kept because they name
    where the secret comes from, not the secret itself. A list under a secret
    name has each literal entry masked.
    """
    if isinstance(value, dict):
        masked = {}
        for key, item in value.items():
            if _is_literal_secret(key, item) and isinstance(item, list):
                masked[key] = [entry if _is_interpolation(entry) or isinstance(entry, (dict, list)) else MASK for entry in item]
            elif _is_literal_secret(key, item):
                masked[key] = MASK
            else:
                masked[key] = mask_secrets(item)
        return masked
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


def literal_secret_paths(value: Any, prefix: str = "") -> list[str]:
    """Return the dotted keys whose literal values :func:`mask_secrets` would mask."""
    paths = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}{key}"
            if _is_literal_secret(key, item):
                paths.append(path)
            else:
                paths.extend(literal_secret_paths(item, path + "."))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths.extend(literal_secret_paths(item, f"{prefix}{index}."))
    return paths


def mask_env(env: dict[str, str]) -> dict[str, str]:
    """Return ``env`` with the values of secret-named variables replaced by ``****``."""
    return {name: (MASK if is_secret_name(name) else value) for name, value in env.items()}
