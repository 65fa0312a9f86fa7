"""Hydrating the Hugging Face cache from a local-dir download, without a hub."""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from forge_launcher.errors import UserError
from forge_launcher.models import hydrate as hydrate_module
from forge_launcher.models.hydrate import file_sha256, git_blob_sha1, hydrate
from tests.hf_hub_server import make_local_download

REPO_ID = "acme/tiny-model"
CONTENTS = {
    ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    "config.json": b'{"hidden_size": 8}\n',
    "model.safetensors": b"\x00" * 4096,
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}\n',
}


@pytest.fixture
def download(tmp_path: Path) -> tuple[Path, str, dict]:
    local_dir = tmp_path / "download"
    commit, files = make_local_download(local_dir, CONTENTS)
    return local_dir, commit, files


@pytest.fixture
def hub_cache(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub"


def repo_dir(hub_cache: Path) -> Path:
    return hub_cache / "models--acme--tiny-model"


def test_hydrate_writes_ref_without_newline(download, hub_cache):
    local_dir, commit, _ = download

    hydrate(local_dir, REPO_ID, hub_cache)

    assert (repo_dir(hub_cache) / "refs" / "main").read_bytes() == commit.encode()


def test_hydrate_links_snapshot_to_blobs(download, hub_cache):
    local_dir, commit, files = download

    result = hydrate(local_dir, REPO_ID, hub_cache)

    snapshot = repo_dir(hub_cache) / "snapshots" / commit
    assert result.snapshot == snapshot
    for path, hub_file in files.items():
        entry = snapshot / path
        assert entry.is_symlink(), path
        assert not os.path.isabs(os.readlink(entry)), path
        assert entry.resolve() == (repo_dir(hub_cache) / "blobs" / hub_file.etag).resolve(), path
        assert entry.read_bytes() == CONTENTS[path], path


def test_hydrate_names_lfs_blob_by_sha256(download, hub_cache):
    local_dir, _, _ = download

    hydrate(local_dir, REPO_ID, hub_cache)

    sha256 = hashlib.sha256(CONTENTS["model.safetensors"]).hexdigest()
    assert (repo_dir(hub_cache) / "blobs" / sha256).is_file()


def test_hydrate_hard_links_blobs(download, hub_cache):
    local_dir, _, files = download

    result = hydrate(local_dir, REPO_ID, hub_cache)

    assert result.linked == len(files)
    assert result.copied == 0
    for path, hub_file in files.items():
        assert (repo_dir(hub_cache) / "blobs" / hub_file.etag).stat().st_ino == (local_dir / path).stat().st_ino, path


def test_hydrate_keeps_tree_listing(download, hub_cache):
    local_dir, commit, _ = download

    result = hydrate(local_dir, REPO_ID, hub_cache)

    assert result.has_tree_listing
    cached_listing = repo_dir(hub_cache) / "trees" / f"{commit}.json"
    assert cached_listing.read_bytes() == (local_dir / ".cache" / "huggingface" / "trees" / f"{commit}.json").read_bytes()


def test_hydrate_leaves_out_metadata_dir(download, hub_cache):
    local_dir, commit, files = download

    result = hydrate(local_dir, REPO_ID, hub_cache)

    snapshot = repo_dir(hub_cache) / "snapshots" / commit
    assert not (snapshot / ".cache").exists()
    assert result.files == len(files)
    assert sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if not p.is_dir()) == sorted(CONTENTS)


def test_hydrate_reads_no_model_bytes(download, hub_cache, monkeypatch):
    local_dir, _, _ = download
    opened: list[str] = []
    real_open = io.open

    def recording_open(file, *args, **kwargs):
        opened.append(os.path.abspath(os.fspath(file)) if not isinstance(file, int) else str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", recording_open)
    monkeypatch.setattr(builtins, "open", recording_open)

    hydrate(local_dir, REPO_ID, hub_cache)

    model_files = {str(local_dir / path) for path in CONTENTS}
    assert opened, "the recorder saw no open() at all, so it did not hook hydrate's file reads"
    assert not model_files & set(opened)


def test_hydrate_copies_when_hard_links_fail(download, hub_cache, monkeypatch):
    local_dir, _, files = download

    def no_link(source, target, *args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(hydrate_module.os, "link", no_link)

    result = hydrate(local_dir, REPO_ID, hub_cache)

    assert result.copied == len(files)
    assert result.linked == 0
    assert result.link_error == "Invalid cross-device link"
    for path, hub_file in files.items():
        blob = repo_dir(hub_cache) / "blobs" / hub_file.etag
        assert blob.read_bytes() == CONTENTS[path], path
        assert blob.stat().st_ino != (local_dir / path).stat().st_ino, path
    assert not list((repo_dir(hub_cache) / "blobs").glob("*.incomplete"))


def test_hydrate_twice_reuses_blobs(download, hub_cache):
    local_dir, commit, files = download
    hydrate(local_dir, REPO_ID, hub_cache)

    again = hydrate(local_dir, REPO_ID, hub_cache)

    assert again.existing == len(files)
    assert again.linked == 0
    assert (repo_dir(hub_cache) / "refs" / "main").read_text() == commit


def test_hydrate_moves_ref_to_new_commit(tmp_path, hub_cache):
    first, _ = make_local_download(tmp_path / "v1", {"config.json": b"{}\n"})
    second, _ = make_local_download(tmp_path / "v2", {"config.json": b'{"a": 1}\n'})

    hydrate(tmp_path / "v1", REPO_ID, hub_cache)
    hydrate(tmp_path / "v2", REPO_ID, hub_cache)

    assert first != second
    assert (repo_dir(hub_cache) / "refs" / "main").read_text() == second
    assert (repo_dir(hub_cache) / "snapshots" / first / "config.json").read_bytes() == b"{}\n"


def test_hydrate_commit_revision_writes_no_ref(download, hub_cache):
    local_dir, commit, _ = download

    result = hydrate(local_dir, REPO_ID, hub_cache, revision=commit)

    assert result.commit == commit
    assert not (repo_dir(hub_cache) / "refs").exists()
    assert (repo_dir(hub_cache) / "snapshots" / commit / "config.json").is_file()


def test_hydrate_tag_revision_writes_that_ref(download, hub_cache):
    local_dir, commit, _ = download

    hydrate(local_dir, REPO_ID, hub_cache, revision="v1.0")

    assert (repo_dir(hub_cache) / "refs" / "v1.0").read_text() == commit
    assert not (repo_dir(hub_cache) / "refs" / "main").exists()


def test_hydrate_missing_dir_names_it(tmp_path, hub_cache):
    missing = tmp_path / "nowhere"

    with pytest.raises(UserError) as raised:
        hydrate(missing, REPO_ID, hub_cache)

    assert str(missing) in str(raised.value)
    assert "not found" in str(raised.value)


def test_hydrate_without_metadata_suggests_commit(tmp_path, hub_cache):
    local_dir = tmp_path / "plain"
    local_dir.mkdir()
    (local_dir / "config.json").write_text("{}")

    with pytest.raises(UserError) as raised:
        hydrate(local_dir, REPO_ID, hub_cache)

    message = str(raised.value)
    assert str(local_dir / ".cache" / "huggingface" / "download") in message
    assert "--commit" in message
    assert f"forge model stage {REPO_ID}" in message
    assert not hub_cache.exists()


def test_hydrate_reports_file_missing_from_download(download, hub_cache):
    local_dir, _, _ = download
    (local_dir / "1_Pooling" / "config.json").unlink()

    with pytest.raises(UserError) as raised:
        hydrate(local_dir, REPO_ID, hub_cache)

    assert "missing: 1_Pooling/config.json" in str(raised.value)
    assert not (repo_dir(hub_cache) / "refs").exists()


def test_hydrate_reports_file_modified_after_download(download, hub_cache):
    local_dir, _, _ = download
    later = (local_dir / "config.json").stat().st_mtime + 100
    os.utime(local_dir / "config.json", (later, later))

    with pytest.raises(UserError) as raised:
        hydrate(local_dir, REPO_ID, hub_cache)

    assert "modified after download: config.json" in str(raised.value)


def test_hydrate_reports_wrong_size(download, hub_cache):
    local_dir, _, _ = download
    (local_dir / "config.json").write_bytes(b"{}")
    metadata = local_dir / ".cache" / "huggingface" / "download" / "config.json.metadata"
    lines = metadata.read_text().splitlines()
    metadata.write_text(f"{lines[0]}\n{lines[1]}\n{float(lines[2]) + 100}\n")

    with pytest.raises(UserError) as raised:
        hydrate(local_dir, REPO_ID, hub_cache)

    assert f"wrong size: config.json (expected {len(CONTENTS['config.json'])} bytes, found 2)" in str(raised.value)


def test_hydrate_rejects_mixed_commits(tmp_path, hub_cache):
    local_dir = tmp_path / "mixed"
    commit, _ = make_local_download(local_dir, {"a.json": b"1", "b.json": b"2"}, tree_listing=False)
    metadata = local_dir / ".cache" / "huggingface" / "download" / "b.json.metadata"
    other = "f" * 40
    metadata.write_text(metadata.read_text().replace(commit, other))

    with pytest.raises(UserError) as raised:
        hydrate(local_dir, REPO_ID, hub_cache)

    assert commit in str(raised.value)
    assert other in str(raised.value)


def test_hydrate_rejects_unsafe_etag(download, hub_cache):
    local_dir, commit, _ = download
    metadata = local_dir / ".cache" / "huggingface" / "download" / "config.json.metadata"
    metadata.write_text(f"{commit}\n../../../escape\n{float('inf')}\n")

    with pytest.raises(UserError) as raised:
        hydrate(local_dir, REPO_ID, hub_cache)

    assert "invalid download metadata" in str(raised.value)
    assert not (hub_cache.parent / "escape").exists()


@pytest.mark.parametrize("repo_id", ["", "a/b/c", "a--b/c", "../x", "org/name.git", "spaces in/name"])
def test_hydrate_rejects_invalid_repo_id(download, hub_cache, repo_id):
    local_dir, _, _ = download

    with pytest.raises(UserError) as raised:
        hydrate(local_dir, repo_id, hub_cache)

    assert repr(repo_id) in str(raised.value)


def test_hydrate_commit_option_hashes_files(tmp_path, hub_cache, monkeypatch):
    monkeypatch.setattr(hydrate_module, "LFS_SIZE_THRESHOLD", 1000)
    local_dir = tmp_path / "plain"
    local_dir.mkdir()
    small = b'{"small": true}\n'
    large = os.urandom(5000)
    (local_dir / "config.json").write_bytes(small)
    (local_dir / "weights.bin").write_bytes(large)
    commit = "c" * 40

    result = hydrate(local_dir, REPO_ID, hub_cache, commit=commit, hash_missing=True)

    git_sha1 = hashlib.sha1(b"blob %d\0" % len(small) + small).hexdigest()
    blobs = repo_dir(hub_cache) / "blobs"
    assert result.hashed == 2
    assert (blobs / git_sha1).read_bytes() == small
    assert (blobs / hashlib.sha256(large).hexdigest()).read_bytes() == large
    assert (repo_dir(hub_cache) / "refs" / "main").read_text() == commit
    assert not result.has_tree_listing


def test_hydrate_commit_option_checks_tree_listing(download, hub_cache):
    local_dir, commit, _ = download
    shutil.rmtree(local_dir / ".cache" / "huggingface" / "download")
    (local_dir / "config.json").write_bytes(b'{"hidden_size": 9}\n')

    with pytest.raises(UserError) as raised:
        hydrate(local_dir, REPO_ID, hub_cache, commit=commit, hash_missing=True)

    assert "wrong contents: config.json" in str(raised.value)


def test_hydrate_commit_option_uses_tree_listing_for_lfs(download, hub_cache):
    local_dir, commit, files = download
    shutil.rmtree(local_dir / ".cache" / "huggingface" / "download")

    result = hydrate(local_dir, REPO_ID, hub_cache, commit=commit, hash_missing=True)

    assert result.hashed == len(files)
    for path, hub_file in files.items():
        assert (repo_dir(hub_cache) / "blobs" / hub_file.etag).is_file(), path


def test_hydrate_rejects_short_commit(download, hub_cache):
    local_dir, _, _ = download

    with pytest.raises(UserError) as raised:
        hydrate(local_dir, REPO_ID, hub_cache, commit="abc123", hash_missing=True)

    assert "'abc123'" in str(raised.value)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_blob_sha1_matches_git(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"[PAD]\n[UNK]\nhello\n" * 100)

    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()

    assert git_blob_sha1(path) == expected


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "model.safetensors"
    data = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(data)

    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_fake_download_reads_as_huggingface_hubs(download, tmp_path):
    from huggingface_hub import get_cached_repo_tree

    local_dir, commit, files = download

    listed = get_cached_repo_tree(REPO_ID, revision=commit, local_dir=local_dir, cache_dir=tmp_path / "unused")

    by_path = {entry.path: entry for entry in listed}
    assert sorted(by_path) == sorted(files)
    for path, hub_file in files.items():
        assert by_path[path].size == hub_file.size, path
        assert by_path[path].blob_id == hub_file.oid, path
