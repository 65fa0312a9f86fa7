"""Secret detection and masking."""

import pytest

from forge_launcher.secrets import MASK, is_secret_name, mask_env, mask_secrets


@pytest.mark.parametrize("name", ["HF_TOKEN", "WANDB_API_KEY", "aws_secret_access_key", "db-password", "token", "MY.SECRET"])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["max_tokens", "monkey", "keyboard", "HF_HOME", "tokenizer", "n"])
def test_plain_names(name: str) -> None:
    assert not is_secret_name(name)


def test_mask_secrets_nested() -> None:
    masked = mask_secrets({"a": {"HF_TOKEN": "x", "ok": 1}, "l": [{"api_key": "y"}], "ref_token": "${oc.env:T}"})
    assert masked == {"a": {"HF_TOKEN": MASK, "ok": 1}, "l": [{"api_key": MASK}], "ref_token": "${oc.env:T}"}


def test_mask_env() -> None:
    assert mask_env({"HF_TOKEN": "x", "HF_HOME": "/h"}) == {"HF_TOKEN": MASK, "HF_HOME": "/h"}


def test_mask_secret_lists() -> None:
    masked = mask_secrets({"secret_list": ["a", "${oc.env:B}"], "ok": ["c"]})
    assert masked == {"secret_list": [MASK, "${oc.env:B}"], "ok": ["c"]}


def test_literal_secret_paths() -> None:
    from forge_launcher.secrets import literal_secret_paths

    container = {"wandb": {"api_key": "k", "project": "p"}, "hf_token": "${oc.env:HF_TOKEN}", "l": [{"token": "t"}]}
    assert literal_secret_paths(container) == ["wandb.api_key", "l.0.token"]
