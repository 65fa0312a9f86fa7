"""A plugin from a separate distribution is listed and usable as a backend, with no core change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_forge

pytestmark = pytest.mark.integration

# A backend named "toy" that reuses the local backend's hooks but has its own
# name, capabilities and config group.
PLUGIN_MODULE = '''
"""A throwaway third-party backend for forge-launcher's tests."""
from pathlib import Path

from forge_launcher import hookimpl
from forge_launcher.plugins import BackendSpec
from forge_launcher_local import backend as local

CONF = Path(__file__).parent / "conf"


@hookimpl
def forge_launcher_config_dirs():
    return [str(CONF)]


@hookimpl
def forge_launcher_backends():
    return [BackendSpec("toy", description="toy backend from a test distribution", default_detached=True)]


forge_launcher_build_app = hookimpl(local.forge_launcher_build_app)
forge_launcher_submit = hookimpl(local.forge_launcher_submit)
forge_launcher_status = hookimpl(local.forge_launcher_status)
forge_launcher_wait = hookimpl(local.forge_launcher_wait)
forge_launcher_cancel = hookimpl(local.forge_launcher_cancel)
forge_launcher_logs = hookimpl(local.forge_launcher_logs)
forge_launcher_provision = hookimpl(local.forge_launcher_provision)
forge_launcher_dryrun = hookimpl(local.forge_launcher_dryrun)
'''


def install_distribution(site: Path, dist: str, module: str, entry_name: str, source: str, conf: dict[str, str]) -> None:
    """Lay out a package and its .dist-info as pip would, so importlib.metadata finds it on PYTHONPATH."""
    package = site / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(source)
    for relative, text in conf.items():
        path = package / "conf" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    info = site / f"{dist.replace('-', '_')}-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text(f"[forge_launcher.plugins]\n{entry_name} = {module}\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def toy_site(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    install_distribution(site, "forge-toy-backend", "forge_toy_backend", "toy", PLUGIN_MODULE,
                         {"backend/toy.yaml": "name: toy\nworker_host: 127.0.0.1\nprovision_timeout: 60\n"})
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_third_party_plugin_listed(toy_site: dict[str, str]) -> None:
    result = run_forge("plugins", env=toy_site)
    assert result.returncode == 0, result.stderr
    assert "toy  (forge-toy-backend 0.3.1)" in result.stdout
    backends = next(line for line in result.stdout.splitlines() if line.startswith("backends:"))
    assert "toy" in backends.split(": ", 1)[1].split(", ")


def test_third_party_backend_runs_job(tmp_path: Path, toy_site: dict[str, str], forge_env: dict[str, Path]) -> None:
    workload = tmp_path / "hello.py"
    workload.write_text("import sys\nprint('hello from toy', sys.argv[1:], flush=True)\n")
    config = tmp_path / "hello.yaml"
    config.write_text(f"job:\n  script: {workload}\n")

    result = run_forge(str(config), "+backend=toy", "job.name=toy1", env=toy_site)
    assert result.returncode == 0, result.stderr
    record = json.loads((forge_env["home"] / "jobs" / "toy1.json").read_text())
    assert record["backend"] == "toy"
    assert record["detached"] is True

    status = run_forge("status", "toy1", env=toy_site)
    for _ in range(100):
        if "SUCCEEDED" in status.stdout or "FAILED" in status.stdout:
            break
        status = run_forge("status", "toy1", env=toy_site)
    assert "toy1: SUCCEEDED" in status.stdout
    logs = run_forge("logs", "toy1", env=toy_site)
    assert "hello from toy" in logs.stdout


def test_conflicting_distribution_names_both(tmp_path: Path) -> None:
    site = tmp_path / "site"
    source = "from forge_launcher import hookimpl\nfrom forge_launcher.plugins import BackendSpec\n\n@hookimpl\ndef forge_launcher_backends():\n    return [BackendSpec('local')]\n"
    install_distribution(site, "forge-shadow", "forge_shadow", "shadow", source, {})
    result = run_forge("plugins", env={"PYTHONPATH": str(site)})
    assert result.returncode == 1
    assert "Two plugins declare the backend 'local'" in result.stderr
    assert "forge-launcher" in result.stderr
    assert "forge-shadow" in result.stderr
