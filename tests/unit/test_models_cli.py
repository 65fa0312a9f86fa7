"""``forge model`` as a user runs it, without a hub: hydrate, verify, list and their errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forge_launcher.errors import ForgeLauncherError
from forge_launcher.models import verify as verify_module
from tests.conftest import run_forge
from tests.hf_hub_server import make_local_download

REPO_ID = "acme/tiny-model"
CONTENTS = {"config.json": b"{}\n", "vocab.txt": b"a\nb\nc\n", "1_Pooling/config.json": b'{"p": 1}\n'}


@pytest.fixture
def download(tmp_path: Path) -> tuple[Path, str]:
    local_dir = tmp_path / "download"
    commit, _ = make_local_download(local_dir, CONTENTS)
    return local_dir, commit


def test_help_lists_subcommands():
    result = run_forge("model", "--help")

    assert result.returncode == 0
    for command in ("stage", "hydrate", "verify", "list"):
        assert command in result.stdout, command


def test_modules_do_not_import_huggingface_hub():
    code = (
        "import sys, forge_launcher.models.cli, forge_launcher.models.plugin; "
        "print('huggingface_hub' in sys.modules)"
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"


def test_hydrate_uses_forge_storage_root(download, forge_env):
    local_dir, commit = download

    result = run_forge("model", "hydrate", str(local_dir), "--repo-id", REPO_ID)

    assert result.returncode == 0, result.stderr
    assert f"Hydrated {REPO_ID} at main (commit {commit})" in result.stdout
    assert f"{len(CONTENTS)} hard-linked, 0 copied" in result.stdout
    ref = forge_env["storage"] / "hf" / "hub" / "models--acme--tiny-model" / "refs" / "main"
    assert ref.read_text() == commit


def test_hydrate_storage_root_option(download, tmp_path):
    local_dir, commit = download
    root = tmp_path / "other-root"

    result = run_forge("model", "hydrate", str(local_dir), "--repo-id", REPO_ID, "--storage-root", str(root))

    assert result.returncode == 0, result.stderr
    assert (root / "hf" / "hub" / "models--acme--tiny-model" / "refs" / "main").read_text() == commit


def test_hydrate_missing_dir_exits_2(tmp_path):
    missing = tmp_path / "nowhere"

    result = run_forge("model", "hydrate", str(missing), "--repo-id", REPO_ID)

    assert result.returncode == 2
    assert f"Local directory '{missing}' not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_hydrate_file_is_not_a_directory(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")

    result = run_forge("model", "hydrate", str(a_file), "--repo-id", REPO_ID)

    assert result.returncode == 2
    assert f"Local directory '{a_file}' is not a directory" in result.stderr
    assert "not found" not in result.stderr


@pytest.mark.parametrize("repo_id", ["org/.plain", "org/plain.", "-org/plain", "org-/plain", "org/_ok-", ".org/plain"])
def test_hydrate_dotted_repo_id_exits_2(download, forge_env, repo_id):
    local_dir, _ = download

    result = run_forge("model", "hydrate", str(local_dir), f"--repo-id={repo_id}")

    assert result.returncode == 2
    assert f"Invalid repository id {repo_id!r}" in result.stderr
    assert not (forge_env["storage"] / "hf" / "hub").exists()


def test_hydrate_incomplete_advice_names_storage_root(download, tmp_path):
    local_dir, _ = download
    (local_dir / "vocab.txt").write_text("truncated")
    root = tmp_path / "other-root"

    result = run_forge("model", "hydrate", str(local_dir), "--repo-id", REPO_ID, "--storage-root", str(root))

    assert result.returncode == 2
    assert "wrong size: vocab.txt" in result.stderr
    assert f"forge model stage {REPO_ID} --local-dir {local_dir} --storage-root {root}" in result.stderr


def test_hydrate_storage_root_file_exits_2(download, tmp_path):
    local_dir, _ = download
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")

    result = run_forge("model", "hydrate", str(local_dir), "--repo-id", REPO_ID, "--storage-root", str(a_file / "sub"))

    assert result.returncode == 2
    assert f"'{a_file}' is a file" in result.stderr
    assert "Traceback" not in result.stderr


def test_hydrate_without_metadata_exits_2(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")

    result = run_forge("model", "hydrate", str(plain), "--repo-id", REPO_ID)

    assert result.returncode == 2
    assert "No huggingface_hub download metadata" in result.stderr
    assert "--commit COMMIT" in result.stderr


def test_hydrate_commit_option_hashes_plain_dir(tmp_path, forge_env):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    commit = "d" * 40

    result = run_forge("model", "hydrate", str(plain), "--repo-id", REPO_ID, "--commit", commit)

    assert result.returncode == 0, result.stderr
    assert "1 files without download metadata were hashed" in result.stdout
    assert "no tree listing" in result.stdout


def test_hydrate_incomplete_download_exits_2(download):
    local_dir, _ = download
    (local_dir / "vocab.txt").unlink()

    result = run_forge("model", "hydrate", str(local_dir), "--repo-id", REPO_ID)

    assert result.returncode == 2
    assert "missing: vocab.txt" in result.stderr
    assert f"forge model stage {REPO_ID} --local-dir {local_dir}" in result.stderr


def test_hydrate_invalid_repo_id_exits_2(download):
    local_dir, _ = download

    result = run_forge("model", "hydrate", str(local_dir), "--repo-id", "not a repo")

    assert result.returncode == 2
    assert "Invalid repository id 'not a repo'" in result.stderr


def test_verify_after_hydrate_succeeds(download):
    local_dir, commit = download
    assert run_forge("model", "hydrate", str(local_dir), "--repo-id", REPO_ID).returncode == 0

    result = run_forge("model", "verify", REPO_ID)

    assert result.returncode == 0, result.stderr
    assert f"OK: {REPO_ID} at main (commit {commit})" in result.stdout
    assert f"{len(CONTENTS)} files" in result.stdout


def test_verify_names_missing_file(download, forge_env):
    local_dir, commit = download
    assert run_forge("model", "hydrate", str(local_dir), "--repo-id", REPO_ID).returncode == 0
    snapshot = forge_env["storage"] / "hf" / "hub" / "models--acme--tiny-model" / "snapshots" / commit
    (snapshot / "1_Pooling" / "config.json").unlink()

    result = run_forge("model", "verify", REPO_ID)

    assert result.returncode == 1
    assert "missing: 1_Pooling/config.json (9 bytes)" in result.stderr
    assert f"forge model stage {REPO_ID} --storage-root {forge_env['storage']}" in result.stderr


def test_verify_unstaged_exits_2(forge_env):
    result = run_forge("model", "verify", "acme/never-staged")

    assert result.returncode == 2
    assert "acme/never-staged at revision 'main' is not staged" in result.stderr
    assert f"forge model stage acme/never-staged --storage-root {forge_env['storage']}" in result.stderr


def test_verify_unstaged_revision_names_it(download):
    local_dir, _ = download
    assert run_forge("model", "hydrate", str(local_dir), "--repo-id", REPO_ID).returncode == 0

    result = run_forge("model", "verify", REPO_ID, "--revision", "v2")

    assert result.returncode == 2
    assert f"forge model stage {REPO_ID} --revision v2" in result.stderr


def test_verify_dotted_repo_id_exits_2(forge_env):
    result = run_forge("model", "verify", "org/.small")

    assert result.returncode == 2
    assert "Invalid repository id 'org/.small'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "HFValidationError" not in result.stderr


def test_list_empty(forge_env):
    forge_env["storage"].mkdir()

    result = run_forge("model", "list")

    assert result.returncode == 0
    assert f"No models staged in {forge_env['storage'] / 'hf' / 'hub'}" in result.stdout


def test_list_storage_root_file_exits_2(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")

    result = run_forge("model", "list", "--storage-root", str(a_file))

    assert result.returncode == 2
    assert f"The storage root '{a_file}' is not a directory" in result.stderr
    assert "No models staged" not in result.stdout


def test_list_missing_storage_root_exits_2(tmp_path):
    missing = tmp_path / "nowhere"

    result = run_forge("model", "list", "--storage-root", str(missing))

    assert result.returncode == 2
    assert f"The storage root '{missing}' does not exist" in result.stderr
    assert "No models staged" not in result.stdout


def test_list_hf_home_file_exits_2(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")

    result = run_forge("model", "list", "--hf-home", str(a_file))

    assert result.returncode == 2
    assert f"The Hugging Face home '{a_file}' is not a directory" in result.stderr


def test_list_shows_staged_model(download):
    local_dir, commit = download
    assert run_forge("model", "hydrate", str(local_dir), "--repo-id", REPO_ID).returncode == 0

    result = run_forge("model", "list")

    assert result.returncode == 0
    header, row = result.stdout.splitlines()
    assert header.split() == ["REPO", "REVISION", "COMMIT", "SIZE", "FILES"]
    assert row.split() == [REPO_ID, "main", commit, "18", "B", str(len(CONTENTS))]


def test_unknown_subcommand_exits_2():
    result = run_forge("model", "download", REPO_ID)

    assert result.returncode == 2
    assert "invalid choice: 'download'" in result.stderr


def test_verify_probe_crash_shows_last_line(tmp_path, monkeypatch):
    frames = "".join(f'  File "/site-packages/module{i}.py", line {i}, in function{i}\n    call{i}()\n' for i in range(10))
    stderr = "Traceback (most recent call last):\n" + frames + "RuntimeError: the probe crashed\n"

    def crashed_probe(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="", stderr=stderr)

    monkeypatch.setattr(verify_module.subprocess, "run", crashed_probe)
    monkeypatch.setattr(verify_module.tempfile, "tempdir", str(tmp_path))

    with pytest.raises(ForgeLauncherError) as raised:
        verify_module.verify(REPO_ID, tmp_path / "hf")

    message = str(raised.value)
    assert "failed with exit code 1: RuntimeError: the probe crashed." in message
    assert "File " not in message
    assert "Traceback" not in message
    (log_file,) = tmp_path.glob("forge-model-verify-*.log")
    assert f"Its full output is in {log_file}." in message
    assert log_file.read_text() == stderr
