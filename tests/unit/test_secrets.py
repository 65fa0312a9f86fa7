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
