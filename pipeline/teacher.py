"""The teacher client: THE one place trajforge talks to a teacher or judge model.

Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, OpenRouter, the offline
world's oracle) through `openai.AsyncOpenAI`. Around each call:

- a replay cache keyed by the full request (sqlite under `RUN/cache/teacher`), so a rerun with
  the same config makes zero calls and returns the same replies;
- an adaptive concurrency limit (AIMD: halve on push-back, creep back up on success) and an
  adaptive request pacer that learns the endpoint's admitted rate from 429s, under the
  configured request/token rate ceilings;
- retries with jittered exponential backoff (tenacity) on 429 (honouring Retry-After), 5xx,
  timeouts, connection errors and malformed or truncated replies;
- token and latency accounting (`stats()`).

Images go to the teacher as `image_url` data URIs, downscaled to `image_max_pixels` and encoded
once per trajectory (`ImageEncoder`), while tools keep working on the original files.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openai
from openai.types.chat import ChatCompletion
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from pipeline.chat import Message
from pipeline.config import TeacherConfig, secret
from pipeline.images import encode_png, fit_pixels, read_image, to_data_uri
from pipeline.schema import canonical_json
from pipeline.store import ImageStore

#: Key used when the config names no key variable (the oracle and local servers ignore it).
PLACEHOLDER_KEY = "trajforge-no-key"
#: Keys of a chat-completions response that are standard; everything else lands in `extra`.
_STANDARD_KEYS = {
    "id",
    "object",
    "created",
    "model",
    "choices",
    "usage",
    "system_fingerprint",
    "service_tier",
}


@dataclass
class TeacherReply:
    """One teacher answer and what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # non-standard response keys ("trajforge")
    finish_reason: str | None = None


class TeacherError(RuntimeError):
    """A call that failed for good (after retries); the message is the reason to record."""


class MalformedReply(Exception):
    """A 2xx response that carries no usable message (retried like a transient error)."""


class TruncatedReply(Exception):
    """The reply hit max_tokens (finish_reason=length); retried, then returned as it is."""

    def __init__(self, reply: TeacherReply):
        super().__init__("reply truncated at max_tokens (finish_reason=length)")
        self.reply = reply


# ------------------------------------------------------------------------------ replay cache


class ReplayCache:
    """sqlite map from a request's hash to its reply; safe across threads and processes (WAL)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")

    def get(self, key: str) -> TeacherReply | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return TeacherReply(**{**json.loads(row[0]), "cached": True})

    def put(self, key: str, reply: TeacherReply) -> None:
        data = json.dumps({k: v for k, v in asdict(reply).items() if k != "cached"}, ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies (key, reply) VALUES (?, ?)", (key, data))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def request_key(request: dict[str, Any]) -> str:
    """The cache key: sha256 over the canonical JSON of everything sent except transport details."""
    import hashlib

    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- flow control pieces


class AdaptiveLimiter:
    """Concurrency limit with AIMD: halve on push-back (at most once per cooldown), +1 per window."""

    def __init__(self, maximum: int, *, minimum: int = 1, cooldown_s: float = 1.0):
        self.maximum, self.minimum, self.cooldown_s = maximum, minimum, cooldown_s
        self.limit = float(maximum)
        self.in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._last_cut = 0.0

    async def acquire(self) -> None:
        if self.in_use < int(self.limit) and not self._waiters:
            self.in_use += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release_slot()  # we were granted a slot but will not use it
            else:
                self._waiters.remove(future)
            raise

    def release(self) -> None:
        self._release_slot()

    def _release_slot(self) -> None:
        self.in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < int(self.limit):
            future = self._waiters.popleft()
            if not future.done():
                self.in_use += 1
                future.set_result(None)

    def on_success(self) -> None:
        if self.limit < self.maximum:
            self.limit = min(self.maximum, self.limit + 1.0 / self.limit)
            self._wake()

    def on_pushback(self) -> None:
        now = time.monotonic()
        if now - self._last_cut >= self.cooldown_s:
            self._last_cut = now
            self.limit = max(float(self.minimum), self.limit / 2)


class AdaptivePacer:
    """Spaces request starts evenly at `rate` per second; learns the rate an endpoint admits.

    Start-up (slow start): with `start` set, pacing begins at `start` per second and doubles
    every `ramp_s` seconds until the first 429, so the first second never floods an endpoint
    whose limit is unknown; once no request has had to wait for a whole window (demand, not the
    pacer, is the bound), pacing stops (`rate` None) unless a ceiling is configured.

    On a 429 for a request sent after the last cut, the rate drops to just under the best
    estimate of what the endpoint admits: the lowest of 95% of the current rate, the admitted
    rate over the window, and 1 / Retry-After when that is under a second (a token bucket's
    wait for its next token is at most 1/R, so 1/wait bounds R from above). It never drops
    below half the peak admitted rate of the last minute, so random 429s cannot spiral it down;
    429s for requests sent before the last cut are stale and ignored. It then creeps up by
    `probe` (1%) a second, so the client probes the limit rarely and stays under it almost
    always; after two quiet minutes without a ceiling it stops pacing.
    """

    def __init__(
        self,
        ceiling: float | None,
        *,
        start: float | None = None,
        ramp_s: float = 0.5,
        window_s: float = 2.0,
        backoff: float = 0.97,
        probe: float = 0.01,
        min_samples: int = 20,
    ):
        self.ceiling, self.window_s, self.backoff, self.probe = ceiling, window_s, backoff, probe
        self.min_samples, self.ramp_s = min_samples, ramp_s
        self.rate: float | None = ceiling
        if start is not None:
            self.rate = min(start, ceiling) if ceiling is not None else start
        self.slow_start = start is not None and (ceiling is None or start < ceiling)
        self._last_start = -1e9  # when the last paced request started
        self._lock: asyncio.Lock | None = None
        self._admitted: collections.deque[float] = collections.deque()
        self._peaks: collections.deque[tuple[float, float]] = collections.deque()  # (time, admitted rate)
        self._last_cut = -1e9
        self._last_grow = time.monotonic()
        self._last_wait = time.monotonic()  # last time a request had to wait for its slot
        self._first: float | None = None
        self._waits: collections.deque[tuple[float, float]] = collections.deque()  # (time, Retry-After)

    async def acquire(self) -> float:
        """Wait for this request's slot; returns when it started (for on_rejected's staleness).

        Waiters queue on a FIFO lock and only the head watches the clock, so each start is
        spaced by the rate in force *now*: a ramp or a cut applies to requests already queued.
        """
        now = time.monotonic()
        if self.rate is None:
            return now
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                now = time.monotonic()
                self._grow(now)
                if self.rate is None:
                    return now
                due = self._last_start + 1.0 / self.rate
                if due <= now:
                    break
                self._last_wait = now
                await asyncio.sleep(due - now)
            # keep the schedule through sleep overshoot (up to one interval late), no credit beyond
            self._last_start = max(due, now - 1.0 / self.rate)
            return now

    def _grow(self, now: float) -> None:
        elapsed, self._last_grow = now - self._last_grow, now
        if self.rate is None or (self.ceiling is not None and self.rate >= self.ceiling):
            return
        if self.slow_start:
            if self.ceiling is None and now - self._last_wait > self.window_s:
                self.rate, self.slow_start = None, False  # demand-bound: pacing only costs
                return
            self.rate *= 2.0 ** (elapsed / self.ramp_s)
        else:
            self.rate *= (1.0 + self.probe) ** elapsed
        if self.ceiling is not None:
            self.rate = min(self.rate, self.ceiling)
        elif not self.slow_start and now - self._last_cut > 120.0:
            self.rate = None  # two quiet minutes: the limit is gone or far away

    def _trim(self, now: float) -> float:
        """Admitted requests per second over the window (or since the first, if more recent)."""
        while self._admitted and self._admitted[0] < now - self.window_s:
            self._admitted.popleft()
        span = min(self.window_s, max(0.5, now - self._first)) if self._first is not None else self.window_s
        return len(self._admitted) / span

    def on_admitted(self) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = now
        self._admitted.append(now)
        if len(self._admitted) % 16 == 0:
            self._trim(now)
            self._peaks.append((now, len(self._admitted) / self.window_s))  # a full window: no burst spikes
            while self._peaks and self._peaks[0][0] < now - 60.0:
                self._peaks.popleft()

    def on_rejected(self, sent_at: float, retry_after: float | None = None) -> None:
        """A 429 for a request scheduled at `sent_at` (monotonic): slow down unless it is stale."""
        now = time.monotonic()
        if retry_after is not None and 0.0 < retry_after < 1.0:
            self._waits.append((now, retry_after))  # stale or not, the wait says something about R
        if sent_at < self._last_cut:
            return  # scheduled at the old rate, before the last cut: no news
        observed = self._trim(now)
        if (self.rate is None or self.slow_start) and len(self._admitted) < self.min_samples:
            return  # too little traffic yet to say what the limit is
        self._last_cut, self.slow_start = now, False
        floor = 0.5 * max((rate for _, rate in self._peaks), default=observed)
        current = self.rate if self.rate is not None else observed
        estimate = observed
        while self._waits and self._waits[0][0] < now - self.window_s:
            self._waits.popleft()
        if self._waits:  # the longest recent wait is the tightest bound; never below R: no spiral
            estimate = min(estimate, 1.0 / max(wait for _, wait in self._waits))
            floor = min(floor, estimate * self.backoff)  # peaks may include the start-up burst
        self.rate = max(floor, min(current * 0.95, estimate * self.backoff), 0.1)
        self._last_start = max(self._last_start, now)  # the next start waits a full new interval


class TokenBudget:
    """Tokens per minute: a sliding 60 s window of consumed tokens; callers wait while it is full."""

    def __init__(self, per_minute: int | None):
        self.per_minute = per_minute
        self._used: collections.deque[tuple[float, int]] = collections.deque()
        self._total = 0

    async def wait(self) -> None:
        if not self.per_minute:
            return
        while True:
            now = time.monotonic()
            while self._used and self._used[0][0] < now - 60.0:
                self._total -= self._used.popleft()[1]
            if self._total < self.per_minute or not self._used:
                return
            await asyncio.sleep(max(0.05, self._used[0][0] + 60.0 - now))

    def consume(self, tokens: int) -> None:
        if self.per_minute and tokens:
            self._used.append((time.monotonic(), tokens))
            self._total += tokens


# ------------------------------------------------------------------------------- retry policy

_RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.APIResponseValidationError,
    MalformedReply,
    TruncatedReply,
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


# ------------------------------------------------------------------------------------ client


class TeacherClient:
    """Async teacher client with cache, flow control, retries and accounting (see module doc)."""

    def __init__(self, cfg: TeacherConfig, *, cache_dir: Path | None = None, base_url: str | None = None):
        self.cfg = cfg
        self.base_url = base_url or cfg.base_url
        if not self.base_url:
            raise TeacherError(
                "no teacher endpoint: set teacher.base_url (any OpenAI-compatible /v1 URL) "
                "or run with the offline world enabled, which serves the oracle teacher"
            )
        api_key = secret(cfg.api_key_env, purpose="the teacher") if cfg.api_key_env else PLACEHOLDER_KEY
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=cfg.timeout_s,
            http_client=_http_client(cfg),
        )
        self.cache = ReplayCache(Path(cache_dir) / "replies.sqlite") if cache_dir and cfg.cache else None
        self.limiter = AdaptiveLimiter(max(1, cfg.concurrency))
        # slow start: 16/s doubling every 0.5 s (1,000/s within 3 s), so an unknown limit is met
        # by a ramp, not by a burst of `concurrency` requests that all come back 429
        self.pacer = AdaptivePacer(cfg.requests_per_s, start=float(min(16, max(1, cfg.concurrency))))
        self.tokens = TokenBudget(cfg.tokens_per_min)
        self._stats: collections.Counter[str] = collections.Counter()
        self._latency_total = 0.0

    # -- public API ---------------------------------------------------------------------
    async def chat(self, messages: list[dict[str, Any]], **overrides: Any) -> TeacherReply:
        """One chat completion; `overrides` are request fields (temperature, seed, user, ...).

        Raises TeacherError (with the reason) once retries are exhausted or the request is refused.
        """
        request = self._request(messages, overrides)
        key = request_key(request) if self.cache is not None else ""  # hashing resent images costs
        self._stats["requests"] += 1
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self._stats["cache_hits"] += 1
            self._account(hit)
            return hit
        reply = await self._call_with_retries(request)
        if self.cache is not None:
            self.cache.put(key, reply)
        self._account(reply)
        return reply

    def stats(self) -> dict[str, Any]:
        """Counters for the summary: requests, calls, cache hits, retries, errors, tokens, latency."""
        out: dict[str, Any] = dict(self._stats)
        calls = out.get("calls", 0)
        out["mean_latency_s"] = round(self._latency_total / calls, 4) if calls else 0.0
        out["concurrency_limit"] = int(self.limiter.limit)
        out["paced_rate_per_s"] = round(self.pacer.rate, 2) if self.pacer.rate else None
        return out

    async def aclose(self) -> None:
        await self._client.close()
        if self.cache is not None:
            self.cache.close()

    # -- internals ----------------------------------------------------------------------
    def _request(self, messages: list[dict[str, Any]], overrides: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "top_p": self.cfg.top_p,
            "max_tokens": self.cfg.max_tokens,
        }
        request.update(overrides)
        extra = {**self.cfg.extra_body, **request.pop("extra_body", {})}
        if extra:
            request["extra_body"] = extra
        return request

    def _account(self, reply: TeacherReply) -> None:
        self._stats["prompt_tokens"] += reply.prompt_tokens
        self._stats["completion_tokens"] += reply.completion_tokens

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = wait_exponential_jitter(multiplier=0.25, max=20.0, jitter=0.5)(state)
        hinted = retry_after_s(exc) if exc is not None else None
        if hinted is not None:
            return hinted + random.uniform(0.0, 0.1 * hinted + 0.05)
        return backoff

    def _before_sleep(self, state: RetryCallState) -> None:
        self._stats["retries"] += 1

    async def _call_with_retries(self, request: dict[str, Any]) -> TeacherReply:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.cfg.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._call_once(request)
        except TruncatedReply as exc:
            self._stats["truncated"] += 1
            return exc.reply  # still truncated after every retry: let the caller judge the text
        except Exception as exc:
            self._stats["failed"] += 1
            raise TeacherError(f"teacher call failed after retries: {_describe(exc)}") from exc
        raise TeacherError("teacher call failed: no attempt was made")  # pragma: no cover

    async def _call_once(self, request: dict[str, Any]) -> TeacherReply:
        await self.tokens.wait()
        await self.limiter.acquire()
        try:
            sent_at = await self.pacer.acquire()  # scheduled at: a 429 for an older slot is stale
            start = time.perf_counter()
            self._stats["calls"] += 1
            try:
                completion = await self._client.post(
                    "/chat/completions", body=_wire_body(request), cast_to=ChatCompletion
                )
            except Exception as exc:
                self._on_error(exc, sent_at)
                raise
            latency = time.perf_counter() - start
        finally:
            self.limiter.release()
        self.pacer.on_admitted()
        self.limiter.on_success()
        self._latency_total += latency
        reply = _reply_from(completion, latency)
        self.tokens.consume(reply.prompt_tokens + reply.completion_tokens)
        if reply.finish_reason == "length" and self.cfg.retry_truncated:
            self._stats["errors.truncated"] += 1
            raise TruncatedReply(reply)
        return reply

    def _on_error(self, exc: BaseException, sent_at: float) -> None:
        kind = f"HTTP {exc.status_code}" if isinstance(exc, openai.APIStatusError) else type(exc).__name__
        self._stats[f"errors.{kind}"] += 1
        if isinstance(exc, openai.RateLimitError):
            self._stats["rejected_429"] += 1
            self.pacer.on_rejected(sent_at, retry_after_s(exc))
            self.limiter.on_pushback()
        elif isinstance(exc, openai.APIStatusError) and exc.status_code == 503:
            self.limiter.on_pushback()  # explicit overload; timeouts may be hangs, not load


def _http_client(cfg: TeacherConfig) -> Any:
    """The SDK's aiohttp transport (None: its default httpx pool, which polls every pooled
    connection's socket on each request: at 256 in flight, twice aiohttp's CPU per call)."""
    return openai.DefaultAioHttpClient(timeout=cfg.timeout_s) if cfg.http_client == "aiohttp" else None


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


def _reply_from(completion: Any, latency: float) -> TeacherReply:
    """A TeacherReply from an openai ChatCompletion; MalformedReply when it has no message."""
    choices = getattr(completion, "choices", None)
    if not choices:
        raise MalformedReply("response has no choices")
    choice = choices[0]
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None)
    if not isinstance(text, str) or not text:
        raise MalformedReply("response message has no text content")
    usage = getattr(completion, "usage", None)
    extra = dict(getattr(completion, "model_extra", None) or {})
    for key in _STANDARD_KEYS:
        extra.pop(key, None)
    return TeacherReply(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        latency_s=latency,
        extra=extra,
        finish_reason=getattr(choice, "finish_reason", None),
    )


# ---------------------------------------------------------------------- messages and images


class UriCache:
    """Data URIs shared by every trajectory of one worker, bounded by size (least recently used out).

    The rollouts of a task send the same input images (and often the same crops), so a worker
    encodes each image once, not once per rollout. Keys are content-addressed image-store refs
    (plus the encoding settings), so an entry can never go stale. Concurrent first uses of one
    image wait for a single encoding instead of each doing it.
    """

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self.bytes = 0
        # every encoding by an encoder sharing this cache (the planner's too), from any thread
        self.encoded = 0
        self.encode_cpu_s = 0.0
        self._count_lock = threading.Lock()
        self._uris: collections.OrderedDict[tuple[Any, ...], str] = collections.OrderedDict()
        self._pending: dict[tuple[Any, ...], asyncio.Future[str]] = {}

    def get(self, key: tuple[Any, ...]) -> str | None:
        uri = self._uris.get(key)
        if uri is not None:
            self._uris.move_to_end(key)
        return uri

    def count(self, cpu_s: float) -> None:
        """One encoding done (by whichever encoder), for the run's CPU accounting."""
        with self._count_lock:
            self.encoded += 1
            self.encode_cpu_s += cpu_s

    def put(self, key: tuple[Any, ...], uri: str) -> None:
        if key in self._uris or len(uri) > self.max_bytes:
            return
        self._uris[key] = uri
        self.bytes += len(uri)
        while self.bytes > self.max_bytes:
            _, old = self._uris.popitem(last=False)
            self.bytes -= len(old)

    async def get_or_encode(self, key: tuple[Any, ...], encode: Callable[[], str]) -> str:
        """The cached URI, or `encode()` run once in a worker thread (concurrent callers share it).

        The encoding is not tied to the first caller: if that caller is cancelled, the others
        still get the result.
        """
        if (uri := self.get(key)) is not None:
            return uri
        future = self._pending.get(key)
        if future is None:
            future = asyncio.get_running_loop().run_in_executor(None, encode)
            self._pending[key] = future
            future.add_done_callback(lambda done, key=key: self._settle(key, done))
        return await asyncio.shield(future)

    def _settle(self, key: tuple[Any, ...], future: asyncio.Future[str]) -> None:
        self._pending.pop(key, None)
        if not future.cancelled() and future.exception() is None:
            self.put(key, future.result())


class ImageEncoder:
    """Image ref -> `data:` URI for the teacher: downscaled to the pixel budget, encoded once.

    One encoder per trajectory memoises every image it sent, so a long trajectory re-sends the
    same string instead of re-encoding; with a worker's `UriCache` (`shared`), image-store refs
    are encoded once per worker across trajectories. RGB images go as JPEG (quality 90), others
    as PNG. Refs are run image-store refs (sha256 hex) or file paths.
    """

    def __init__(
        self,
        store: ImageStore | None,
        max_pixels: int,
        *,
        jpeg_quality: int = 90,
        shared: UriCache | None = None,
    ):
        self.store, self.max_pixels, self.jpeg_quality = store, max_pixels, jpeg_quality
        self.shared = shared
        self._memo: dict[str, str] = {}
        self.encoded = 0  # by this encoder; the shared cache counts the worker's (and their CPU)

    def _in_store(self, ref: str) -> bool:
        path = Path(ref)
        return self.store is not None and not path.is_absolute() and not path.exists()

    def _open(self, ref: str):
        return self.store.open(ref) if self._in_store(ref) else read_image(Path(ref))  # type: ignore[union-attr]

    def _encode(self, ref: str) -> str:
        start = time.thread_time()
        image = self._open(ref)
        # Box-reduce by whole factors first (cheap), so the Lanczos pass in fit_pixels works on
        # at most ~4x the budget: same quality as Pillow's reducing_gap=2, far less CPU.
        factor = int((image.width * image.height / self.max_pixels) ** 0.5 / 2)
        if factor >= 2:
            image = image.reduce(factor)
        image = fit_pixels(image, self.max_pixels)
        if image.mode in ("RGB", "L"):
            import io

            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=self.jpeg_quality)
            uri = to_data_uri(buffer.getvalue(), "image/jpeg")
        else:
            uri = to_data_uri(encode_png(image), "image/png")
        self.encoded += 1
        if self.shared is not None:
            self.shared.count(time.thread_time() - start)
        return uri

    def data_uri(self, ref: str) -> str:
        """The (memoised) data URI of one image; CPU work, call it off the event loop."""
        if (uri := self._memo.get(ref)) is not None:
            return uri
        key = self._key(ref)
        if key is not None and self.shared is not None and (uri := self.shared.get(key)) is not None:
            self._memo[ref] = uri
            return uri
        uri = self._memo[ref] = self._encode(ref)
        if key is not None and self.shared is not None:
            self.shared.put(key, uri)
        return uri

    def _key(self, ref: str) -> tuple[Any, ...] | None:
        """Shared-cache key: only content-addressed store refs (a file path's bytes may change)."""
        return (ref, self.max_pixels, self.jpeg_quality) if self._in_store(ref) else None

    async def prepare(self, messages: list[Message]) -> None:
        """Encode (in worker threads) every image of `messages` this trajectory has not sent yet."""
        todo = [ref for ref in dict.fromkeys(image_refs(messages)) if ref not in self._memo]
        if not todo:
            return
        if self.shared is None:
            await asyncio.to_thread(lambda: [self.data_uri(ref) for ref in todo])
            return
        for ref in todo:
            key = self._key(ref)
            if key is None:
                await asyncio.to_thread(self.data_uri, ref)
            else:
                self._memo[ref] = await self.shared.get_or_encode(key, lambda ref=ref: self._encode(ref))


def image_refs(messages: list[Message]) -> list[str]:
    """Every image ref in `pipeline.chat` messages, in order."""
    refs: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            refs.extend(item["image"] for item in content if item.get("type") == "image")
    return refs


def to_openai_messages(messages: list[Message], encode: Callable[[str], str]) -> list[dict[str, Any]]:
    """`pipeline.chat` messages -> OpenAI chat messages (images as `image_url` data URIs).

    Text-only content collapses to a plain string, the most widely accepted form.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for item in content or []:
            if item.get("type") == "image":
                parts.append({"type": "image_url", "image_url": {"url": encode(item["image"])}})
            elif item.get("type") == "text":
                parts.append({"type": "text", "text": item["text"]})
        if all(part["type"] == "text" for part in parts):
            out.append({"role": message["role"], "content": "".join(part["text"] for part in parts)})
        else:
            out.append({"role": message["role"], "content": parts})
    return out
