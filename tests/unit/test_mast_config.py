"""Reading the MAST backend section: defaults from conf/backend/mast.yaml and invalid values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from forge_launcher.errors import ConfigError
from forge_launcher_mast.config import read_config
from tests.conftest import REPO_ROOT


def default_section(storage_root: Path) -> dict[str, Any]:
    """Return conf/backend/mast.yaml resolved the way the core resolves the backend section."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({
        "backend": OmegaConf.load(REPO_ROOT / "conf" / "backend" / "mast.yaml"),
        "storage": {"root": str(storage_root)},
    })
    return OmegaConf.to_container(cfg.backend, resolve=True)


def test_defaults(tmp_path: Path) -> None:
    config = read_config(default_section(tmp_path))

    assert config.scheduler == "mast_conda"
    assert config.scheduler_args == {}
    assert config.sku == "gtt_any"
    assert config.worker_port == 26600
    assert config.client.sku is None
    assert config.env["HF_HOME"] == str(tmp_path / "hf")
    assert config.env["HF_HUB_OFFLINE"] == "1"
    assert config.env["TRANSFORMERS_OFFLINE"] == "1"
    assert config.env["WANDB_MODE"] == "offline"


def test_null_scheduler_args_dropped(tmp_path: Path) -> None:
    section = default_section(tmp_path)
    section["scheduler_args"]["hpcIdentity"] = "team"

    assert read_config(section).scheduler_args == {"hpcIdentity": "team"}


def test_unknown_key(tmp_path: Path) -> None:
    section = default_section(tmp_path)
    section["skuu"] = "gtt_any"

    with pytest.raises(ConfigError) as error:
        read_config(section)
    assert "backend.skuu" in str(error.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("sku", "", "backend.sku"),
        ("sku", "???", "backend.sku"),
        ("scheduler", None, "backend.scheduler"),
        ("worker_port", 70000, "backend.worker_port"),
        ("worker_port", "26600", "backend.worker_port"),
        ("worker_command", [], "backend.worker_command"),
        ("client_command", "forge bootstrap", "backend.client_command"),
        ("idle_timeout", 0, "backend.idle_timeout"),
        ("provision_timeout", -1, "backend.provision_timeout"),
        ("extra_packages", "oil.oilfs", "backend.extra_packages"),
        ("scheduler_args", ["hpcIdentity"], "backend.scheduler_args"),
    ],
)
def test_invalid_value(tmp_path: Path, key: str, value: Any, expected: str) -> None:
    section = default_section(tmp_path)
    section[key] = value

    with pytest.raises(ConfigError) as error:
        read_config(section)
    assert expected in str(error.value)


def test_invalid_host_gpu(tmp_path: Path) -> None:
    section = default_section(tmp_path)
    section["host"]["gpu"] = -1

    with pytest.raises(ConfigError) as error:
        read_config(section)
    assert "backend.host.gpu" in str(error.value)


def test_nested_env_value(tmp_path: Path) -> None:
    section = default_section(tmp_path)
    section["env"]["NCCL_DEBUG"] = {"level": "WARN"}

    with pytest.raises(ConfigError) as error:
        read_config(section)
    assert "backend.env.NCCL_DEBUG" in str(error.value)
