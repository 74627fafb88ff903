"""The world's loopback HTTP server: encyclopedia pages and images, and the oracle teacher.

Routes (any Host header):
    GET  /                       encyclopedia index
    GET  /wiki/<slug>            an encyclopedia page (HTML)
    GET  /images/<file>          an entity image
    GET  /v1/models              one model, "oracle"
    POST /v1/chat/completions    the oracle (planner, executor, judges); stream=True supported;
                                 replies shaped by knobs.teacher_style (world.style)
    GET|POST /admin/knobs        read or update the knobs (latency, rate limit, errors, defects,
                                 teacher_style: fields given there replace those fields)
    GET  /healthz
One asyncio (aiohttp) server in a background thread: added latency is an `asyncio.sleep`, so
hundreds of delayed requests are held at once; oracle work runs in a thread pool.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from world.knobs import Knobs, RateLimiter, draw_error, sample_latency
from world.knowledge import Knowledge
from world.oracle import Oracle, Reply, salt_of
from world.style import Output, shape
from world.truth import TruthLog

MODEL = "oracle"
_SLUG_RE = re.compile(r"^[A-Za-z0-9_'\-]+$")
_FILE_RE = re.compile(r"^[A-Za-z0-9_'\-]+\.png$")


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class _App:
    """Request handlers bound to one world and one mutable set of knobs."""

    def __init__(self, world_dir: Path, knobs: Knobs, truth: TruthLog | None = None) -> None:
        self.dir = Path(world_dir).resolve()
        self.truth = truth
        self.kb = Knowledge(self.dir)
        self.knobs = knobs
        self.oracle = Oracle(self.kb, knobs)
        self.rng = random.Random(knobs.seed)
        self.limiter = RateLimiter(knobs.rate_limit) if knobs.rate_limit else None
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="oracle")
        self.log_lock = threading.Lock()
        # held / peak_held: requests sleeping out their latency now and at most, the proof that
        # a client's requests really overlap at the server (client-side timings include queueing)
        self.stats = {"requests": 0, "rejected": 0, "errors": 0, "held": 0, "peak_held": 0}

    # --------------------------------------------------------------- knobs
    def set_knobs(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self.oracle.knobs = knobs
        self.rng = random.Random(knobs.seed)
        self.limiter = RateLimiter(knobs.rate_limit) if knobs.rate_limit else None

    async def _hold(self, delay: float) -> None:
        self.stats["held"] += 1
        self.stats["peak_held"] = max(self.stats["peak_held"], self.stats["held"])
        try:
            await asyncio.sleep(delay)
        finally:
            self.stats["held"] -= 1

    async def get_knobs(self, request: web.Request) -> web.Response:
        return web.json_response({"knobs": self.knobs.model_dump(), "stats": self.stats})

    async def post_knobs(self, request: web.Request) -> web.Response:
        try:
            update = dict(await request.json())
            current = self.knobs.model_dump()
            if isinstance(update.get("teacher_style"), dict):
                update["teacher_style"] = current["teacher_style"] | update["teacher_style"]
            knobs = Knobs.model_validate(current | update)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": {"message": f"bad knobs: {exc}"}}, status=400)
        self.set_knobs(knobs)
        return web.json_response({"knobs": knobs.model_dump()})

    # --------------------------------------------------------------- web
    async def index(self, request: web.Request) -> web.Response:
        return web.FileResponse(
            self.dir / "corpus" / "html" / "index.html", headers={"Content-Type": "text/html"}
        )

    async def page(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info["slug"]
        path = self.dir / "corpus" / "html" / f"{slug}.html"
        if not _SLUG_RE.match(slug) or not path.is_file():
            return web.Response(status=404, text=f"no page named {slug}", content_type="text/plain")
        return web.Response(body=path.read_bytes(), content_type="text/html", charset="utf-8")

    async def image(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = self.dir / "corpus" / "images" / name
        if not _FILE_RE.match(name) or not path.is_file():
            return web.Response(status=404, text=f"no image named {name}", content_type="text/plain")
        return web.Response(body=path.read_bytes(), content_type="image/png")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "tasks": len(self.kb.tasks)})

    # --------------------------------------------------------------- OpenAI
    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "trajforge-world"}],
            }
        )

    def _error(
        self, status: int, message: str, kind: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response(
            {"error": {"message": message, "type": kind, "code": status}}, status=status, headers=headers
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.stats["requests"] += 1
        knobs = self.knobs
        if self.limiter is not None:
            wait = self.limiter.admit()
            if knobs.rate_limit_headers:
                request["ratelimit"] = self.limiter.headers()  # stamped by _stamp_ratelimit
            if wait > 0:
                self.stats["rejected"] += 1
                return self._error(
                    429,
                    "rate limit exceeded",
                    "rate_limit_exceeded",
                    {
                        "Retry-After": str(max(1, round(wait + 0.5))),
                        "retry-after-ms": str(int(wait * 1000) + 1),
                    },
                )
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "request body is not JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._error(400, "expected a JSON object with a 'messages' list", "invalid_request_error")
        error = draw_error(knobs, self.rng)
        delay = sample_latency(knobs.latency, self.rng)
        if error == "429":
            self.stats["errors"] += 1
            return self._error(
                429,
                "injected rate limit",
                "rate_limit_exceeded",
                {
                    "Retry-After": str(max(1, round(knobs.retry_after_s))),
                    "retry-after-ms": str(int(knobs.retry_after_s * 1000)),
                },
            )
        if error == "500":
            self.stats["errors"] += 1
            return self._error(500, "injected server error", "server_error")
        if error == "503":
            self.stats["errors"] += 1
            return self._error(503, "injected overload: the server is busy", "service_unavailable")
        if error == "drop":  # the connection closes before any response, as a restarting proxy's
            self.stats["errors"] += 1
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        if error == "hang":
            self.stats["errors"] += 1
            await asyncio.sleep(knobs.hang_s)
        if delay:
            await self._hold(delay)
        loop = asyncio.get_running_loop()
        reply: Reply = await loop.run_in_executor(self.pool, self.oracle.respond, body)
        if error in ("truncated", "malformed"):
            self.stats["errors"] += 1
        if error == "malformed":
            return web.Response(
                text='{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess',
                content_type="application/json",
            )
        out = shape(reply, body, knobs.teacher_style, salt_of(body), cut_half=error == "truncated")
        record = reply.record() | out.record
        self._log(reply, body, out)
        if self.truth is not None and reply.role == "executor":
            self.truth.write(reply.task_id, salt_of(body), reply.defects, reply.injected)
        if body.get("stream") and knobs.stream:
            return await self._stream(request, body, out, record)
        prompt = _tokens(json.dumps(body.get("messages"))[:20000])
        completion = _tokens(out.generated)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(body.get("model") or MODEL),
                "choices": [
                    {"index": 0, "message": out.message(), "finish_reason": out.finish, "logprobs": None}
                ],
                **({} if out.record.get("no_usage") else {"usage": usage}),
                "trajforge": record,
            }
        )

    async def _stream(
        self, request: web.Request, body: dict[str, Any], out: Output, record: dict[str, Any]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": str(body.get("model") or MODEL),
        }
        chunks = [
            {
                **base,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                ],
                "trajforge": record,
            }
        ]
        chunks += [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            for delta in out.deltas()
        ]
        chunks.append(
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "finish_reason": out.finish}],
                "trajforge": record,
            }
        )
        if (body.get("stream_options") or {}).get("include_usage") and not out.record.get("no_usage"):
            prompt = _tokens(json.dumps(body.get("messages"))[:20000])
            completion = _tokens(out.generated)
            chunks.append(
                {
                    **base,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": prompt + completion,
                    },
                }
            )
        for chunk in chunks:
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _log(self, reply: Reply, body: dict[str, Any], out: Output) -> None:
        styled = {k: v for k, v in out.record.items() if k != "slips_sent" and v}
        if not reply.injected and not styled:
            return
        path = Path(self.knobs.log_path) if self.knobs.log_path else self.dir / "logs" / "oracle.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        row = {
            "time": time.time(),
            "task_id": reply.task_id,
            "role": reply.role,
            "injected": reply.injected,
            "defects": reply.defects,
            **styled,
            "seed": body.get("seed"),
            "user": body.get("user"),
        }
        with self.log_lock, path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    @staticmethod
    async def _stamp_ratelimit(request: web.Request, response: web.StreamResponse) -> None:
        """Every reply to an admitted or refused chat request states the bucket (429s too)."""
        if (headers := request.get("ratelimit")) is not None:
            response.headers.update(headers)

    def application(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.on_response_prepare.append(self._stamp_ratelimit)
        app.router.add_get("/", self.index)
        app.router.add_get("/wiki/{slug}", self.page)
        app.router.add_get("/images/{name}", self.image)
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/admin/knobs", self.get_knobs)
        app.router.add_post("/admin/knobs", self.post_knobs)
        return app


class WorldServer:
    """Serve a built world on loopback from a background thread; a context manager.

    >>> with WorldServer("worlds/default") as server:
    ...     client = openai.OpenAI(base_url=server.openai_base_url, api_key="x")
    """

    def __init__(
        self,
        world_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        knobs: Knobs | None = None,
        truth_path: str | Path | None = None,
    ) -> None:
        """`truth_path`: append the defects planted per rollout there (`world.truth`)."""
        self.world_dir = Path(world_dir)
        self.host, self.port = host, port
        truth = TruthLog(truth_path) if truth_path is not None else None
        self.app = _App(self.world_dir, knobs or Knobs(), truth)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def knobs(self) -> Knobs:
        return self.app.knobs

    def set_knobs(self, knobs: Knobs) -> None:
        self.app.set_knobs(knobs)

    def start(self) -> WorldServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._serve, name="world-server", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._failure is not None:
            raise RuntimeError(
                f"world server failed to start on {self.host}:{self.port}: {self._failure}"
            ) from self._failure
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._runner = web.AppRunner(self.app.application(), access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port, backlog=2048)
            loop.run_until_complete(site.start())
            server = site._server  # aiohttp exposes the bound sockets only here
            self.port = server.sockets[0].getsockname()[1] if server and server.sockets else self.port
        except BaseException as exc:  # report to start(), never die silently
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self.app.pool.shutdown(wait=False, cancel_futures=True)
        self._thread = None

    def serve_forever(self) -> None:
        """Start and block until interrupted (the CLI)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> WorldServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
