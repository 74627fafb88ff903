"""A key pasted where a variable NAME belongs (`teacher.api_key_env: sk-...`) is refused with a
message that says what to do, and reaches neither the run's config.yaml nor the output (issue 26)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import ConfigError, load_config, secret

PASTED = [
    "sk-proj-4fJq9XbT2mZr8LpQ1vNs6KcWdY3hAe7G",
    "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo",
    "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF",
]


@pytest.mark.parametrize("value", PASTED)
def test_a_secret_in_an_env_field_is_refused_without_echo(value):
    for field in ("teacher.api_key_env", "tools.visit.summarizer_key_env", "tools.search.serper_key_env"):
        with pytest.raises(ConfigError) as info:
            load_config(None, [f"{field}={value}"])
        message = str(info.value)
        assert value not in message and value[:12] not in message
        assert field in message and "NAME of an environment variable" in message
    with pytest.raises(ConfigError) as info:
        secret(value, purpose="the teacher")
    assert value not in str(info.value)


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "TEACHER_API_KEY", "my_key", "HF_TOKEN", "KEY2"])
def test_variable_names_still_load(name):
    assert load_config(None, [f"teacher.api_key_env={name}"]).teacher.api_key_env == name


def test_the_cli_refuses_it_before_a_run_folder_is_written(tmp_path):
    value = PASTED[0]
    result = CliRunner().invoke(
        app,
        [
            "synth",
            "--set",
            f"run.root={tmp_path}",
            "--set",
            "run.name=r",
            "--set",
            f"teacher.api_key_env={value}",
        ],
    )
    assert result.exit_code != 0
    assert value not in result.output and "NAME of an environment variable" in result.output
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(value not in p.read_text(errors="replace") for p in written)
    assert not (tmp_path / "r" / "config.yaml").exists()
