"""A tiny OpenAI-compatible loopback server, scripted per test (synth, filter and judge tests).

`FakeTeacher(handler)` runs an aiohttp app on 127.0.0.1 in a background thread; `handler(body)`
returns either a reply text (wrapped into a chat completion), a dict (sent as the JSON body), or
a `Fault` (status, headers, raw body, or a hang). Every request body is kept in `.requests`.
`completion()` builds a reply the way real servers shape it (content may be null; reasoning in
`reasoning_content` as vLLM/SGLang send it or `reasoning` as OpenRouter does; a refusal).
The `fake_teacher` fixture (in the conftests that import it) starts servers and closes them.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    reasoning: str | None = None,
    reasoning_key: str = "reasoning_content",
    refusal: str | None = None,
    message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A chat completion; `message` adds any other message fields (tool_calls, ...)."""
    message = {"role": "assistant", "content": text, **(message or {})}
    if reasoning is not None:
        message[reasoning_key] = reasoning
    if refusal is not None:
        message["refusal"] = refusal
    words = len(f"{text or ''} {reasoning or ''}".split())
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": words, "total_tokens": 10 + words},
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
        self.in_flight = self.peak_in_flight = 0  # requests being answered at once (the latency's overlap)
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
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
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


def serve_fake_teachers():
    """Generator behind the `fake_teacher` fixture: yields start(handler), closes every server."""
    servers: list[FakeTeacher] = []

    def start(handler: Callable[[dict[str, Any]], Any], latency_s: float = 0.0) -> FakeTeacher:
        server = FakeTeacher(handler, latency_s)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
