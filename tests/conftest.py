"""Shared fixtures: every test gets its own FORGE_HOME and storage root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "toy_rl.yaml"


@pytest.fixture(autouse=True)
def forge_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point job records and local storage at fresh directories under ``tmp_path``."""
    home = tmp_path / "forge_home"
    storage = tmp_path / "storage"
    monkeypatch.setenv("FORGE_HOME", str(home))
    monkeypatch.setenv("FORGE_STORAGE_ROOT", str(storage))
    return {"home": home, "storage": storage}


def run_forge(*args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the ``forge`` CLI in a subprocess and return its completed process (text output)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "forge_launcher", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
