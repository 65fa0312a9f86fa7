"""Launching jobs that name models: the preflight check and the Hugging Face environment of each role."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_forge
from tests.hf_hub_server import make_local_download

pytestmark = pytest.mark.integration

REPO_ID = "acme/tiny-model"

WORKLOAD = """\
import json
import os

import huggingface_hub.constants

names = ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
report = {name: os.environ.get(name) for name in names}
report["hub_cache"] = huggingface_hub.constants.HF_HUB_CACHE
report["offline"] = huggingface_hub.constants.HF_HUB_OFFLINE
with open(os.path.join(os.environ["FORGE_JOB_DIR"], "hf_env.json"), "w") as stream:
    json.dump(report, stream)
"""


def write_config(tmp_path: Path, extra: str = "") -> Path:
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    config = tmp_path / "job.yaml"
    config.write_text(f"job:\n  script: {script}\nmodel: {REPO_ID}\n" + textwrap.dedent(extra))
    return config


def stage_fake(tmp_path: Path) -> None:
    local_dir = tmp_path / "download"
    make_local_download(local_dir, {"config.json": b"{}\n"})
    result = run_forge("model", "hydrate", str(local_dir), "--repo-id", REPO_ID)
    assert result.returncode == 0, result.stderr


def test_unstaged_model_fails_before_submission(tmp_path, forge_env):
    config = write_config(tmp_path)

    result = run_forge(str(config))

    assert result.returncode == 2
    assert f"model: model '{REPO_ID}' is not staged" in result.stderr
    assert f"forge model stage {REPO_ID} --storage-root {forge_env['storage']}" in result.stderr
    assert not (forge_env["storage"] / "forge_runs").exists()
    assert not list(forge_env["home"].rglob("*.json"))


def test_unstaged_model_fails_dry_run(tmp_path, forge_env):
    config = write_config(tmp_path)

    result = run_forge(str(config), "--dry-run")

    assert result.returncode == 2
    assert f"forge model stage {REPO_ID}" in result.stderr


def test_model_keys_override_skips_check(tmp_path):
    config = write_config(tmp_path)

    result = run_forge(str(config), "job.model_keys=[]", "--dry-run")

    assert result.returncode == 0, result.stderr


def test_staged_model_job_gets_hf_environment(tmp_path, forge_env):
    stage_fake(tmp_path)
    config = write_config(tmp_path)

    result = run_forge(str(config), "job.name=hf-env")

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((forge_env["storage"] / "forge_runs" / "hf-env" / "hf_env.json").read_text())
    assert report["HF_HOME"] == str(forge_env["storage"] / "hf")
    assert report["HF_HUB_OFFLINE"] == "1"
    assert report["TRANSFORMERS_OFFLINE"] == "1"
    assert report["hub_cache"] == str(forge_env["storage"] / "hf" / "hub")
    assert report["offline"] is True


def test_worker_roles_get_hf_environment(tmp_path, forge_env):
    stage_fake(tmp_path)
    config = write_config(tmp_path, """\
        services:
          policy:
            procs: 1
            num_replicas: 1
            hosts: 1
            with_gpus: false
        """)

    result = run_forge(str(config), "--dry-run")

    assert result.returncode == 0, result.stderr
    roles = yaml.safe_load(result.stdout)["app"]["roles"]
    assert [role["name"] for role in roles] == ["policy_0"]
    env = roles[0]["env"]
    assert env["HF_HOME"] == str(forge_env["storage"] / "hf")
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["TRANSFORMERS_OFFLINE"] == "1"


def test_job_env_overrides_hf_home(tmp_path, forge_env):
    other = tmp_path / "other_hf"
    config = write_config(tmp_path)

    result = run_forge(str(config), f"+job.env.HF_HOME={other}", "--dry-run")

    assert result.returncode == 2
    assert f"forge model stage {REPO_ID} --hf-home {other}" in result.stderr
