"""The contract every storage plugin passes, as a test class each plugin's tests subclass.

A subclass sets :attr:`StorageConformance.storage_name`, provides the
``storage`` fixture (a resolved ``storage`` section whose root does not exist
yet) and implements :meth:`place_marker`, which creates a relative marker
where the plugin looks for it. The hooks are called through the plugin
registry, as the launcher calls them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from forge_launcher.errors import UserError
from forge_launcher.plugins import load_registry


class StorageConformance:
    storage_name = ""

    @pytest.fixture
    def storage(self) -> dict[str, Any]:
        raise NotImplementedError("a storage plugin's test class provides the storage fixture")

    def place_marker(self, storage: dict[str, Any], marker: str) -> None:
        """Create ``marker`` where the plugin looks for a relative marker."""
        raise NotImplementedError

    def mount(self, storage: dict[str, Any]) -> str:
        return load_registry().storage_hooks(self.storage_name).forge_launcher_mount(storage=dict(storage))

    def unmount(self, storage: dict[str, Any]) -> bool:
        return load_registry().storage_hooks(self.storage_name).forge_launcher_unmount(storage=dict(storage))

    def test_mount_returns_root(self, storage: dict[str, Any]) -> None:
        root = self.mount(storage)

        assert root == storage["root"]
        assert Path(root).is_dir()

    def test_root_created_with_mode(self, storage: dict[str, Any]) -> None:
        storage["root_mode"] = "0750"
        old_umask = os.umask(0o077)
        try:
            root = self.mount(storage)
        finally:
            os.umask(old_umask)

        assert stat.S_IMODE(os.stat(root).st_mode) == 0o750

    def test_root_created_with_setgid(self, storage: dict[str, Any]) -> None:
        storage["root_mode"] = "2770"

        root = self.mount(storage)

        assert stat.S_IMODE(os.stat(root).st_mode) == 0o2770

    def test_second_mount_keeps_root(self, storage: dict[str, Any]) -> None:
        root = self.mount(storage)
        (Path(root) / "kept.txt").write_text("data")
        os.chmod(root, 0o700)

        again = self.mount(storage)

        assert again == root
        assert (Path(again) / "kept.txt").read_text() == "data"
        assert stat.S_IMODE(os.stat(again).st_mode) == 0o700

    def test_root_that_is_a_file_rejected(self, storage: dict[str, Any]) -> None:
        root = Path(self.mount(storage))
        root.rmdir()
        root.write_text("not a directory")

        with pytest.raises(UserError, match="not a directory") as caught:
            self.mount(storage)
        assert str(root) in str(caught.value)

    def test_invalid_root_mode_rejected(self, storage: dict[str, Any]) -> None:
        storage["root_mode"] = "rwx"

        with pytest.raises(UserError, match="storage.root_mode") as caught:
            self.mount(storage)
        assert "'rwx'" in str(caught.value)

    def test_marker_missing_rejected(self, storage: dict[str, Any]) -> None:
        storage["marker"] = "forge-ready.flag"

        with pytest.raises(UserError, match="marker") as caught:
            self.mount(storage)
        assert "forge-ready.flag" in str(caught.value)
        assert "storage.marker" in str(caught.value)

    def test_marker_present_accepted(self, storage: dict[str, Any]) -> None:
        storage["marker"] = "forge-ready.flag"
        self.place_marker(storage, "forge-ready.flag")

        assert self.mount(storage) == storage["root"]

    def test_unmount_returns_bool(self, storage: dict[str, Any]) -> None:
        self.mount(storage)

        assert isinstance(self.unmount(storage), bool)

    def test_mount_after_unmount(self, storage: dict[str, Any]) -> None:
        self.mount(storage)
        self.unmount(storage)

        root = self.mount(storage)

        assert Path(root).is_dir()
