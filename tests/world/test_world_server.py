"""The world server: the unmodified openai client (sync, async, streaming), pages, knobs, defects."""

from __future__ import annotations

import asyncio
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from pipeline.format import parse_turn
from prompts import load_prompt
from world import Knobs, WorldServer, load_tasks


def _executor_messages(question: str) -> list[dict]:
    return [
        {"role": "system", "content": load_prompt("executor_deepresearch").text},
        {"role": "user", "content": [{"type": "text", "text": question}]},
    ]


@pytest.fixture(scope="module")
def server(small_world: Path):
    with WorldServer(small_world) as srv:
        yield srv


def test_sync_client_plans_executes_and_streams(server: WorldServer, small_world: Path) -> None:
    task = next(t for t in load_tasks(small_world) if t.category == "multihop")
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="unused")
    assert [m.id for m in client.models.list().data] == ["oracle"]
    plan = client.chat.completions.create(
        model="oracle",
        messages=[
            {"role": "system", "content": load_prompt("planner").text},
            {"role": "user", "content": task.question},
        ],
    )
    assert json.loads(plan.choices[0].message.content) == json.loads(task.gold_plan)
    reply = client.chat.completions.create(model="oracle", messages=_executor_messages(task.question))
    turn = parse_turn(reply.choices[0].message.content).turns[0]
    gold = json.loads(task.gold_path)[0]
    assert (turn.tool_name, turn.arguments) == (gold["tool_name"], gold["arguments"])
    assert reply.model_extra["trajforge"]["task_id"] == task.task_id and reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model="oracle", messages=_executor_messages(task.question), stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == reply.choices[0].message.content


def test_async_client_and_streaming(server: WorldServer, small_world: Path) -> None:
    task = load_tasks(small_world)[0]

    async def main() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="unused")
        plain = await client.chat.completions.create(
            model="oracle", messages=_executor_messages(task.question)
        )
        stream = await client.chat.completions.create(
            model="oracle",
            messages=_executor_messages(task.question),
            stream=True,
            stream_options={"include_usage": True},
        )
        parts, usage = [], None
        async for chunk in stream:
            parts += [c.delta.content or "" for c in chunk.choices]
            usage = chunk.usage or usage
        await client.close()
        assert usage is not None and usage.total_tokens > 0
        return plain.choices[0].message.content, "".join(parts)

    plain, streamed = asyncio.run(main())
    assert plain == streamed and plain.startswith("<think>")


def test_pages_and_images_whatever_the_host_header(server: WorldServer, small_world: Path) -> None:
    row = json.loads((small_world / "corpus/pages.jsonl").read_text().splitlines()[0])
    slug = row["url"].rsplit("/", 1)[1]
    headers = {"Host": "world.trajforge.local"}
    page = httpx.get(f"{server.url}/wiki/{slug}", headers=headers)
    assert (
        page.status_code == 200 and row["title"] in page.text and "text/html" in page.headers["content-type"]
    )
    image = httpx.get(f"{server.url}/images/{slug}.png", headers=headers)
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert httpx.get(f"{server.url}/wiki/..%2Fworld.json").status_code == 404
    assert httpx.get(f"{server.url}/wiki/No_Such_Page").status_code == 404


def test_rate_limit_answers_429_with_retry_after(small_world: Path) -> None:
    task = load_tasks(small_world)[0]
    with WorldServer(small_world, knobs=Knobs(rate_limit=5)) as srv:
        body = {"model": "oracle", "messages": _executor_messages(task.question)}
        start = time.monotonic()
        # one burst, as concurrent clients send it (one after another, a loaded box is slow
        # enough for the bucket to refill between requests)
        with ThreadPoolExecutor(12) as pool:
            codes = list(
                pool.map(
                    lambda _: httpx.post(f"{srv.openai_base_url}/chat/completions", json=body), range(12)
                )
            )
        elapsed = time.monotonic() - start
    rejected = [r for r in codes if r.status_code == 429]
    admitted = len(codes) - len(rejected)
    # a burst of 5, plus what the bucket refills at 5/s while the requests run (slow under load)
    assert 5 <= admitted <= 5 + math.ceil(5 * elapsed) and rejected
    assert float(rejected[0].headers["retry-after-ms"]) > 0 and int(rejected[0].headers["Retry-After"]) >= 1


@pytest.mark.parametrize("kind", ["500", "malformed", "truncated", "429"])
def test_error_injection(small_world: Path, kind: str) -> None:
    task = load_tasks(small_world)[0]
    with WorldServer(small_world, knobs=Knobs(errors={kind: 1.0})) as srv:
        response = httpx.post(
            f"{srv.openai_base_url}/chat/completions",
            json={"model": "oracle", "messages": _executor_messages(task.question)},
        )
    if kind in ("500", "429"):
        assert response.status_code == int(kind)
        assert kind == "500" or response.headers["Retry-After"]
    elif kind == "malformed":
        with pytest.raises(ValueError):
            json.loads(response.text)
    else:
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "length" and parse_turn(choice["message"]["content"]).errors


def test_256_requests_each_delayed_are_held_concurrently(small_world: Path) -> None:
    task = next(t for t in load_tasks(small_world) if t.category == "multihop")
    with WorldServer(small_world, knobs=Knobs(latency="const:2")) as srv:

        async def main() -> float:
            client = openai.AsyncOpenAI(
                base_url=srv.openai_base_url,
                api_key="unused",
                max_retries=0,
                timeout=60,
                http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=300)),
            )
            start = time.perf_counter()
            await asyncio.gather(
                *(
                    client.chat.completions.create(model="oracle", messages=_executor_messages(task.question))
                    for _ in range(256)
                )
            )
            await client.close()
            return time.perf_counter() - start

        elapsed = asyncio.run(main())
        peak = srv.app.stats["peak_held"]
    # all 256 wait out their latency at the server at once (a client or server capped at 100
    # connections would hold 100); the time only bounds it loosely, as CPU on a shared box varies
    assert peak == 256, peak
    assert elapsed < 30.0, elapsed  # serially: 512 s


def test_knobs_endpoint_and_defects_recorded_in_response_and_log(small_world: Path, tmp_path: Path) -> None:
    task = next(t for t in load_tasks(small_world) if t.category == "search")
    log = tmp_path / "defects.jsonl"
    with WorldServer(small_world, knobs=Knobs(log_path=str(log))) as srv:
        update = httpx.post(f"{srv.url}/admin/knobs", json={"defects": {"wrong_answer": 1.0}}).json()
        assert update["knobs"]["defects"] == {"wrong_answer": 1.0}
        assert httpx.post(f"{srv.url}/admin/knobs", json={"defects": {"nonsense": 1}}).status_code == 400
        messages = _executor_messages(task.question)
        # jump to the answer turn: pretend the search and visit happened and showed the evidence
        path = json.loads(task.gold_path)
        from pipeline.format import render_turn

        for step, evidence in zip(path[:-1], [path[0]["expect"]["text"], task.gold_answer], strict=True):
            messages.append(
                {
                    "role": "assistant",
                    "content": render_turn(
                        step["think"], tool_name=step["tool_name"], arguments=step["arguments"]
                    ),
                }
            )
            messages.append({"role": "user", "content": f"<observation>1. {evidence}</observation>"})
        reply = openai.OpenAI(base_url=srv.openai_base_url, api_key="u").chat.completions.create(
            model="oracle", messages=messages, seed=1
        )
    record = reply.model_extra["trajforge"]
    assert record["defects"] == ["wrong_answer"] and record["injected"] == ["wrong_answer"]
    answer = parse_turn(reply.choices[0].message.content).turns[0].answer
    assert answer and answer != task.gold_answer
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert logged[-1]["injected"] == ["wrong_answer"] and logged[-1]["task_id"] == task.task_id
