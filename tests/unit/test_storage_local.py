"""The ``local`` storage plugin against the shared storage contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from forge_launcher.errors import UserError
from tests.storage_conformance import StorageConformance


class TestLocalStorage(StorageConformance):
    storage_name = "local"

    @pytest.fixture
    def storage(self, tmp_path: Path) -> dict[str, Any]:
        return {"name": "local", "root": str(tmp_path / "shared" / "root")}

    def place_marker(self, storage: dict[str, Any], marker: str) -> None:
        root = Path(storage["root"])
        root.mkdir(parents=True, exist_ok=True)
        (root / marker).write_text("")


def test_local_default_mode(tmp_path: Path) -> None:
    root = TestLocalStorage().mount({"name": "local", "root": str(tmp_path / "root")})

    assert oct(Path(root).stat().st_mode & 0o7777) == oct(0o755)


def test_local_absolute_marker(tmp_path: Path) -> None:
    marker = tmp_path / "share" / "online"
    storage = {"name": "local", "root": str(tmp_path / "root"), "marker": str(marker)}

    with pytest.raises(UserError, match="is missing"):
        TestLocalStorage().mount(storage)

    marker.parent.mkdir()
    marker.write_text("")
    assert TestLocalStorage().mount(storage) == str(tmp_path / "root")


def test_local_root_unset_rejected() -> None:
    with pytest.raises(UserError, match="storage.root is not set"):
        TestLocalStorage().mount({"name": "local", "root": None})


def test_local_unmount_releases_nothing(tmp_path: Path) -> None:
    assert TestLocalStorage().unmount({"name": "local", "root": str(tmp_path)}) is False
