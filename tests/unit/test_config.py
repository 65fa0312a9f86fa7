"""Config composition: overrides, group selection, resolvers and launcher keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from forge_launcher.config import compose, normalize_override, quote_value, split_selection, to_yaml
from forge_launcher.errors import ConfigError, UserError
from forge_launcher.plugins import load_registry


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("value", ["run/epoch=3-step=900.ckpt", "a,b c", "it's", "back\\slash\\", "x'y\\'z", "[not a list", "${oops"])
def test_quote_value_round_trips(value: str) -> None:
    parsed = OverridesParser.create().parse_override("k=" + quote_value(value))
    assert parsed.value() == value


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.ckpt=run/epoch=3-step=900.ckpt", "trainer.ckpt='run/epoch=3-step=900.ckpt'"),
        ("+trainer.note=a,b c", "+trainer.note='a,b c'"),
        ("trainer.lr=0.1", "trainer.lr=0.1"),
        ("job.name=abc", "++job.name=abc"),
        ("+job.name=abc", "++job.name=abc"),
        ("detached=true", "++detached=true"),
        ("a=[1,2]", "a=[1,2]"),
        ("~trainer", "~trainer"),
    ],
)
def test_normalize_override(override: str, expected: str) -> None:
    assert normalize_override(override) == expected


def test_normalize_rejects_explicit_sweep() -> None:
    with pytest.raises(UserError, match="sweep"):
        normalize_override("lr=choice(1,2)")


def test_normalize_rejects_missing_equals() -> None:
    with pytest.raises(UserError, match="KEY=VALUE"):
        normalize_override("trainer")


def test_split_selection_accepts_both_forms() -> None:
    selection = split_selection(["backend=mast", "+storage=oilfs", "a=1"])
    assert selection.backend == "mast"
    assert selection.storage == "oilfs"
    assert selection.overrides == ["a=1"]


def test_compose_defaults_to_local(tmp_path: Path, registry) -> None:
    cfg = compose(str(write(tmp_path, "x: 1\n")), [], registry)
    assert cfg.backend.name == "local"
    assert cfg.storage.name == "local"
    assert cfg.detached is None
    assert cfg.job.name is None


def test_compose_keeps_workload_resolvers(tmp_path: Path, registry) -> None:
    path = write(tmp_path, "a: 1\nb: 2\ntotal: ${sum:${a},${b}}\nckpt: ${job.dir}/ckpt\n")
    cfg = compose(str(path), [], registry)
    assert OmegaConf.to_container(cfg, resolve=False)["total"] == "${sum:${a},${b}}"
    assert "${sum:${a},${b}}" in to_yaml(cfg)


def test_compose_job_keys_interpolate(tmp_path: Path, registry) -> None:
    from omegaconf import open_dict

    path = write(tmp_path, "ckpt: ${job.dir}/ckpt\nrun: ${job.name}\n")
    cfg = compose(str(path), ["job.name=n1"], registry)
    with open_dict(cfg):
        cfg.job.dir = "/runs/n1"
    assert cfg.ckpt == "/runs/n1/ckpt"
    assert cfg.run == "n1"


def test_job_dir_override_rejected() -> None:
    with pytest.raises(UserError, match="job.dir is set by the launcher"):
        normalize_override("job.dir=/etc")


@pytest.mark.parametrize("override", ["=3", "+=3", "~=1"])
def test_empty_override_key_rejected(override: str) -> None:
    with pytest.raises(UserError, match="key before '=' is empty"):
        normalize_override(override)


def test_compose_binary_file(tmp_path: Path, registry) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xd9\xff\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        compose(str(path), [], registry)


def test_compose_duplicate_key_names_line(tmp_path: Path, registry) -> None:
    path = write(tmp_path, "steps: 1\nx: 2\nsteps: 3\n")
    with pytest.raises(ConfigError) as info:
        compose(str(path), [], registry)
    assert f"{path}:3:" in str(info.value)
    assert "duplicate key 'steps'" in str(info.value)


def test_compose_empty_file(tmp_path: Path, registry) -> None:
    with pytest.raises(ConfigError, match="is empty"):
        compose(str(write(tmp_path, "")), [], registry)


def test_compose_values_with_separators_verbatim(tmp_path: Path, registry) -> None:
    path = write(tmp_path, "trainer:\n  ckpt: none\n")
    cfg = compose(str(path), ["trainer.ckpt=run/epoch=3-step=900.ckpt", "+trainer.note=a,b c"], registry)
    assert cfg.trainer.ckpt == "run/epoch=3-step=900.ckpt"
    assert cfg.trainer.note == "a,b c"


def test_compose_yaml_detached_kept(tmp_path: Path, registry) -> None:
    cfg = compose(str(write(tmp_path, "detached: true\n")), [], registry)
    assert cfg.detached is True


def test_compose_backend_in_defaults_list(tmp_path: Path, registry) -> None:
    path = write(tmp_path, "defaults:\n  - backend: local\n  - _self_\nx: 1\n")
    cfg = compose(str(path), [], registry)
    assert cfg.backend.name == "local"
    cfg = compose(str(path), ["+backend=local"], registry)
    assert cfg.backend.name == "local"


def test_compose_unknown_backend_lists_available(tmp_path: Path, registry) -> None:
    with pytest.raises(UserError) as info:
        compose(str(write(tmp_path, "x: 1\n")), ["+backend=nope"], registry)
    assert "'nope'" in str(info.value)
    assert "local" in str(info.value)


def test_compose_unknown_storage_lists_available(tmp_path: Path, registry) -> None:
    with pytest.raises(UserError, match="Available storage"):
        compose(str(write(tmp_path, "x: 1\n")), ["+storage=nope"], registry)


def test_compose_missing_file(tmp_path: Path, registry) -> None:
    with pytest.raises(ConfigError, match="not found"):
        compose(str(tmp_path / "absent.yaml"), [], registry)


def test_compose_yaml_syntax_error_names_line(tmp_path: Path, registry) -> None:
    path = write(tmp_path, "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError) as info:
        compose(str(path), [], registry)
    assert f"{path}:" in str(info.value)
    assert "YAML syntax error" in str(info.value)


def test_compose_unknown_key_override_fails(tmp_path: Path, registry) -> None:
    with pytest.raises(ConfigError, match="trainer.lrr"):
        compose(str(write(tmp_path, "trainer:\n  lr: 1\n")), ["trainer.lrr=2"], registry)


def test_compose_relative_to_cwd(tmp_path: Path, registry, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "x: 1\n", "rel.yaml")
    monkeypatch.chdir(tmp_path)
    cfg = compose("rel.yaml", [], registry)
    assert cfg.x == 1
    assert Path.cwd() == tmp_path


def test_to_yaml_masks_secrets(tmp_path: Path, registry) -> None:
    path = write(tmp_path, "job:\n  env:\n    HF_TOKEN: hf_abc\n    FROM_ENV_TOKEN: ${oc.env:X}\nmax_tokens: 5\n")
    text = to_yaml(compose(str(path), [], registry))
    assert "hf_abc" not in text
    assert "HF_TOKEN: '****'" in text
    assert "${oc.env:X}" in text
    assert "max_tokens: 5" in text
