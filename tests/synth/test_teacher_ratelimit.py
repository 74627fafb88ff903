"""Rate-limit headers: reading them robustly, and the pacer starting where the limit is known."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from pipeline.config import TeacherConfig
from pipeline.teacher import AdaptivePacer, TeacherClient
from pipeline.teacher.ratelimit import request_limit, reset_seconds
from tests.synth.conftest import Fault, completion
from world.knobs import RateLimiter

MSG = [{"role": "user", "content": "hello"}]
NOW = 1_700_000_000.0


def _cfg(**kw) -> TeacherConfig:
    return TeacherConfig(**{"model": "fake", "timeout_s": 5.0, "max_retries": 4, "cache": False, **kw})


def test_openai_headers_give_the_refill_rate():
    """OpenAI's example: 5,000 per minute, one used, full again in 12 ms -> 1 / 12 ms."""
    headers = httpx.Headers(
        {
            "X-RateLimit-Limit-Requests": "5000",
            "x-ratelimit-remaining-requests": "4999",
            "x-ratelimit-reset-requests": "12ms",
            "x-ratelimit-limit-tokens": "160000",  # token limits are not request limits
        }
    )
    stated = request_limit(headers)
    assert stated is not None and stated.limit == 5000 and stated.remaining == 4999
    assert abs(stated.rate() - 5000 / 60) < 0.1
    assert (
        request_limit(
            httpx.Headers(
                {
                    "x-ratelimit-limit-requests": "60",
                    "x-ratelimit-remaining-requests": "60",
                    "x-ratelimit-reset-requests": "0s",
                }
            )
        ).rate()
        is None
    )  # full: no news
    assert request_limit(httpx.Headers({"content-type": "application/json"})) is None


def test_reset_in_every_shape_servers_send():
    assert reset_seconds("6m0s") == 360.0 and reset_seconds("1m30.5s") == 90.5
    assert reset_seconds("8.64s") == 8.64 and abs(reset_seconds("250us") - 0.00025) < 1e-12
    assert reset_seconds("1h") == 3600.0 and reset_seconds("7") == 7.0  # seconds to wait
    assert reset_seconds(str(int((NOW + 30) * 1000)), now=NOW) == 30.0  # Unix ms (OpenRouter)
    assert reset_seconds(str(int(NOW + 30)), now=NOW) == 30.0  # Unix seconds
    assert reset_seconds("Tue, 14 Nov 2023 22:13:50 GMT", now=NOW) == 30.0  # HTTP date
    assert reset_seconds("2023-11-14T22:13:50Z", now=NOW) == 30.0  # ISO-8601
    for junk in ("soon", "-3", "nan", "inf", "", "1x", "2023-11-14T22:13:50"):  # last: no zone
        assert reset_seconds(junk, now=NOW) is None, junk


def test_windowed_and_broken_limits():
    """The IETF draft names its window; garbage is ignored, never raised."""
    draft = {"x-ratelimit-limit": "100, 100;window=60, 10000;window=86400", "x-ratelimit-remaining": "98"}
    assert request_limit(draft).rate() == 100 / 60
    assert request_limit({"ratelimit-limit": "20;w=2", "ratelimit-remaining": "3"}).rate() == 10.0
    assert request_limit({"x-ratelimit-limit": "lots", "x-ratelimit-remaining": "many"}) is None
    assert (
        request_limit(
            {"x-ratelimit-limit": "40", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "?"}
        ).rate()
        is None
    )


def test_world_bucket_states_itself_as_openai_does():
    """The offline world's token bucket, read back through the parser, gives its own rate."""
    bucket = RateLimiter(40.0)
    for _ in range(45):  # drain past the burst: some admitted, some refused
        bucket.admit()
        stated = request_limit(bucket.headers())
        assert stated is not None and stated.limit == 40
        if stated.remaining < 40:
            assert abs(stated.rate() - 40.0) < 0.5


def test_pacer_paces_under_a_stated_rate_and_never_probes_above_it():
    async def go() -> tuple[float | None, float | None, float]:
        pacer = AdaptivePacer(None)  # unpaced: nothing known
        assert pacer.rate is None
        for rate in (40.0, 40.0, 400.0, 40.0, 40.0):  # one misread (a turning window) is outvoted
            pacer.announce(rate)
        first = pacer.rate
        pacer._last_grow -= 600.0  # ten minutes of creeping by 1%/s: capped at the stated rate
        pacer._grow(time.monotonic())
        begin = time.monotonic()
        for _ in range(11):
            await pacer.acquire()
        return first, pacer.rate, time.monotonic() - begin

    first, later, elapsed = asyncio.run(go())
    assert first is not None and abs(first - 39.6) < 0.01 and later == first
    assert elapsed >= 9 / 40 * 0.95  # evenly spaced starts at the stated rate (the first two at once)
    capped = AdaptivePacer(20.0)
    capped.announce(40.0)
    assert capped.rate == 20.0  # a configured ceiling under the stated rate still binds


def test_a_large_bucket_is_spent_unpaced_before_pacing_starts():
    """5,000 a minute with 4,000 left: pacing at 83/s now would only waste the bucket; with a
    fifth left it starts."""
    pacer = AdaptivePacer(None)
    pacer.announce(5000 / 60, spare=0.8)
    assert pacer.rate is None and pacer.announced_rate == 5000 / 60
    pacer.announce(5000 / 60, spare=0.2)
    assert pacer.rate is not None and abs(pacer.rate - 0.99 * 5000 / 60) < 1e-9
    assert request_limit({"x-ratelimit-limit": "40", "x-ratelimit-remaining": "10"}).spare() == 0.25


def test_unpaced_start_cuts_on_its_first_burst_of_429s():
    """Before any admission, a 429's Retry-After (a token bucket's wait for its next token,
    under 1/R) is evidence enough: the pace drops to just under 1/wait."""
    pacer = AdaptivePacer(None)
    pacer.on_rejected(time.monotonic(), retry_after=0.025)
    assert pacer.rate is not None and 38.0 <= pacer.rate <= 40.0
    unhinted = AdaptivePacer(None)
    unhinted.on_rejected(time.monotonic())  # no wait stated, no admissions: no evidence yet
    assert unhinted.rate is None


def test_client_paces_at_the_limit_a_loopback_server_states(fake_teacher):
    """Every reply states 40 requests/s (OpenAI's headers): from the first reply on, the client
    paces just under it instead of starting unpaced or ramping up from 16/s."""
    stated = {  # 3 of 40 left, full again in 37 / 40 s
        "x-ratelimit-limit-requests": "40",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "925ms",
    }
    body = json.dumps(completion("ok"))
    server = fake_teacher(lambda request: Fault(status=200, headers=stated, body=body))

    async def go() -> tuple[float | None, float, dict]:
        client = TeacherClient(_cfg(concurrency=32), base_url=server.base_url)
        await client.chat(MSG, seed=0)
        rate = client.pacer.rate
        begin = time.monotonic()
        await asyncio.gather(*(client.chat(MSG, seed=i) for i in range(1, 21)))
        elapsed = time.monotonic() - begin
        stats = client.stats()
        await client.aclose()
        return rate, elapsed, stats

    rate, elapsed, stats = asyncio.run(go())
    assert rate is not None and abs(rate - 39.6) < 0.01
    assert elapsed >= 19 / 39.6 * 0.9  # 20 requests spaced at the stated rate
    assert stats["limit_headers"] == 21 and stats["paced_rate_per_s"] == 39.6
    assert stats["stated_rate_per_s"] == 40.0  # what the run's sizing reads as the teacher's pace


def test_client_starts_unpaced_where_no_limit_is_known(fake_teacher):
    """No configured or stated limit: all 64 requests are at the server at once. A slow start
    from 16/s would spread them over about 4 s, so at most about half would overlap within one
    2 s reply; counted at the server, not timed, so a loaded machine does not change the answer."""
    server = fake_teacher(lambda request: "ok", latency_s=2.0)

    async def go() -> None:
        client = TeacherClient(_cfg(concurrency=64), base_url=server.base_url)
        await asyncio.gather(*(client.chat(MSG, seed=i) for i in range(64)))
        assert client.pacer.rate is None
        await client.aclose()

    asyncio.run(go())
    assert server.peak_in_flight == 64


def _bucket_server(fake_teacher, rate: float):
    """A loopback endpoint behind one token bucket (the world's), stating it in OpenAI's headers;
    returns the server and the list of refusals."""
    bucket, refused = RateLimiter(rate), []
    body = json.dumps(completion("ok"))

    def answer(request: dict) -> Fault:
        wait = bucket.admit()
        if wait:
            refused.append(wait)
            return Fault(status=429, headers={**bucket.headers(), "retry-after-ms": str(round(wait * 1000))})
        return Fault(status=200, headers=bucket.headers(), body=body)

    return fake_teacher(answer), refused


def _two_workers(server, cfg: TeacherConfig, share: float, per_worker: int) -> tuple[float, list[dict]]:
    async def worker(index: int) -> dict:
        client = TeacherClient(cfg, base_url=server.base_url, share=share)
        await asyncio.gather(*(client.chat(MSG, seed=index * 1000 + i) for i in range(per_worker)))
        stats = client.stats()
        await client.aclose()
        return stats

    async def go() -> tuple[float, list[dict]]:
        begin = time.monotonic()
        stats = await asyncio.gather(worker(0), worker(1))
        return time.monotonic() - begin, list(stats)

    return asyncio.run(go())


def test_workers_split_a_configured_limit_instead_of_each_taking_all_of_it(fake_teacher):
    """`teacher.requests_per_s` is the run's: two synth workers sharing one key pace at half of it
    each, so the endpoint's bucket (20/s, a burst of 20) never refuses them. Each taking the whole
    limit (as before) sends 40/s into it and draws 429s."""
    server, refused = _bucket_server(fake_teacher, 20.0)
    cfg = _cfg(concurrency=8, requests_per_s=20.0, tokens_per_min=9000)
    elapsed, stats = _two_workers(server, cfg, share=0.5, per_worker=30)
    assert refused == [] and sum(s.get("rejected_429", 0) for s in stats) == 0
    assert all(9.8 <= s["paced_rate_per_s"] <= 10.0 for s in stats)  # the bucket's headers agree
    assert elapsed >= 59 / 20.0 * 0.9  # 60 requests at the run's 20/s, not at 40/s
    client = TeacherClient(cfg, base_url=server.base_url, share=0.25)
    assert client.tokens.per_minute == 2250  # the token budget is split the same way
    asyncio.run(client.aclose())


def test_workers_split_a_limit_the_endpoint_states(fake_teacher):
    """The headers state the key's refill rate, which every worker hears: each paces at its share
    of it, so the two together stay just under the bucket once its burst is spent."""
    server, _ = _bucket_server(fake_teacher, 20.0)
    elapsed, stats = _two_workers(server, _cfg(concurrency=4), share=0.5, per_worker=40)
    # 99% of 10/s each; a refusal as the burst ran out may cut one a little further
    assert all(s["paced_rate_per_s"] is not None and 9.0 <= s["paced_rate_per_s"] <= 9.9 for s in stats)
    assert elapsed >= (80 - 20) / 20.0 * 0.9  # after the burst of 20, at most the bucket's 20/s


def test_the_run_summary_adds_up_the_workers_pace():
    from stages.synth.runner import _sum_dicts

    summed = _sum_dicts(
        [
            {
                "paced_rate_per_s": 10.0,
                "stated_rate_per_s": 12.0,
                "limit_headers": 3,
                "concurrency_limit": 8,
                "mean_latency_s": 0.2,
                "p99_queue_s": 1.5,
            },
            {
                "paced_rate_per_s": 10.0,
                "stated_rate_per_s": 12.0,
                "limit_headers": 4,
                "concurrency_limit": 8,
                "mean_latency_s": 0.4,
                "p99_queue_s": 0.5,
            },
        ]
    )
    assert summed["paced_rate_per_s"] == 20.0 and summed["limit_headers"] == 7
    assert summed["stated_rate_per_s"] == 24.0  # each worker hears its share of the key's limit
    assert summed["p99_queue_s"] == 1.5  # a tail is the worst worker's, not a sum or a mean
    assert summed["concurrency_limit"] == 8 and abs(summed["mean_latency_s"] - 0.3) < 1e-9
