"""The models plugin: job environment and the preflight check for unstaged models."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from forge_launcher.errors import ConfigError, PreflightError
from forge_launcher.job import Job
from forge_launcher.models import plugin
from forge_launcher.models.hydrate import hydrate
from forge_launcher.models.references import DEFAULT_MODEL_KEYS, find_model_references
from forge_launcher.plugins import load_registry
from tests.hf_hub_server import make_local_download

REPO_ID = "acme/tiny-model"


def make_job(root: Path, config: dict, env: dict[str, str] | None = None) -> Job:
    cfg = OmegaConf.create({"job": {"name": None, "dir": None, "env": {}}, **config})
    return Job(
        name="", dir=Path(), config_path=root / "job.yaml", backend="local", storage="local", detached=False,
        meshes=[], client_gpus=0, script=None, module="workload", args=[], env=dict(env or {}),
        backend_config={}, storage_config={"root": str(root)}, config=cfg,
    )


def stage_fake(root: Path, tmp_path: Path, repo_id: str = REPO_ID, revision: str = "main") -> Path:
    """Hydrate a small fabricated download into ``<root>/hf`` and return the local dir."""
    local_dir = tmp_path / "downloads" / repo_id
    make_local_download(local_dir, {"config.json": b"{}\n", "vocab.txt": b"a\nb\n"})
    hydrate(local_dir, repo_id, root / "hf" / "hub", revision=revision)
    return local_dir


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "storage"
    path.mkdir()
    return path


def test_preflight_sets_hf_environment(root):
    job = make_job(root, {})

    plugin.forge_launcher_preflight(job=job)

    assert job.env["HF_HOME"] == str(root / "hf")
    assert job.env["HF_HUB_OFFLINE"] == "1"
    assert job.env["TRANSFORMERS_OFFLINE"] == "1"


def test_preflight_keeps_user_environment(root):
    job = make_job(root, {}, env={"HF_HOME": "/elsewhere/hf", "TRANSFORMERS_OFFLINE": "0"})

    plugin.forge_launcher_preflight(job=job)

    assert job.env["HF_HOME"] == "/elsewhere/hf"
    assert job.env["TRANSFORMERS_OFFLINE"] == "0"
    assert job.env["HF_HUB_OFFLINE"] == "1"


def test_bootstrap_env_matches_preflight(root):
    job = make_job(root, {})

    assert plugin.forge_launcher_bootstrap_env(job=job) == {
        "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    }


def test_plugin_registered_by_entry_point():
    registry = load_registry()

    implementations = {impl.plugin_name for impl in registry.pm.hook.forge_launcher_preflight.get_hookimpls()}

    assert "models" in implementations


def test_preflight_rejects_unstaged_model(root):
    job = make_job(root, {"model": "Qwen/Qwen3-1.7B"})

    with pytest.raises(PreflightError) as raised:
        plugin.forge_launcher_preflight(job=job)

    message = str(raised.value)
    assert "model: model 'Qwen/Qwen3-1.7B' is not staged" in message
    assert f"forge model stage Qwen/Qwen3-1.7B --storage-root {root}" in message


def test_preflight_groups_keys_of_one_model(root):
    job = make_job(root, {
        "model": "Qwen/Qwen3-1.7B",
        "policy": {"engine_args": {"model": "${model}"}},
        "trainer": {"model": {"hf_assets_path": "hf://${model}"}, "checkpoint": {"initial_load_path": "hf://${model}"}},
    })

    with pytest.raises(PreflightError) as raised:
        plugin.forge_launcher_preflight(job=job)

    message = str(raised.value)
    assert message.count("forge model stage Qwen/Qwen3-1.7B") == 1
    for key in ("model", "policy.engine_args.model", "trainer.model.hf_assets_path", "trainer.checkpoint.initial_load_path"):
        assert key in message, key


def test_preflight_accepts_staged_model(root, tmp_path):
    stage_fake(root, tmp_path)
    job = make_job(root, {"model": REPO_ID, "trainer": {"model": {"hf_assets_path": f"hf://{REPO_ID}"}}})

    plugin.forge_launcher_preflight(job=job)


def test_preflight_rejects_incomplete_snapshot(root, tmp_path):
    stage_fake(root, tmp_path)
    snapshot = next((root / "hf" / "hub" / "models--acme--tiny-model" / "snapshots").iterdir())
    (snapshot / "vocab.txt").unlink()
    job = make_job(root, {"model": REPO_ID})

    with pytest.raises(PreflightError) as raised:
        plugin.forge_launcher_preflight(job=job)

    assert "incomplete (missing: vocab.txt" in str(raised.value)
    assert "Stage it again with: forge model stage acme/tiny-model" in str(raised.value)


def test_preflight_names_other_staged_revisions(root, tmp_path):
    stage_fake(root, tmp_path, revision="v1.0")
    job = make_job(root, {"model": REPO_ID})

    with pytest.raises(PreflightError) as raised:
        plugin.forge_launcher_preflight(job=job)

    assert "staged only at v1.0" in str(raised.value)


def test_preflight_rejects_missing_path_on_storage(root):
    missing = root / "hf_artifacts" / "Qwen3-1.7B"
    job = make_job(root, {"trainer": {"model": {"hf_assets_path": str(missing)}}})

    with pytest.raises(PreflightError) as raised:
        plugin.forge_launcher_preflight(job=job)

    assert "trainer.model.hf_assets_path" in str(raised.value)
    assert repr(str(missing)) in str(raised.value)


def test_preflight_accepts_existing_path_on_storage(root):
    present = root / "hf_artifacts" / "Qwen3-1.7B"
    present.mkdir(parents=True)
    job = make_job(root, {"trainer": {"model": {"hf_assets_path": str(present)}}})

    plugin.forge_launcher_preflight(job=job)


def test_preflight_skips_paths_off_storage(root):
    job = make_job(root, {"trainer": {"model": {"hf_assets_path": "/mnt/cluster-only/Qwen3-1.7B"}}})

    plugin.forge_launcher_preflight(job=job)


def test_preflight_skips_paths_in_job_dir(root):
    job = make_job(root, {"ckpt": "${job.dir}/checkpoints", "trainer": {"checkpoint": {"initial_load_path": "${ckpt}/step-10"}}})

    plugin.forge_launcher_preflight(job=job)


def test_preflight_skips_workload_resolvers(root, caplog):
    job = make_job(root, {"trainer": {"model": {"hf_assets_path": "${workload_only:a,b}"}}})

    plugin.forge_launcher_preflight(job=job)

    assert "trainer.model.hf_assets_path" in caplog.text


def test_model_keys_setting_replaces_defaults(root):
    job = make_job(root, {"model": "Qwen/Qwen3-1.7B", "reference": {"name": "acme/other"}})
    job.config.job.model_keys = ["reference.name"]

    with pytest.raises(PreflightError) as raised:
        plugin.forge_launcher_preflight(job=job)

    assert "acme/other" in str(raised.value)
    assert "Qwen/Qwen3-1.7B" not in str(raised.value)


def test_empty_model_keys_turns_check_off(root):
    job = make_job(root, {"model": "Qwen/Qwen3-1.7B"})
    job.config.job.model_keys = []

    plugin.forge_launcher_preflight(job=job)


def test_invalid_model_keys_is_config_error(root):
    job = make_job(root, {"model": "Qwen/Qwen3-1.7B"})
    job.config.job.model_keys = "model"

    with pytest.raises(ConfigError) as raised:
        plugin.forge_launcher_preflight(job=job)

    assert "job.model_keys" in str(raised.value)


def test_online_job_skips_check(root):
    job = make_job(root, {"model": "Qwen/Qwen3-1.7B"}, env={"HF_HUB_OFFLINE": "0"})

    plugin.forge_launcher_preflight(job=job)


def test_custom_hf_home_in_stage_command(root, tmp_path):
    other = tmp_path / "elsewhere" / "hf"
    job = make_job(root, {"model": "Qwen/Qwen3-1.7B"}, env={"HF_HOME": str(other)})

    with pytest.raises(PreflightError) as raised:
        plugin.forge_launcher_preflight(job=job)

    assert f"forge model stage Qwen/Qwen3-1.7B --hf-home {other}" in str(raised.value)
    assert str(other / "hub") in str(raised.value)


def test_invalid_repo_id_in_config(root):
    job = make_job(root, {"trainer": {"model": {"hf_assets_path": "hf://a/b/c"}}})

    with pytest.raises(PreflightError) as raised:
        plugin.forge_launcher_preflight(job=job)

    assert "'hf://a/b/c' is not a valid repository id" in str(raised.value)


def test_references_ignore_launcher_sections(root):
    job = make_job(root, {"model": "acme/x"})
    job.config.job.env = {"model": "acme/not-a-model-key"}

    references = find_model_references(job.config, list(DEFAULT_MODEL_KEYS))

    assert [(r.key, r.repo_id) for r in references] == [("model", "acme/x")]


def test_references_skip_non_string_values(root):
    job = make_job(root, {"model": {"name": "qwen3", "flavor": "1.7B"}, "trainer": {"model": {"hf_assets_path": None}}})

    assert find_model_references(job.config, list(DEFAULT_MODEL_KEYS)) == []
