"""Plugin loading, name ownership and conflicts."""

from __future__ import annotations

import types

import pytest

from forge_launcher import hookimpl
from forge_launcher.errors import PluginError, UserError
from forge_launcher.plugins import BackendSpec, StorageSpec, load_registry


def make_plugin(name: str, backends: list[str] = (), storages: list[str] = ()) -> types.SimpleNamespace:
    class Plugin:
        @hookimpl
        def forge_launcher_backends(self):
            return [BackendSpec(n) for n in backends]

        @hookimpl
        def forge_launcher_storages(self):
            return [StorageSpec(n) for n in storages]

        @hookimpl
        def forge_launcher_status(self, record):
            return f"status from {name}"

    plugin = Plugin()
    plugin.__name__ = name
    return plugin


def test_builtin_plugins_load_from_entry_points() -> None:
    registry = load_registry()
    assert "local" in registry.backends
    assert "local" in registry.storages
    names = {info.name for info in registry.describe()}
    assert {"local_backend", "local_storage"} <= names


def test_describe_lists_hooks_and_distribution() -> None:
    info = {i.name: i for i in load_registry().describe()}["local_backend"]
    assert info.distribution == "forge-launcher"
    assert "forge_launcher_submit" in info.hooks


def test_inline_backend_registers() -> None:
    registry = load_registry([make_plugin("toy", backends=["toy"])])
    assert registry.backend("toy").name == "toy"


def test_owner_hooks_call_only_owner() -> None:
    registry = load_registry([make_plugin("one", backends=["one"]), make_plugin("two", backends=["two"])])
    assert registry.backend_hooks("two").forge_launcher_status(record=None) == "status from two"
    assert registry.backend_hooks("one").forge_launcher_status(record=None) == "status from one"


def test_duplicate_backend_names_both() -> None:
    with pytest.raises(PluginError) as info:
        load_registry([make_plugin("first", backends=["dup"]), make_plugin("second", backends=["dup"])])
    message = str(info.value)
    assert "'dup'" in message
    assert "<registered in code>" in message


def test_duplicate_of_builtin_names_distribution() -> None:
    with pytest.raises(PluginError, match=r"forge-launcher") as info:
        load_registry([make_plugin("shadow", storages=["local"])])
    assert "storage 'local'" in str(info.value)


def test_unknown_backend_lists_available() -> None:
    with pytest.raises(UserError, match="Available backends: local"):
        load_registry().backend("nope")
