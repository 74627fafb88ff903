"""Teacher client: cache replay, retries (429 + Retry-After, 5xx, hangs, malformed), images."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import sqlite3
import time

import pytest
from PIL import Image

from pipeline.chat import ImageEncoder, UriCache, to_openai_messages
from pipeline.config import TeacherConfig
from pipeline.store import ImageStore
from pipeline.teacher import AdaptiveLimiter, AdaptivePacer, TeacherClient, TeacherError
from tests.synth.conftest import Fault, completion

MSG = [{"role": "user", "content": "hello"}]


def _cfg(**kw) -> TeacherConfig:
    return TeacherConfig(**{"model": "fake", "timeout_s": 2.0, "max_retries": 4, **kw})


def _run(coro):
    return asyncio.run(coro)


def test_reply_fields_extra_keys_and_replay_cache(fake_teacher, tmp_path):
    server = fake_teacher(
        lambda body: completion("answer", extra={"trajforge": {"defects": ["wrong_answer"]}})
    )

    async def go():
        client = TeacherClient(_cfg(), cache_dir=tmp_path, base_url=server.base_url)
        first = await client.chat(MSG, seed=1)
        again = await client.chat(MSG, seed=1)
        other = await client.chat(MSG, seed=2)
        await client.aclose()
        return first, again, other, client.stats()

    first, again, other, stats = _run(go())
    assert first.text == "answer" and not first.cached
    assert first.extra == {"trajforge": {"defects": ["wrong_answer"]}}
    assert first.prompt_tokens == 10 and first.completion_tokens == 1
    assert again.cached and again.text == first.text and again.extra == first.extra
    assert not other.cached  # the seed is part of the request, so rollouts differ
    assert len(server.requests) == 2 and stats["cache_hits"] == 1
    assert server.requests[1]["seed"] == 2

    # a fresh client (a rerun) on the same cache makes zero calls
    async def rerun():
        client = TeacherClient(_cfg(), cache_dir=tmp_path, base_url=server.base_url)
        replies = [await client.chat(MSG, seed=s) for s in (1, 2)]
        await client.aclose()
        return replies

    replies = _run(rerun())
    assert all(r.cached for r in replies) and len(server.requests) == 2


def test_the_replay_cache_file_is_read_and_written_off_the_event_loop(fake_teacher, tmp_path, caplog):
    """The cache file is shared with the run's other workers, whose locks a read or write may
    wait for; and a write the file refuses costs the rerun a call, not this call its reply."""
    import threading

    server = fake_teacher(lambda body: completion("answer"))
    seen: list[int] = []

    async def go():
        client = TeacherClient(_cfg(), cache_dir=tmp_path, base_url=server.base_url)
        get, put = client.cache.get, client.cache.put
        client.cache.get = lambda key: seen.append(threading.get_ident()) or get(key)
        client.cache.put = lambda key, reply: seen.append(threading.get_ident()) or put(key, reply)
        first = await client.chat(MSG, seed=1)
        again = await client.chat(MSG, seed=1)

        def locked(key, reply):
            raise sqlite3.OperationalError("database is locked")

        client.cache.put = locked
        other = await client.chat(MSG, seed=2)
        await client.aclose()
        return threading.get_ident(), first, again, other, client.stats()

    loop_thread, first, again, other, stats = _run(go())
    assert len(seen) == 4 and loop_thread not in seen  # two reads, one write, the third's read
    assert not first.cached and again.cached and other.text == "answer" and not other.cached
    assert stats["cache_write_errors"] == 1 and "database is locked" in caplog.text


def test_no_random_id_is_drawn_per_call(fake_teacher, monkeypatch):
    """The SDK draws a uuid4 per post for an idempotency header OpenAI's client never sends: a
    getrandom call that lets go of the GIL on the event loop's thread, once per teacher call.
    The client draws one random prefix when it is made, and counts from there."""
    import secrets
    import uuid

    server = fake_teacher(lambda body: completion("ok"))

    def drawn(*args):
        raise AssertionError("a random id was drawn for a call")

    async def go():
        client = TeacherClient(_cfg(cache=False, stream=False), base_url=server.base_url)
        streamed = TeacherClient(_cfg(cache=False, stream=True), base_url=server.base_url)
        monkeypatch.setattr(uuid, "uuid4", drawn)
        monkeypatch.setattr(secrets, "token_hex", drawn)
        replies = [await client.chat(MSG), await client.chat(MSG), await streamed.chat(MSG)]
        await client.aclose()
        await streamed.aclose()
        return replies

    assert [r.text for r in _run(go())] == ["ok", "ok", "ok"]


def test_request_body_is_the_sdk_wire_format(fake_teacher):
    """The body the endpoint receives: sampling fields at the top, extra_body merged in, no
    SDK-only keys, content parts (images) passed through untouched."""
    server = fake_teacher(lambda body: completion("ok"))
    image_part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "look"}, image_part]}]

    async def go():
        client = TeacherClient(_cfg(extra_body={"top_k": 20}), base_url=server.base_url)
        await client.chat(messages, seed=3, extra_body={"repetition_penalty": 1.05})
        await client.aclose()

    _run(go())
    (body,) = server.requests
    assert body["model"] == "fake" and body["seed"] == 3 and body["messages"] == messages
    assert body["top_k"] == 20 and body["repetition_penalty"] == 1.05
    assert "extra_body" not in body and {"temperature", "top_p", "max_tokens"} <= set(body)


def test_retries_every_transient_fault_then_succeeds(fake_teacher):
    faults = iter(
        [
            Fault(429, {"Retry-After": "0.2"}),
            Fault(500),
            Fault(200, body="{not json"),
            Fault(
                200,
                body='{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}',
            ),
            Fault(hang_s=5.0),
        ]
    )
    server = fake_teacher(lambda body: next(faults, None) or "done")

    async def go():
        # the timeout sits well above a loaded box's reply time: only the hang may time out
        client = TeacherClient(_cfg(timeout_s=1.5, max_retries=6), base_url=server.base_url)
        start = time.monotonic()
        reply = await client.chat(MSG)
        elapsed = time.monotonic() - start
        await client.aclose()
        return reply, elapsed, client.stats()

    reply, elapsed, stats = _run(go())
    assert reply.text == "done"
    assert stats["retries"] == 5 and stats["calls"] == 6 and stats["rejected_429"] == 1
    assert elapsed >= 0.2 + 1.5  # honoured Retry-After and waited out the hang's timeout


def test_gives_up_with_reason_and_does_not_retry_client_errors(fake_teacher):
    server = fake_teacher(lambda body: Fault(500))
    bad = fake_teacher(lambda body: Fault(400, body='{"error": {"message": "bad model"}}'))

    async def go(url, retries):
        client = TeacherClient(_cfg(max_retries=retries), base_url=url)
        try:
            with pytest.raises(TeacherError) as info:
                await client.chat(MSG)
            return str(info.value), client.stats()
        finally:
            await client.aclose()

    reason, stats = _run(go(server.base_url, 2))
    assert "HTTP 500" in reason and stats["calls"] == 3
    reason, stats = _run(go(bad.base_url, 5))
    assert "HTTP 400" in reason and stats["calls"] == 1  # a 400 is our bug, not transient


def test_truncated_reply_is_returned_never_resent_as_is(fake_teacher):
    """With a fixed seed a byte-identical resend comes back cut the same way: the caller decides."""
    server = fake_teacher(lambda body: completion("cut", finish="length"))

    async def go():
        client = TeacherClient(_cfg(max_retries=2), base_url=server.base_url)
        reply = await client.chat(MSG, seed=1)
        stats = client.stats()
        await client.aclose()
        return reply, stats

    reply, stats = _run(go())
    assert reply.truncated and reply.text == "cut" and len(server.requests) == 1
    assert stats["truncated"] == 1 and stats.get("retries", 0) == 0


def test_concurrency_never_exceeds_limit_and_backs_off(fake_teacher):
    active, peak = [0], [0]
    counter = itertools.count()

    def handler(body):
        return "ok"

    server = fake_teacher(handler, latency_s=0.05)

    async def go():
        client = TeacherClient(_cfg(concurrency=4, cache=False), base_url=server.base_url)
        orig = client._client.post

        async def spy(*args, **kw):
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            try:
                return await orig(*args, **kw)
            finally:
                active[0] -= 1

        client._client.post = spy
        # 100 calls, unpaced (no limit known): the concurrency limit alone holds them at 4
        await asyncio.gather(*(client.chat(MSG, seed=next(counter)) for _ in range(100)))
        await client.aclose()

    _run(go())
    assert peak[0] == 4

    limiter = AdaptiveLimiter(16, cooldown_s=0.0)
    limiter.on_pushback()
    limiter.on_pushback()
    assert int(limiter.limit) == 4
    for _ in range(100):
        limiter.on_success()
    assert 4 < limiter.limit <= 16


def test_pacer_learns_the_admitted_rate():
    pacer = AdaptivePacer(None, window_s=1.0)
    now = time.monotonic()
    pacer._admitted.extend(now - i * 0.02 for i in range(50))  # 50 admitted in the last second
    pacer.on_rejected(time.monotonic())
    assert pacer.rate is not None and 45 <= pacer.rate <= 50
    cut = pacer.rate
    pacer.on_rejected(now - 1.0)  # sent before the cut: stale, ignored
    assert pacer.rate == cut

    async def spaced():
        start = time.monotonic()
        for _ in range(10):
            await pacer.acquire()
        return time.monotonic() - start

    elapsed = _run(spaced())
    assert elapsed >= 9 / 50 * 0.9  # evenly spaced starts, not a burst


def _png(w: int, h: int, color=(200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_resized_encoded_once_and_converted(tmp_path):
    store = ImageStore(tmp_path / "images")
    ref = store.put_bytes(_png(2000, 1000))
    encoder = ImageEncoder(store, max_pixels=200_000)
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {"role": "user", "content": [{"type": "image", "image": ref}, {"type": "text", "text": "q?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<think>a</think>"}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "<observation>"}, {"type": "image", "image": ref}],
        },
    ]
    _run(encoder.prepare(messages))
    out = to_openai_messages(messages, encoder.data_uri)
    assert encoder.encoded == 1  # the same image twice: encoded once
    assert out[0] == {"role": "system", "content": "sys"}
    assert out[2] == {"role": "assistant", "content": "<think>a</think>"}
    url = out[1]["content"][0]["image_url"]["url"]
    assert url == out[3]["content"][1]["image_url"]["url"]
    data = base64.b64decode(url.split(",", 1)[1])
    image = Image.open(io.BytesIO(data))
    assert image.width * image.height <= 200_000 and abs(image.width / image.height - 2.0) < 0.02
    assert store.open(ref).size == (2000, 1000)  # the original is untouched for the tools


def test_rollouts_share_one_encoding_per_worker(tmp_path):
    """Four rollouts starting together on one image: encoded once, same URI, and (big image)
    box-reduced before Lanczos yet still exactly at the pixel budget's size."""
    store = ImageStore(tmp_path / "images")
    ref = store.put_bytes(_png(2560, 2048, color=(10, 200, 10)))
    other = store.put_bytes(_png(64, 64))
    shared = UriCache()
    encoders = [ImageEncoder(store, max_pixels=200_000, shared=shared) for _ in range(4)]
    messages = [{"role": "user", "content": [{"type": "image", "image": ref}, {"type": "text", "text": "q"}]}]

    async def main() -> None:
        await asyncio.gather(*(e.prepare(messages) for e in encoders))

    _run(main())
    assert sum(e.encoded for e in encoders) == 1
    # the shared cache counts it whichever encoder did it (the planner's encoder is not the
    # executor's, yet its CPU is the run's): one encoding, its CPU measured
    assert shared.encoded == 1 and shared.encode_cpu_s > 0
    uris = {e.data_uri(ref) for e in encoders}
    assert len(uris) == 1
    image = Image.open(io.BytesIO(base64.b64decode(uris.pop().split(",", 1)[1])))
    scale = (200_000 / (2560 * 2048)) ** 0.5
    assert image.size == (int(2560 * scale), int(2048 * scale))
    assert image.getpixel((image.width // 2, image.height // 2))[1] > 190  # colour survives
    # a bounded cache evicts the least recently used entry
    small = UriCache(max_bytes=len(shared.get((ref, 200_000, 90)) or "") + 10)
    small.put(("a",), "x" * 5)
    small.put(("b",), "y" * (small.max_bytes - 2))
    assert small.get(("a",)) is None and small.get(("b",)) is not None
    assert ImageEncoder(store, 200_000, shared=shared).data_uri(other).startswith("data:image/jpeg")


def test_pacer_slow_start_ramps_queued_requests_and_learns_from_retry_after():
    pacer = AdaptivePacer(None, start=10.0, ramp_s=0.5)

    async def starts(n: int) -> float:
        begin = time.monotonic()
        await asyncio.gather(*(pacer.acquire() for _ in range(n)))
        return time.monotonic() - begin

    # 30 queued at once: a fixed 10/s would take 2.9 s; the ramp (10, 20, 40/s...) speeds up
    # the requests already waiting, yet the first 0.5 s still admits only ~5
    elapsed = _run(starts(30))
    assert 0.8 < elapsed < 2.5, elapsed  # (ramp ~1.2 s; slack for a loaded box, below 2.9)
    # a token bucket's Retry-After (time to its next token) caps the learned rate at 1/wait
    pacer = AdaptivePacer(None, start=100.0, ramp_s=60.0)
    now = time.monotonic()
    pacer._admitted.extend(now - i * 0.01 for i in range(100))  # 100/s admitted (burst included)
    pacer.on_rejected(now, retry_after=0.004)
    pacer.on_rejected(now - 1.0, retry_after=0.025)  # stale (sent before the cut), its wait informs
    pacer.on_rejected(time.monotonic(), retry_after=0.01)
    assert pacer.rate is not None and 37 <= pacer.rate <= 40 and not pacer.slow_start


def test_request_fields_follow_the_endpoint_settings(fake_teacher):
    """Stop sequences by default; OpenAI reasoning-model settings drop what they refuse."""
    server = fake_teacher(lambda body: "ok")

    async def go(**kw):
        client = TeacherClient(_cfg(**kw), base_url=server.base_url)
        await client.chat(MSG)
        await client.aclose()

    _run(go())
    _run(go(temperature=None, top_p=None, max_tokens_field="max_completion_tokens", stop=[]))
    default, reasoning_model = server.requests
    assert default["stop"] == ["<observation>"] and default["max_tokens"] == 2048
    assert "temperature" in default and "stream" not in default
    assert {"temperature", "top_p", "max_tokens", "stop"}.isdisjoint(reasoning_model)
    assert reasoning_model["max_completion_tokens"] == 2048


def test_a_configured_rate_is_where_pacing_starts():
    """A known limit needs no probing: the pacer starts at it; an unknown one starts unpaced,
    or ramps up from 16/s where `slow_start` asks for it."""
    known = TeacherClient(_cfg(requests_per_s=50.0), base_url="http://127.0.0.1:9/v1")
    unknown = TeacherClient(_cfg(), base_url="http://127.0.0.1:9/v1")
    ramped = TeacherClient(_cfg(slow_start=True), base_url="http://127.0.0.1:9/v1")
    assert known.pacer.rate == 50.0 and not known.pacer.slow_start
    assert unknown.pacer.rate is None and not unknown.pacer.slow_start
    assert ramped.pacer.rate == 16.0 and ramped.pacer.slow_start
    for client in (known, unknown, ramped):
        _run(client.aclose())


def test_calls_leave_no_reference_cycles_for_the_collector(fake_teacher):
    """A call's own objects are freed by reference counting when it ends: cycles living as
    long as a call reach the collector's oldest generation at a thousand calls in flight, and
    every full collection that frees them pauses all the worker's trajectories."""
    import gc

    server = fake_teacher(lambda body: completion("ok"))

    async def garbage_after(calls: int) -> int:
        client = TeacherClient(_cfg(), base_url=server.base_url)
        await client.chat(MSG, seed=0)  # the pool's connection and the SDK's first-use objects
        gc.collect()
        gc.disable()
        try:
            for seed in range(1, calls + 1):
                await client.chat(MSG, seed=seed)
            return gc.collect()
        finally:
            gc.enable()
            await client.aclose()

    few, many = _run(garbage_after(5)), _run(garbage_after(45))
    assert (many - few) / 40 < 1.0, f"{(many - few) / 40:.1f} cyclic objects left per call"
