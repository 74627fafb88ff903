"""Serving an export for eval: loopback only, float32 on CPU, sampling that `transformers serve` honours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import serve


def test_command_is_loopback_and_float32_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "has_gpu", lambda: False)
    assert serve.pick_server("auto") == "transformers"
    cmd = serve.command("transformers", "runs/x/export", 8123)
    assert cmd[1:4] == ["serve", "runs/x/export", "--host"] and "127.0.0.1" in cmd
    assert cmd[cmd.index("--dtype") + 1] == "float32" and cmd[cmd.index("--port") + 1] == "8123"
    vllm = serve.command("vllm", "m", 9000)
    assert vllm[1:3] == ["serve", "m"] and vllm[vllm.index("--host") + 1] == "127.0.0.1"


def test_sampling_body_carries_the_tokenizers_end_token(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from stages.sft.model import tiny_config
    from stages.sft.processor import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = tiny_config(tokenizer)
    config.text_config.eos_token_id = None  # as `make sft` exports it
    config.save_pretrained(tmp_path)
    tokenizer.eos_token = "<|im_end|>" if "<|im_end|>" in tokenizer.get_vocab() else tokenizer.eos_token
    tokenizer.save_pretrained(tmp_path)
    body = json.loads(serve.sampling_body(str(tmp_path), 0.7, 0.9)["generation_config"])
    assert body["do_sample"] is True and body["temperature"] == 0.7 and body["top_p"] == 0.9
    assert (
        body["eos_token_id"] == transformers.AutoTokenizer.from_pretrained(tmp_path).eos_token_id is not None
    )
    greedy = json.loads(serve.sampling_body(str(tmp_path), None, None)["generation_config"])
    assert "do_sample" not in greedy and greedy["eos_token_id"] == body["eos_token_id"]
