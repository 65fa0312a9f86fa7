"""Reading the cache: snapshot checks, listing and the helpers behind them."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge_launcher.errors import UserError
from forge_launcher.models.cache import (
    check_snapshot,
    format_size,
    repo_id_of,
    validate_repo_id,
    validate_revision,
)
from forge_launcher.models.hydrate import hydrate
from forge_launcher.models.listing import list_staged
from tests.hf_hub_server import make_local_download

REPO_ID = "acme/tiny-model"
CONTENTS = {"config.json": b"{}\n", "vocab.txt": b"a\nb\nc\n", "1_Pooling/config.json": b"{}\n"}


@pytest.fixture
def hub_cache(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub"


@pytest.fixture
def staged(tmp_path: Path, hub_cache: Path) -> str:
    commit, _ = make_local_download(tmp_path / "download", CONTENTS)
    hydrate(tmp_path / "download", REPO_ID, hub_cache)
    return commit


def test_check_complete_snapshot(hub_cache, staged):
    check = check_snapshot(hub_cache, REPO_ID)

    assert check is not None
    assert check.complete
    assert check.commit == staged
    assert check.files == len(CONTENTS)
    assert check.size == sum(len(data) for data in CONTENTS.values())
    assert check.has_tree_listing


def test_check_unstaged_returns_none(hub_cache, staged):
    assert check_snapshot(hub_cache, "acme/other") is None
    assert check_snapshot(hub_cache, REPO_ID, "v2") is None


def test_check_reports_missing_blob(hub_cache, staged):
    snapshot = hub_cache / "models--acme--tiny-model" / "snapshots" / staged
    (snapshot / "vocab.txt").resolve().unlink()

    check = check_snapshot(hub_cache, REPO_ID)

    assert check is not None
    assert check.problems == [f"missing: vocab.txt ({len(CONTENTS['vocab.txt'])} bytes)"]


def test_check_reports_wrong_size(hub_cache, staged):
    snapshot = hub_cache / "models--acme--tiny-model" / "snapshots" / staged
    blob = (snapshot / "vocab.txt").resolve()
    blob.unlink()
    blob.write_bytes(b"a\n")

    check = check_snapshot(hub_cache, REPO_ID)

    assert check is not None
    assert check.problems == [f"wrong size: vocab.txt (expected {len(CONTENTS['vocab.txt'])} bytes, found 2)"]


def test_check_without_tree_listing_counts_files(tmp_path, hub_cache):
    make_local_download(tmp_path / "download", CONTENTS, tree_listing=False)
    hydrate(tmp_path / "download", REPO_ID, hub_cache)

    check = check_snapshot(hub_cache, REPO_ID)

    assert check is not None
    assert not check.has_tree_listing
    assert check.files == len(CONTENTS)
    assert check.complete


def test_list_shows_refs_and_detached_snapshots(tmp_path, hub_cache, staged):
    second, _ = make_local_download(tmp_path / "second", {"config.json": b'{"b": 2}\n'})
    hydrate(tmp_path / "second", REPO_ID, hub_cache, revision=second)
    hydrate(tmp_path / "download", REPO_ID, hub_cache, revision="v1.0")

    rows = [(m.repo_id, m.revision, m.commit, m.files) for m in list_staged(hub_cache)]

    assert rows == [
        (REPO_ID, "main", staged, len(CONTENTS)),
        (REPO_ID, "v1.0", staged, len(CONTENTS)),
        (REPO_ID, None, second, 1),
    ]


def test_list_flags_incomplete_snapshot(hub_cache, staged):
    (hub_cache / "models--acme--tiny-model" / "snapshots" / staged / "config.json").unlink()

    (model,) = list_staged(hub_cache)

    assert model.problems == [f"missing: config.json ({len(CONTENTS['config.json'])} bytes)"]


def test_list_empty_cache(tmp_path):
    assert list_staged(tmp_path / "nothing") == []


@pytest.mark.parametrize("repo_id", ["gpt2", "acme/tiny-model", "Qwen/Qwen3-1.7B", "a_b/c.d-e"])
def test_valid_repo_ids(repo_id):
    assert validate_repo_id(repo_id) == repo_id


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", "a" * 40, "release/2024-01"])
def test_valid_revisions(revision):
    assert validate_revision(revision) == revision


INVALID_REPO_IDS = [
    "org/.small", "-org/small", "org/small-", "org./small", ".org/small", "org/small.", "org/-", "-", "_-",
    "a/b/c", "org/small.git", "org--x/small", "org/a..b", "café/model", "org/sm all", "", "/small", "org/",
    "a" * 97, "a" * 97 + "/small", "org/" + "b" * 97,
]


@pytest.mark.parametrize("repo_id", INVALID_REPO_IDS)
def test_invalid_repo_ids(repo_id):
    with pytest.raises(UserError) as raised:
        validate_repo_id(repo_id)

    assert f"Invalid repository id {repo_id!r}" in str(raised.value)


@pytest.mark.parametrize("repo_id", ["a", "_", "a/b", "_org/_name_", "o.r-g/n.a_m-e", "a" * 96 + "/" + "b" * 96])
def test_valid_edge_repo_ids(repo_id):
    assert validate_repo_id(repo_id) == repo_id


def test_repo_id_check_matches_huggingface_hub():
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hub_validate_repo_id

    valid = ["gpt2", "acme/tiny-model", "Qwen/Qwen3-1.7B", "a_b/c.d-e", "a", "a" * 96 + "/" + "b" * 96]
    for repo_id in valid + INVALID_REPO_IDS:
        try:
            hub_validate_repo_id(repo_id)
            hub_accepts = True
        except HFValidationError:
            hub_accepts = False
        try:
            validate_repo_id(repo_id)
            forge_accepts = True
        except UserError:
            forge_accepts = False

        assert forge_accepts == hub_accepts, repo_id


@pytest.mark.parametrize(
    "revision", ["", "/main", "a/../b", "a//b", "..", "a\nb", "main ", " main", "a\tb", "v1\x00", "v1\x7f", "a~1", "a^", "a:b", "a\\b"],
)
def test_invalid_revisions(revision):
    with pytest.raises(UserError) as raised:
        validate_revision(revision)

    assert repr(revision) in str(raised.value)


def test_repo_id_of_folder_names():
    assert repo_id_of("models--acme--tiny-model") == "acme/tiny-model"
    assert repo_id_of("models--gpt2") == "gpt2"
    assert repo_id_of("datasets--acme--data") is None
    assert repo_id_of(".locks") is None


@pytest.mark.parametrize(("size", "text"), [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (91_600_000, "91.6 MB"), (3 * 10**12, "3.0 TB")])
def test_format_size(size, text):
    assert format_size(size) == text
