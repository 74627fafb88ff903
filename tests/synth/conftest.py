"""A tiny OpenAI-compatible loopback server for synth tests, scripted per test.

`FakeTeacher(handler)` runs an aiohttp app on 127.0.0.1 in a background thread; `handler(body)`
returns either a reply text (wrapped into a chat completion), a dict (sent as the JSON body), or
a `Fault` (status, headers, raw body, or a hang). Every request body is kept in `.requests`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web


@dataclass
class Fault:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"error": {"message": "injected"}}'
    hang_s: float = 0.0


def completion(
    text: str | None,
    *,
    extra: dict[str, Any] | None = None,
    finish: str = "stop",
    message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A chat completion; `message` adds fields (reasoning_content, tool_calls, refusal, ...)."""
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, **(message or {})},
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": len((text or "").split()), "total_tokens": 10},
    }
    body.update(extra or {})
    return body


def as_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A completion as a streaming server sends it: one delta per message field, then usage."""
    base = {"id": body["id"], "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
    choice = body["choices"][0]
    fields = {k: v for k, v in choice["message"].items() if k != "role" and v is not None}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
    for key, value in fields.items():
        if key == "tool_calls":
            value = [{"index": i, **call} for i, call in enumerate(value)]
        chunks.append({**base, "choices": [{"index": 0, "delta": {key: value}, "finish_reason": None}]})
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]})
    chunks.append({**base, "choices": [], "usage": body.get("usage")})
    return chunks


class FakeTeacher:
    def __init__(self, handler: Callable[[dict[str, Any]], Any], latency_s: float = 0.0):
        self.handler, self.latency_s = handler, latency_s
        self.requests: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        result = self.handler(body)
        if isinstance(result, Fault):
            if result.hang_s:
                await asyncio.sleep(result.hang_s)
            return web.Response(
                status=result.status,
                text=result.body,
                headers=result.headers,
                content_type="application/json",
            )
        if isinstance(result, str):
            result = completion(result)
        if body.get("stream") and isinstance(result, dict) and result.get("choices"):
            result = as_chunks(result)
        if isinstance(result, list):  # chunks: served as server-sent events, like a streaming server
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for chunk in result:
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        return web.Response(text=json.dumps(result), content_type="application/json")

    def close(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def fake_teacher():
    servers: list[FakeTeacher] = []

    def start(handler: Callable[[dict[str, Any]], Any], latency_s: float = 0.0) -> FakeTeacher:
        server = FakeTeacher(handler, latency_s)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


# ------------------------------------------------------------------- fake tools and teacher

from pathlib import Path  # noqa: E402

from PIL import Image  # noqa: E402

from pipeline.schema import Observation  # noqa: E402
from stages.tools.base import Tool, ToolContext  # noqa: E402


class FakeCrop(Tool):
    """A real (tiny) image tool: crops the left half of the first image and registers it."""

    name = "code"

    async def _run(self, arguments, ctx: ToolContext) -> Observation:
        source = next(iter(ctx.images.values()))
        with Image.open(source) as image:
            crop = image.crop((0, 0, max(1, image.width // 2), image.height))
            out = ctx.workdir / f"crop_{len(ctx.images)}.png"
            crop.save(out)
        name = ctx.register_image(out)
        return Observation(text=f"Saved {name}: <image>", images=[str(out)])


class FakeSearch(Tool):
    name = "text_search"

    async def _run(self, arguments, ctx: ToolContext) -> Observation:
        queries = arguments.get("queries") or []
        if not queries:
            return Observation(error="queries must be a non-empty list")
        return Observation(text="\n".join(f"{i + 1}. Result for {q}" for i, q in enumerate(queries)))


def fake_tools(cfg, mode: str, run_dir: Path) -> dict[str, Tool]:
    """A tools factory for the runner (module level so Ray and subprocesses can import it)."""
    tools: dict[str, Tool] = {"code": FakeCrop()}
    if mode == "deepresearch":
        tools["text_search"] = FakeSearch()
    return tools


PLAN = (
    '[{"description": "Crop the region", "tool_name": "code", "parameters": {"operation": "crop"}},'
    ' {"description": "Search [Text read in Step 1]", "tool_name": "text_search",'
    ' "parameters": {"query": "[Text read in Step 1]"}},'
    ' {"description": "Verify", "tool_name": "none", "parameters": {}}]'
)


def scripted_agent(body: dict[str, Any]) -> Any:
    """Planner -> PLAN; executor -> crop, search, answer (by the number of assistant turns)."""
    messages = body["messages"]
    system = messages[0]["content"] if isinstance(messages[0]["content"], str) else ""
    if system.startswith("You are a planning agent"):
        return PLAN
    turns = sum(1 for m in messages if m["role"] == "assistant")
    seed = body.get("seed", 0)
    extra = {"trajforge": {"defects": ["wrong_answer"] if seed == 1 else [], "task_id": None}}
    if turns == 0:
        text = (
            '<think>Crop first.</think><tool_call>{"name": "code", "arguments": {"code": "crop"}}</tool_call>'
        )
    elif turns == 1:
        text = '<think>Search it.</think><tool_call>{"name": "text_search", "arguments": {"queries": ["x"]}}</tool_call>'
    else:
        text = f"<think>Done.</think><answer>answer-{seed}</answer>"
    return completion(text, extra=extra)
