"""The teacher client: THE one place trajforge talks to a teacher or judge model.

Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, OpenRouter, the offline
world's oracle) through `openai.AsyncOpenAI`. Around each call:

- a replay cache keyed by the full request (`pipeline.teacher.cache`), so a rerun with the same
  config makes zero calls and returns the same replies;
- flow control (`pipeline.teacher.limits`): an adaptive concurrency limit, a request pacer that
  learns the endpoint's admitted rate from 429s, and token/request ceilings;
- retries with jittered exponential backoff on 429 (honouring Retry-After), 5xx,
  timeouts, connection errors and malformed replies (a plain loop, `_call_with_retries`). A reply cut at max_tokens is *returned*
  (`finish_reason="length"`), never resent byte-identical: with a fixed seed it would come back
  cut the same way; the caller applies its truncation policy;
- decoding of every reply shape, streamed or not (`pipeline.teacher.reply`);
- token and latency accounting (`stats()`); a reply without `usage` is counted and its tokens
  estimated (`pipeline.teacher.usage`), marked as estimated.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import itertools
import logging
import random
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import pipeline.teacher.usage as usage
from pipeline.config import TeacherConfig, secret
from pipeline.open_files import ensure_open_files, files_needed, local_ports
from pipeline.teacher.cache import ReplayCache, request_key
from pipeline.teacher.limits import AdaptiveLimiter, AdaptivePacer, TokenBudget
from pipeline.teacher.ratelimit import request_limit
from pipeline.teacher.reply import MalformedReply, StreamAccumulator, TeacherReply, decode_completion
from pipeline.teacher.wire import BodyEncoder

log = logging.getLogger(__name__)

#: Key used when the config names no key variable (the oracle and local servers ignore it).
PLACEHOLDER_KEY = "trajforge-no-key"


class TeacherError(RuntimeError):
    """A call that failed for good (after retries); the message is the reason to record."""


# ------------------------------------------------------------------------------- retry policy

_RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.APIResponseValidationError,
    MalformedReply,
    ValueError,  # a body that is not JSON (json.JSONDecodeError)
)


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 425, 429) or exc.status_code >= 500
    return isinstance(exc, _RETRYABLE)


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds a 429/503 asks us to wait (Retry-After in seconds or as a date, or retry-after-ms)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {str(exc)[:200]}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class TeacherClient:
    """Async teacher client with cache, flow control, retries and accounting (see module doc)."""

    def __init__(
        self,
        cfg: TeacherConfig,
        *,
        cache_dir: Path | None = None,
        base_url: str | None = None,
        share: float = 1.0,
    ):
        """`share`: this client's part of the endpoint's request and token limits. The limits a
        user configures and the ones an endpoint states belong to the key, not to one process,
        so a run's W synth workers (one client each) hold 1/W of them each; 1 for a lone client.
        """
        if not 0.0 < share <= 1.0:
            raise ValueError(f"a client's share of the endpoint's limits must be in (0, 1], got {share}")
        self.cfg = cfg
        self.share = share
        self.base_url = base_url or cfg.base_url
        if not self.base_url:
            raise TeacherError(
                "no teacher endpoint: set teacher.base_url (any OpenAI-compatible /v1 URL) "
                "or run with the offline world enabled, which serves the oracle teacher"
            )
        check_concurrency(cfg.concurrency)
        api_key = secret(cfg.api_key_env, purpose="the teacher") if cfg.api_key_env else PLACEHOLDER_KEY
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=cfg.timeout_s,
            http_client=_http_client(cfg, self._on_response),
        )
        self.cache = ReplayCache(Path(cache_dir) / "replies.sqlite") if cache_dir and cfg.cache else None
        self.limiter = AdaptiveLimiter(max(1, cfg.concurrency))
        # a configured limit is known: pacing starts right at it; one the endpoint states in its
        # rate-limit headers is paced at from the first reply (`_on_response`); an unknown one
        # is met unpaced, as a bare loop meets it, and the first 429 cuts (a ramp from 16/s
        # costs about a second per burst on the unlimited servers most runs use); `slow_start`
        # ramps instead, for an endpoint that limits without saying so
        slow = cfg.slow_start and not cfg.requests_per_s
        ceiling = cfg.requests_per_s * share if cfg.requests_per_s else None
        start = max(1.0, min(16, cfg.concurrency) * share) if slow else None
        self.pacer = AdaptivePacer(ceiling, start=start)
        self.tokens = TokenBudget(max(1, int(cfg.tokens_per_min * share)) if cfg.tokens_per_min else None)
        self._stats: collections.Counter[str] = collections.Counter()
        self._latency_total = 0.0
        self._encoder = BodyEncoder()
        # the SDK would draw a uuid4 (a getrandom call that lets go of the GIL) for every post,
        # for an idempotency header OpenAI's client never sends: one random prefix, then a count
        prefix = f"trajforge-{secrets.token_hex(8)}"
        self._call_ids = (f"{prefix}-{n}" for n in itertools.count())

    # -- public API ---------------------------------------------------------------------
    async def chat(self, messages: list[dict[str, Any]], **overrides: Any) -> TeacherReply:
        """One chat completion; `overrides` are request fields (temperature, seed, user, ...).

        Raises TeacherError (with the reason) once retries are exhausted or the request is refused.
        """
        request = self._request(messages, overrides)
        key = request_key(request) if self.cache is not None else ""  # hashing resent images costs
        self._stats["requests"] += 1
        # the cache file's reads and writes on a thread: the file is shared with the run's other
        # workers, and a read or write may wait for their locks where the event loop must not
        if self.cache is not None and (hit := await asyncio.to_thread(self.cache.get, key)) is not None:
            self._stats["cache_hits"] += 1
            self._account(hit)
            return hit
        reply = await self._call_with_retries(request)
        if self.cache is not None:
            try:
                await asyncio.to_thread(self.cache.put, key, reply)
            except sqlite3.Error as exc:  # the reply is good; a rerun will ask for it again
                self._stats["cache_write_errors"] += 1
                log.warning(
                    "teacher replay cache: could not store a reply (%s); a rerun will call for it again", exc
                )
        self._account(reply)
        return reply

    def stats(self) -> dict[str, Any]:
        """Counters for the summary: requests, calls, cache hits, retries, errors, tokens, latency."""
        out: dict[str, Any] = dict(self._stats)
        calls = out.get("calls", 0)
        out["mean_latency_s"] = round(self._latency_total / calls, 4) if calls else 0.0
        out["concurrency_limit"] = int(self.limiter.limit)
        out["paced_rate_per_s"] = round(self.pacer.rate, 2) if self.pacer.rate else None
        stated = self.pacer.announced_rate  # this client's share of what the headers state
        out["stated_rate_per_s"] = round(stated, 2) if stated else None
        return out

    async def aclose(self) -> None:
        await self._client.close()
        if self.cache is not None:
            self.cache.close()

    # -- internals ----------------------------------------------------------------------
    def _request(self, messages: list[dict[str, Any]], overrides: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.cfg.model, "messages": messages}
        for key in ("temperature", "top_p"):  # None: not sent (OpenAI's reasoning models refuse them)
            if (value := getattr(self.cfg, key)) is not None:
                request[key] = value
        request[self.cfg.max_tokens_field] = self.cfg.max_tokens
        if self.cfg.stop:
            request["stop"] = list(self.cfg.stop)
        if self.cfg.stream:
            request["stream"] = True
            request["stream_options"] = {"include_usage": True}
        request.update(overrides)
        extra = {**self.cfg.extra_body, **request.pop("extra_body", {})}
        if extra:
            request["extra_body"] = extra
        return request

    def _account(self, reply: TeacherReply) -> None:
        self._stats["prompt_tokens"] += reply.prompt_tokens
        self._stats["completion_tokens"] += reply.completion_tokens
        if reply.tokens_estimated:
            self._stats["usage_missing"] += 1
            self._stats["estimated_tokens"] += reply.prompt_tokens + reply.completion_tokens

    def _estimate(self, request: dict[str, Any], reply: TeacherReply) -> None:
        """Fill in the token counts a reply came without (marked estimated already)."""
        reply.prompt_tokens = reply.prompt_tokens or usage.prompt_tokens(request, self.cfg.image_max_pixels)
        reply.completion_tokens = reply.completion_tokens or usage.completion_tokens(
            reply.text, reply.reasoning, reply.tool_calls
        )

    def _wait(self, exc: BaseException, attempt: int) -> float:
        """Seconds before retry number `attempt` (1-based): what a 429/503 asks for, with a
        little jitter, else jittered exponential backoff (0.25 s doubling, capped at 20 s)."""
        hinted = retry_after_s(exc)
        if hinted is not None:
            return hinted + random.uniform(0.0, 0.1 * hinted + 0.05)
        return min(0.25 * 2 ** (attempt - 1) + random.uniform(0.0, 0.5), 20.0)

    async def _call_with_retries(self, request: dict[str, Any]) -> TeacherReply:
        """Up to `max_retries` retries of a retryable failure, then TeacherError.

        A plain loop rather than tenacity's `AsyncRetrying`: each of those is a web of
        reference cycles (about 30 objects) that lives as long as its call, so at a thousand
        calls in flight they reached the collector's oldest generation and were all the garbage
        its full collections found, each collection pausing every trajectory in flight.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._call_once(request)
            except Exception as exc:
                if attempt > self.cfg.max_retries or not _is_retryable(exc):
                    self._stats["failed"] += 1
                    raise TeacherError(f"teacher call failed after retries: {_describe(exc)}") from exc
                delay = self._wait(exc, attempt)
            self._stats["retries"] += 1
            await asyncio.sleep(delay)

    async def _call_once(self, request: dict[str, Any]) -> TeacherReply:
        await self.tokens.wait()
        await self.limiter.acquire()
        try:
            sent_at = await self.pacer.acquire()  # scheduled at: a 429 for an older slot is stale
            start = time.perf_counter()
            self._stats["calls"] += 1
            try:
                reply = await self._post(request, start)
            except Exception as exc:
                self._on_error(exc, sent_at)
                raise
            latency = reply.latency_s
        finally:
            self.limiter.release()
        if reply.tokens_estimated:
            self._estimate(request, reply)
        self.pacer.on_admitted()
        self.limiter.on_success()
        self._latency_total += latency
        self.tokens.consume(reply.prompt_tokens + reply.completion_tokens)
        if reply.truncated:
            self._stats["truncated"] += 1
        return reply

    async def _post(self, request: dict[str, Any], start: float) -> TeacherReply:
        """One HTTP exchange, streamed or not, decoded into a reply."""
        body = _wire_body(request)
        options: openai.RequestOptions = {"idempotency_key": next(self._call_ids)}
        try:  # serialised here, each image URI checked once rather than re-escaped every turn
            payload: dict[str, Any] = {"content": self._encoder.encode(body), "options": options}
        except (TypeError, ValueError):  # not plain JSON (a pydantic value, NaN): the SDK's way
            payload = {"body": body, "options": options}
        if not body.get("stream"):  # the JSON body as is: building the SDK's typed model costs
            completion = await self._client.post("/chat/completions", **payload, cast_to=object)
            return decode_completion(completion, time.perf_counter() - start)
        stream = await self._client.post(
            "/chat/completions",
            **payload,
            cast_to=ChatCompletion,
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )
        folded = StreamAccumulator()
        async for chunk in stream:
            folded.add(chunk)
        return folded.reply(time.perf_counter() - start)

    async def _on_response(self, response: Any) -> None:
        """Every HTTP response, 429s included: a stated request limit sets the pace (this
        client's share of it: the statement is the key's)."""
        if (stated := request_limit(response.headers)) is not None and (rate := stated.rate()):
            self._stats["limit_headers"] += 1
            self.pacer.announce(rate * self.share, stated.spare())

    def _on_error(self, exc: BaseException, sent_at: float) -> None:
        kind = f"HTTP {exc.status_code}" if isinstance(exc, openai.APIStatusError) else type(exc).__name__
        self._stats[f"errors.{kind}"] += 1
        if isinstance(exc, openai.RateLimitError):
            self._stats["rejected_429"] += 1
            self.pacer.on_rejected(sent_at, retry_after_s(exc))
            self.limiter.on_pushback()
        elif isinstance(exc, openai.APIStatusError) and exc.status_code == 503:
            self.limiter.on_pushback()  # explicit overload; timeouts may be hangs, not load


def check_concurrency(concurrency: int) -> None:
    """Refuse a `teacher.concurrency` that cannot take effect, and make room for one that can.

    Each call in flight holds its own HTTP/1.1 connection, so it needs a local port towards the
    endpoint and an open file; the soft file limit is raised to fit (`pipeline.open_files`).
    """
    if concurrency < 1:
        raise TeacherError(f"teacher.concurrency must be at least 1, got {concurrency}")
    ports = local_ports()
    if ports is not None and concurrency > ports:
        raise TeacherError(
            f"teacher.concurrency={concurrency} cannot take effect: each call in flight holds its own "
            f"connection, and this system gives connections to one endpoint {ports} local ports "
            "(net.ipv4.ip_local_port_range); lower it, or split the calls over synth.workers on "
            "several machines"
        )
    ensure_open_files(files_needed(concurrency), f"teacher.concurrency={concurrency}")


def _http_client(cfg: TeacherConfig, on_response: Any) -> Any:
    """The SDK's aiohttp transport, or its default httpx pool (which polls every pooled
    connection's socket on each request: at 256 in flight, twice aiohttp's CPU per call);
    either way `on_response` sees each response's headers.

    The pool holds `teacher.concurrency` connections, kept alive: the SDK's default (1,000,
    100 kept alive) would cap a client silently at 1,000 calls in flight whatever the config
    says, and reopen connections beyond the 100 it keeps.
    """
    hooks = {"response": [on_response]}
    limits = httpx2.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    if cfg.http_client == "aiohttp":
        return openai.DefaultAioHttpClient(timeout=cfg.timeout_s, event_hooks=hooks, limits=limits)
    return openai.DefaultAsyncHttpxClient(timeout=cfg.timeout_s, event_hooks=hooks, limits=limits)


def _wire_body(request: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a chat-completions request, `extra_body` merged in as the SDK does.

    Why not `chat.completions.create`: it walks every message of the request through the
    SDK's typed-dict transform before sending, which for plain dicts changes nothing but, with
    a conversation's base64 images resent on every turn, was the largest single CPU cost of a
    synth worker (about a sixth of its CPU at 256 trajectories in flight). `post` is the SDK's
    documented path for raw bodies and keeps its retries off, errors typed and parsing the same.
    """
    body = {k: v for k, v in request.items() if k != "extra_body"}
    body.update(request.get("extra_body") or {})
    return body
