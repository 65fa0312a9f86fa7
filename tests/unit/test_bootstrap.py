"""The client's first steps: storage from the environment, the workload command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge_launcher.bootstrap import STORAGE_ENV, mount_from_environment, storage_env_value
from forge_launcher.errors import ConfigError
from forge_launcher.plugins import load_registry


def test_storage_env_drops_secret_keys() -> None:
    value = json.loads(storage_env_value("local", {"root": "/r", "access_token": "t"}))
    assert value == {"name": "local", "section": {"root": "/r"}}


def test_mount_from_environment_creates_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "shared"
    monkeypatch.setenv(STORAGE_ENV, storage_env_value("local", {"root": str(root)}))
    assert mount_from_environment(load_registry()) == str(root)
    assert root.is_dir()


def test_mount_from_environment_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert mount_from_environment(load_registry()) is None


def test_mount_from_environment_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORAGE_ENV, "{not json")
    with pytest.raises(ConfigError, match=STORAGE_ENV):
        mount_from_environment(load_registry())
