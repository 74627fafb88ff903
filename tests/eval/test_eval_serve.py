"""Serving an export for eval: loopback only, float32 on CPU, sampling that `transformers serve` honours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.evaluate import serve


def test_command_is_loopback_and_float32_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "has_gpu", lambda: False)
    assert serve.pick_server("auto") == "transformers"
    cmd = serve.command("transformers", "runs/x/export", 8123)
    assert cmd[1:3] == ["-m", "stages.evaluate.serve_transformers"]
    assert cmd[3:6] == ["serve", "runs/x/export", "--host"] and "127.0.0.1" in cmd
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


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random student exported as `make sft` exports it (weights, config, processor)."""
    pytest.importorskip("transformers")
    from stages.sft.model import build_model, tiny_config
    from stages.sft.processor import build_tiny_processor, save_processor
    from stages.sft.student_export import export

    base = tmp_path_factory.mktemp("student")
    processor = build_tiny_processor(max_pixels=16384)
    save_processor(processor, base / "processor")
    model = build_model(tiny_config(processor.tokenizer))
    return export(model, base / "export", processor_dir=base / "processor")


MALFORMED = (
    '<think>crop it</think><tool_call>{"name": "code", "arguments": {"code": "x"}</tool_call><|im_end|>'
)


def test_serving_view_hands_a_malformed_tool_call_back_as_text(tiny_export: Path, tmp_path: Path) -> None:
    """The stock Qwen reply parsing fails on malformed tool JSON (the server's 500); the view's
    template gives the turn back verbatim for trajforge's reader, and the export is untouched."""
    from transformers import AutoTokenizer

    from stages.evaluate.serve_transformers import register_image_only_processor

    register_image_only_processor()
    from transformers import AutoProcessor
    from transformers.cli.serving.utils import parse_assistant_message

    view = serve.serving_view(tiny_export, tmp_path / "view", text_replies=True)
    processor = AutoProcessor.from_pretrained(str(view))  # image-only: no torchvision needed
    stock = AutoTokenizer.from_pretrained(str(tiny_export))
    config = __import__("transformers").AutoConfig.from_pretrained(str(view))
    prefix = stock("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    reply = stock(MALFORMED)["input_ids"]
    content, reasoning, calls = parse_assistant_message(processor, config, reply, input_ids=prefix)
    assert content == MALFORMED.removesuffix("<|im_end|>") and reasoning is None and calls is None
    with pytest.raises(Exception):  # noqa: B017  what `transformers serve` answers 500 on
        parse_assistant_message(stock, config, reply, input_ids=prefix)
    assert "response_template" not in json.loads((tiny_export / "tokenizer_config.json").read_text())
    assert (view / "config.json").resolve() == (tiny_export / "config.json").resolve()
    native = serve.serving_view(tiny_export, tmp_path / "native", text_replies=False)
    assert "response_template" not in json.loads((native / "tokenizer_config.json").read_text())


@pytest.mark.slow
def test_served_student_answers_over_http(tiny_export: Path, tmp_path: Path) -> None:
    """A real `transformers serve` on loopback for the export (no torchvision needed): 200, text."""
    import httpx

    with serve.serve(
        str(tiny_export), server="transformers", log_path=tmp_path / "server.log", text_replies=True
    ) as served:
        body = {
            "model": served.model,
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 8,
            **serve.sampling_body(served.model, None, None),
        }
        reply = httpx.post(f"{served.base_url}/chat/completions", json=body, timeout=120).json()
    assert isinstance(reply["choices"][0]["message"]["content"], str)
    assert served.model == str(tmp_path / "served-model")
