"""Serve an exported model on a free loopback port for `trajforge eval --serve PATH`.

`transformers serve` (FastAPI + uvicorn, from the `train` extra) on CPU or GPU; vLLM where a GPU
is present and `vllm` is installed (`server="auto"` picks it there). The server is a child
process: started, polled on `/v1/models` until it answers, and stopped (its process group) when
the block ends, whatever happens inside. Its log goes to a file, which the error quotes when
it does not come up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


class ServeError(RuntimeError):
    """The server did not start; the message says why and quotes its log."""


@dataclass
class Served:
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the name requests must carry
    server: str  # transformers | vllm


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def pick_server(server: str) -> str:
    """`auto`: vLLM when a GPU and vllm are there, else transformers."""
    if server != "auto":
        return server
    return "vllm" if has_gpu() and shutil.which("vllm") else "transformers"


def command(server: str, model: str, port: int) -> list[str]:
    """The server's command line (loopback only)."""
    if server == "vllm":
        return [shutil.which("vllm") or "vllm", "serve", model, "--host", "127.0.0.1", "--port", str(port)]
    # the stock CLI with trajforge's image-only processor registered (no torchvision needed)
    cli = [sys.executable, "-m", "stages.evaluate.serve_transformers"]
    # on CPU, float32 generates faster than the bf16 an export is saved in (1.4 s vs 2.1 s for 64
    # tokens of the tiny student, measured side by side)
    device = [] if has_gpu() else ["--device", "cpu", "--dtype", "float32"]
    return [*cli, "serve", model, "--host", "127.0.0.1", "--port", str(port), *device]


@contextlib.contextmanager
def serve(
    model: str,
    *,
    server: str = "auto",
    log_path: Path,
    timeout_s: float = 600.0,
    view_dir: Path | None = None,
    text_replies: bool = False,
) -> Iterator[Served]:
    """Start a server for `model` (a folder or Hub id), yield where it answers, stop it.

    `transformers serve` loads a local folder through `serving_view` (written to `view_dir`,
    default beside the log), so the reply comes back as text when `text_replies`."""
    kind = pick_server(server)
    if kind == "transformers" and Path(model).is_dir():
        view = view_dir or log_path.parent / "served-model"
        model = str(serving_view(Path(model), view, text_replies=text_replies))
    if kind == "transformers":
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            raise ServeError(
                "transformers serve needs fastapi and uvicorn: run `make setup` or "
                "`pip install 'fastapi>=0.110,<1' 'uvicorn>=0.29,<1'`"
            ) from None
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command(kind, model, port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(process, base_url, timeout_s, log_path)
        yield Served(base_url=base_url, model=model, server=kind)
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen, base_url: str, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServeError(f"the model server exited with {process.returncode}:\n{_tail(log_path)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise ServeError(f"the model server did not answer within {timeout_s:.0f}s:\n{_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def untrained_copy(source: Path, target: Path, *, seed: int = 0) -> Path:
    """The same architecture as an exported model with freshly initialised weights (the baseline
    a trained student is compared with); tokenizer, processor and chat template are copied."""
    import shutil as _shutil

    import torch
    import transformers

    if (target / "config.json").exists():
        return target
    config = transformers.AutoConfig.from_pretrained(source)
    torch.manual_seed(seed)
    model = transformers.AutoModelForImageTextToText.from_config(config)
    tmp = target.with_name(target.name + ".tmp")
    _shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for file in source.iterdir():
        if (
            file.is_file()
            and not (tmp / file.name).exists()
            and not file.name.endswith((".safetensors", ".bin"))
        ):
            _shutil.copy2(file, tmp / file.name)
    if not any(tmp.glob("*.safetensors")):
        raise ServeError(f"could not write an untrained copy of {source}")
    os.replace(tmp, target)
    return target


#: How `transformers serve` should read a student's reply: the whole turn as content. Its default
#: for Qwen models splits `<think>` into reasoning and parses `<tool_call>` JSON itself, answering
#: 500 when the JSON does not parse; an R1V4 student writes its tool calls as text, which
#: trajforge's own reader reads (a malformed call is then the model's format error, counted).
TEXT_RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "content": {"close_pattern": r"\s*(?:<\|im_end\|>|<\|endoftext\|>)", "content": "text"},
    },
}


def serving_view(model_dir: Path, target: Path, *, text_replies: bool) -> Path:
    """`model_dir` as `stages.evaluate.serve_transformers` loads it: weights and templates linked, both
    configs naming the image-only processor, and with `text_replies` (an R1V4 text student) the
    tokenizer config carrying `TEXT_RESPONSE_TEMPLATE`. The model folder stays untouched."""
    import json as _json
    import shutil as _shutil

    from stages.sft import IMAGE_ONLY_PROCESSOR

    rewritten = ("tokenizer_config.json", "processor_config.json")
    if not (model_dir / rewritten[0]).exists():
        raise ServeError(f"{model_dir} has no tokenizer_config.json; cannot serve it as a text student")
    _shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for file in model_dir.iterdir():
        if file.name not in rewritten:
            (target / file.name).symlink_to(file.resolve())
    for name in rewritten:
        if not (model_dir / name).exists():
            continue
        data = _json.loads((model_dir / name).read_text())
        data["processor_class"] = IMAGE_ONLY_PROCESSOR
        if name == "tokenizer_config.json" and text_replies:
            data["response_template"] = TEXT_RESPONSE_TEMPLATE
        (target / name).write_text(_json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return target


def sampling_body(model_dir: str, temperature: float | None, top_p: float | None) -> dict[str, str]:
    """Request fields that make `transformers serve` sample as the request asks.

    It ignores `temperature` unless the model's generation config samples (an export's does
    not: greedy, which loops on a small student); a `generation_config` JSON in the request
    replaces the model's, so it carries the model's own (end-of-sequence ids) plus sampling."""
    import json as _json

    import transformers

    try:
        base = transformers.GenerationConfig.from_pretrained(model_dir).to_dict()
    except OSError:
        base = transformers.GenerationConfig.from_model_config(
            transformers.AutoConfig.from_pretrained(model_dir)
        ).to_dict()
    keep = ("eos_token_id", "pad_token_id", "bos_token_id", "decoder_start_token_id")
    config: dict[str, object] = {k: base[k] for k in keep if base.get(k) is not None}
    if config.get("eos_token_id") is None:  # an export may name its end token only in the tokenizer
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        if tokenizer.eos_token_id is not None:
            config["eos_token_id"] = tokenizer.eos_token_id
        if tokenizer.pad_token_id is not None:
            config.setdefault("pad_token_id", tokenizer.pad_token_id)
    if temperature:
        config.update({"do_sample": True, "temperature": temperature, "top_p": top_p or 1.0})
    return {"generation_config": _json.dumps(config)}
