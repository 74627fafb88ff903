"""Eval harness benchmark: questions per second through `stages.evaluate.evaluator.Evaluator` (the synth
executor, image store, scoring and shard writing) against an endpoint with a fixed latency, as a
ratio to the ideal, and the harness's CPU per question.

Each question takes two turns (a tool call to an in-process tool, then the answer), so the
ideal rate is in_flight / (turns x latency). The scripted endpoint runs in its own process, so
the CPU measured here is the harness's alone (teacher client, executor, image encoding, scoring,
parquet writes). A bare asyncio + openai loop making the same calls against the same server is
measured right after, so a loaded machine shows in both (harness / bare isolates the harness).

    python bench/bench_eval.py [--questions 1536] [--in-flight 64] [--latency 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_config
from pipeline.schema import Observation
from pipeline.store import RunStore
from stages.evaluate.benchmarks import EvalItem
from stages.evaluate.evaluator import Evaluator, report_from
from stages.tools.base import Tool, ToolContext

TURNS = 2


def scripted(body: dict[str, Any]) -> str:
    """Turn 1: a tool call; turn 2: the answer (option B)."""
    if any(m["role"] == "assistant" for m in body["messages"]):
        return "<think>The note says B.</think><answer>B</answer>"
    return '<think>Look closer.</think><tool_call>{"name": "code", "arguments": {"code": "print(1)"}}</tool_call>'


def _serve(latency: float, port_queue: Any, stop: Any) -> None:
    from tests.fake_openai import FakeTeacher

    server = FakeTeacher(scripted, latency_s=latency)
    port_queue.put(server.port)
    stop.wait()
    server.close()


class EchoTool(Tool):
    """An instant tool: the bench measures the harness, not a sandbox."""

    name = "code"

    async def _run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        return Observation(text="1")


def items(n: int) -> list[EvalItem]:
    out = []
    for i in range(n):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (i % 256, 80, 120)).save(buffer, format="PNG")
        out.append(
            EvalItem(
                item_id=str(i),
                benchmark="bench",
                question=f"Question {i}: which option?\nOptions:\nA. one\nB. two",
                images=[buffer.getvalue()],
                answer="B",
                options={"A": "one", "B": "two"},
                mode="general",
            )
        )
    return out


async def bare(base_url: str, batch: list[EvalItem], in_flight: int) -> float:
    """The floor: a bare asyncio + openai loop making the same two calls per question (same
    system prompt, question and image as a data URI); returns its wall seconds."""
    import base64

    import openai

    from stages.synth import executor_prompt

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    system = executor_prompt("general").text
    slots = asyncio.Semaphore(in_flight)

    async def one(item: EvalItem) -> None:
        uri = "data:image/png;base64," + base64.b64encode(item.images[0]).decode()
        user = [{"type": "text", "text": item.question}, {"type": "image_url", "image_url": {"url": uri}}]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        async with slots:
            for _ in range(TURNS):
                reply = await client.chat.completions.create(model="bench", messages=messages)
                messages += [
                    {"role": "assistant", "content": reply.choices[0].message.content},
                    {"role": "user", "content": "<observation>1</observation>"},
                ]

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in batch))
    wall = time.perf_counter() - start
    await client.close()
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=1536)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.5)
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    ports, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(args.latency, ports, stop), daemon=True)
    server.start()
    port = ports.get(timeout=60)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(
                None,
                [
                    f"run.root={tmp}",
                    "run.name=bench",
                    "teacher.model=bench",
                    f"teacher.concurrency={args.in_flight}",
                    "teacher.cache=false",
                    "world.enabled=false",
                ],
            )
            store = RunStore(Path(tmp) / "bench")
            evaluator = Evaluator(
                cfg,
                store,
                base_url=f"http://127.0.0.1:{port}/v1",
                tools_factory=lambda *a: {"code": EchoTool()},
            )
            batch = items(args.questions)
            start, cpu = time.perf_counter(), time.process_time()
            result = asyncio.run(evaluator.run(batch, in_flight=args.in_flight, shard_size=128))
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            report = report_from(store)
            bare_wall = asyncio.run(bare(f"http://127.0.0.1:{port}/v1", batch, args.in_flight))
    finally:
        stop.set()
        server.join(10)
    ideal = args.in_flight / (TURNS * args.latency)
    rate = result.scored / wall
    print(
        f"eval harness: {result.scored} questions, {args.in_flight} in flight, {args.latency:.2f} s per call, "
        f"{TURNS} turns each"
    )
    print(f"  rate {rate:.2f} q/s, ideal {ideal:.2f} q/s -> ratio {rate / ideal:.3f} (wall {wall:.1f} s)")
    # steady state (Little's law, every slot busy): a question's own wall vs the ideal turns x latency
    steady = TURNS * args.latency / report["seconds_per_question"]
    print(
        f"  steady state: {report['seconds_per_question']:.3f} s per question in its slot vs "
        f"{TURNS * args.latency:.3f} ideal -> ratio {steady:.3f}"
    )
    bare_rate = len(batch) / bare_wall
    print(
        f"  bare asyncio+openai loop, same calls: {bare_rate:.2f} q/s -> ratio to ideal {bare_rate / ideal:.3f}; "
        f"harness / bare {rate / bare_rate:.3f}"
    )
    print(f"  harness CPU {1000 * cpu / max(1, result.scored):.1f} ms per question (process CPU {cpu:.1f} s)")
    print(f"  accuracy {report['accuracy']:.3f} (every answer is right: checks the scoring path ran)")


if __name__ == "__main__":
    main()
