"""Config: YAML + dotted overrides, strict keys, secrets only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config, resolved_yaml, secret


def test_overrides_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("teacher:\n  model: m1\nsynth:\n  rollouts: 2\n")
    cfg = load_config(path, ["teacher.model=gpt-x", "synth.max_turns=5", "tools.visit.allow_hosts=[a, b]"])
    assert (cfg.teacher.model, cfg.synth.rollouts, cfg.synth.max_turns) == ("gpt-x", 2, 5)
    assert cfg.tools.visit.allow_hosts == ["a", "b"]


def test_unknown_key_and_bad_value_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"teacher\.modle"):
        load_config(None, ["teacher.modle=x"])
    with pytest.raises(ConfigError, match=r"synth\.rollouts"):
        load_config(None, ["synth.rollouts=many"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(None, ["no-equals-sign"])


def test_secrets_come_from_the_environment_and_never_reach_the_resolved_config(monkeypatch) -> None:
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-very-secret")
    cfg = load_config(None, ["teacher.api_key_env=MY_TEACHER_KEY"])
    assert secret(cfg.teacher.api_key_env, purpose="teacher") == "sk-very-secret"
    text = resolved_yaml(cfg)
    assert "MY_TEACHER_KEY" in text and "sk-very-secret" not in text
    monkeypatch.delenv("MY_TEACHER_KEY")
    with pytest.raises(ConfigError, match="export it"):
        secret("MY_TEACHER_KEY", purpose="teacher")
