"""``forge model stage`` of a small model served by the hub on 127.0.0.1: repairs and input errors."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_forge
from tests.hf_hub_server import HubRepo, HubServer, read_files

pytestmark = pytest.mark.integration

REPO_ID = "org/small"
MODEL_BYTES = bytes(range(250)) * 8


def write_files(directory: Path, contents: dict[str, bytes]) -> Path:
    for path, data in contents.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_bytes(data)
    return directory


@pytest.fixture
def unwritable_dir(tmp_path):
    """Yield a directory that this process cannot create files in, or skip the test."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    immutable = False
    if os.access(directory, os.W_OK) and shutil.which("chattr"):
        # root ignores permission bits, but not the immutable attribute of ext4, xfs and btrfs.
        immutable = subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0
    try:
        try:
            (directory / "probe").touch()
        except OSError:
            yield directory
        else:
            pytest.skip("cannot make a directory unwritable here: chmod and chattr +i did not stop writes")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o755)


@pytest.fixture
def small_repo(tmp_path) -> HubRepo:
    source = write_files(tmp_path / "source", {"config.json": b'{"v": 1}\n', "model.bin": MODEL_BYTES})
    repo = HubRepo(REPO_ID)
    repo.add_commit(read_files(source))
    return repo


@pytest.fixture
def hub(small_repo):
    with HubServer([small_repo]) as server:
        yield server


def hub_env(server: HubServer, tmp_path: Path) -> dict[str, str]:
    return {
        "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "user_hf"), "HF_TOKEN": "", "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


def stage(server: HubServer, tmp_path: Path, *args: str, repo_id: str = REPO_ID) -> subprocess.CompletedProcess:
    # '--' lets repo_id start with '-'.
    return run_forge("model", "stage", "--storage-root", str(tmp_path / "root"), *args, "--", repo_id, env=hub_env(server, tmp_path))


def blob_of(tmp_path: Path, repo: HubRepo, path: str, commit: str | None = None) -> Path:
    hub_file = repo.commits[commit or repo.refs["main"]][path]
    return tmp_path / "root" / "hf" / "hub" / "models--org--small" / "blobs" / hub_file.etag


def downloaded(tmp_path: Path, path: str) -> Path:
    return tmp_path / "root" / "hf_artifacts" / "org" / "small" / path


def verify(tmp_path: Path) -> subprocess.CompletedProcess:
    return run_forge("model", "verify", REPO_ID, "--storage-root", str(tmp_path / "root"))


def test_stage_repairs_truncated_cache_blob(hub, small_repo, tmp_path):
    assert stage(hub, tmp_path).returncode == 0
    blob = blob_of(tmp_path, small_repo, "model.bin")
    os.truncate(blob, 0)

    result = stage(hub, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "SameFileError" not in result.stderr
    assert "downloaded again because they were damaged: model.bin" in result.stdout
    assert blob.read_bytes() == MODEL_BYTES
    assert downloaded(tmp_path, "model.bin").read_bytes() == MODEL_BYTES
    assert verify(tmp_path).returncode == 0


def test_stage_repairs_truncated_download(hub, small_repo, tmp_path):
    assert stage(hub, tmp_path).returncode == 0
    os.truncate(downloaded(tmp_path, "model.bin"), 0)

    result = stage(hub, tmp_path)

    assert result.returncode == 0, result.stderr
    assert downloaded(tmp_path, "model.bin").read_bytes() == MODEL_BYTES
    assert blob_of(tmp_path, small_repo, "model.bin").read_bytes() == MODEL_BYTES
    assert verify(tmp_path).returncode == 0


def test_stage_relinks_repaired_file(hub, small_repo, tmp_path):
    assert stage(hub, tmp_path).returncode == 0
    os.truncate(downloaded(tmp_path, "model.bin"), 0)

    result = stage(hub, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "1 hard-linked, 0 copied, 1 already cached" in result.stdout
    assert downloaded(tmp_path, "model.bin").samefile(blob_of(tmp_path, small_repo, "model.bin"))


def test_hydrate_advice_repairs_download(hub, tmp_path):
    assert stage(hub, tmp_path).returncode == 0
    os.truncate(downloaded(tmp_path, "model.bin"), 0)
    hydrated = run_forge(
        "model", "hydrate", str(downloaded(tmp_path, "")), "--repo-id", REPO_ID, "--storage-root", str(tmp_path / "root"),
    )
    assert hydrated.returncode == 2
    advice = re.search(r"again with: (forge model stage .*?)(?:, or pass|\.$)", hydrated.stderr, re.MULTILINE)
    assert advice is not None, hydrated.stderr

    words = shlex.split(advice[1])
    result = run_forge(*words[1:], env=hub_env(hub, tmp_path))

    assert result.returncode == 0, result.stderr
    assert verify(tmp_path).returncode == 0


def test_stage_repairs_file_changed_after_download(hub, small_repo, tmp_path):
    assert stage(hub, tmp_path).returncode == 0
    config = downloaded(tmp_path, "config.json")
    config.write_bytes(b'{"v": 2}\n')
    later = config.stat().st_mtime + 60
    os.utime(config, (later, later))

    result = stage(hub, tmp_path)

    assert result.returncode == 0, result.stderr
    assert config.read_bytes() == b'{"v": 1}\n'
    assert blob_of(tmp_path, small_repo, "config.json").read_bytes() == b'{"v": 1}\n'


def test_stage_other_revision_keeps_blobs(small_repo, tmp_path):
    first = small_repo.refs["main"]
    changed = write_files(tmp_path / "changed", {"config.json": b'{"v": 22}\n', "model.bin": MODEL_BYTES})
    second = small_repo.add_commit(read_files(changed), ref="v2")

    with HubServer([small_repo]) as server:
        assert stage(server, tmp_path).returncode == 0
        assert stage(server, tmp_path, "--revision", "v2").returncode == 0
        result = stage(server, tmp_path)

    assert result.returncode == 0, result.stderr
    assert blob_of(tmp_path, small_repo, "config.json", first).read_bytes() == b'{"v": 1}\n'
    assert blob_of(tmp_path, small_repo, "config.json", second).read_bytes() == b'{"v": 22}\n'
    assert downloaded(tmp_path, "config.json").read_bytes() == b'{"v": 1}\n'


def test_stage_invalid_repo_id_sends_no_request(hub, tmp_path):
    for repo_id in ("org/.small", "-org/small", "org/small-", "org./small", "org/small."):
        result = stage(hub, tmp_path, repo_id=repo_id)

        assert result.returncode == 2, repo_id
        assert f"Invalid repository id {repo_id!r}" in result.stderr
        assert "Traceback" not in result.stderr
    assert hub.requests == []


def test_stage_invalid_revision_exits_2(hub, tmp_path):
    for revision in ("a\nb", "main ", "a\tb", "v1\x01"):
        result = stage(hub, tmp_path, "--revision", revision)

        assert result.returncode == 2, repr(revision)
        assert "Invalid revision" in result.stderr
        assert "Cannot reach the Hub" not in result.stderr
    assert hub.requests == []


def file_downloads(server: HubServer) -> list[str]:
    return [path for method, path in server.requests if "/resolve/" in path]


def test_stage_unwritable_storage_root_exits_2(hub, tmp_path, unwritable_dir):
    result = run_forge("model", "stage", REPO_ID, "--storage-root", str(unwritable_dir), env=hub_env(hub, tmp_path))

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("forge: error: Cannot write to the storage root")
    assert str(unwritable_dir) in result.stderr
    assert "--storage-root" in result.stderr
    assert "Traceback" not in result.stderr
    assert hub.requests == []


@pytest.mark.parametrize(("below", "reason"), [("", "it is a file"), ("sub", "'{a_file}' is a file")])
def test_stage_storage_root_file_exits_2(hub, tmp_path, below, reason):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    root = a_file / below if below else a_file

    result = run_forge("model", "stage", REPO_ID, "--storage-root", str(root), env=hub_env(hub, tmp_path))

    assert result.returncode == 2, result.stderr
    assert f"The storage root '{root}' cannot be a directory: {reason.format(a_file=a_file)}." in result.stderr
    assert "Give a directory with --storage-root" in result.stderr
    assert "Traceback" not in result.stderr
    assert hub.requests == []


def test_stage_unwritable_local_dir_exits_2(hub, tmp_path, unwritable_dir):
    local_dir = unwritable_dir / "download"

    result = stage(hub, tmp_path, "--local-dir", str(local_dir))

    assert result.returncode == 2, result.stderr
    assert f"Cannot write to the download folder '{local_dir}'" in result.stderr
    assert "--local-dir" in result.stderr
    assert "Traceback" not in result.stderr
    assert hub.requests == []


def test_stage_hf_home_file_exits_2_before_download(hub, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")

    result = stage(hub, tmp_path, "--hf-home", str(a_file))

    assert result.returncode == 2, result.stderr
    assert f"The Hugging Face home '{a_file}' cannot be a directory: it is a file" in result.stderr
    assert "--hf-home" in result.stderr
    assert "Traceback" not in result.stderr
    assert file_downloads(hub) == []
    assert not (tmp_path / "root" / "hf_artifacts").exists()


def test_hydrate_unwritable_storage_root_exits_2(hub, tmp_path, unwritable_dir):
    assert stage(hub, tmp_path).returncode == 0

    result = run_forge(
        "model", "hydrate", str(downloaded(tmp_path, "")), "--repo-id", REPO_ID, "--storage-root", str(unwritable_dir),
    )

    assert result.returncode == 2, result.stderr
    assert f"Cannot write to the storage root '{unwritable_dir}'" in result.stderr
    assert "Traceback" not in result.stderr
