"""The oracle follows the evidence, injects defects only on purpose, and judges with the world."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai
import pytest
from test_world_gold_paths import _tools_config
from world_agent import data_uri, run_task

from pipeline.format import parse_turn
from pipeline.images import encode_png, read_image, to_data_uri
from prompts import load_prompt
from stages.tools.code.isolation import bwrap_works
from stages.tools.registry import build_tools, close_tools
from world import Knobs, WorldServer, load_tasks
from world.knowledge import Knowledge
from world.oracle import Message, Oracle
from world.oracle_judges import judge_reply


def _crop_uri(task, dx: int = 0) -> str:
    x0, y0, x1, y1 = (round(v) for v in task.gold_region)
    scene = read_image(task.images[0])
    crop = scene.crop((x0 - 30 + dx, y0 - 30, x1 + 30 + dx, y1 + 30))
    return to_data_uri(encode_png(crop.resize((crop.width * 4, crop.height * 4))))


def _after_one_code_step(task, image_uri: str) -> dict:
    first = json.loads(task.gold_path)[0]
    from pipeline.format import render_turn

    return {
        "messages": [
            {"role": "system", "content": load_prompt("executor_general").text},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_uri(task.images[0])}},
                    {"type": "text", "text": task.question},
                ],
            },
            {
                "role": "assistant",
                "content": render_turn(first["think"], tool_name="code", arguments=first["arguments"]),
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "<observation>cropped\nSaved image_1.png: <image></observation>",
                    },
                    {"type": "image_url", "image_url": {"url": image_uri}},
                ],
            },
        ]
    }


def test_a_crop_that_missed_is_retried_never_claimed(small_world: Path) -> None:
    task = next(
        t
        for t in load_tasks(small_world)
        if t.category == "perception" and json.loads(t.meta)["kind"] == "zoom"
    )
    oracle = Oracle(Knowledge(small_world))
    missed = parse_turn(oracle.respond(_after_one_code_step(task, _crop_uri(task, dx=400))).text).turns[0]
    assert missed.tool_name == "code" and task.gold_answer not in (missed.think or "")
    hit = parse_turn(oracle.respond(_after_one_code_step(task, _crop_uri(task))).text).turns[0]
    assert hit.answer == task.gold_answer


def test_judges_use_the_worlds_knowledge(small_world: Path) -> None:
    kb = Knowledge(small_world)
    task = next(
        t
        for t in load_tasks(small_world)
        if t.category == "perception" and json.loads(t.meta)["kind"] == "zoom"
    )

    def judge(kind: str, payload: dict, image: str | None = None) -> str:
        content = [{"type": "text", "text": f"```json\n{json.dumps(payload)}\n```"}]
        message = Message("user", content[0]["text"], [image] if image else [])
        return json.loads(judge_reply(kb, f"judge_{kind}", [message]))["verdict"]

    q = task.question
    assert (
        judge(
            "answer",
            {
                "question": q,
                "gold_answer": task.gold_answer,
                "aliases": task.answer_aliases,
                "predicted": task.gold_answer.lower().replace("-", ""),
            },
        )
        == "pass"
    )
    assert (
        judge(
            "answer", {"question": q, "gold_answer": task.gold_answer, "aliases": [], "predicted": "XX-0000"}
        )
        == "fail"
    )
    claim = f"The zoomed crop clearly shows the code {task.gold_answer}."
    assert judge("image", {"question": q, "next_thought": claim}, _crop_uri(task)) == "pass"
    assert judge("image", {"question": q, "next_thought": claim}, _crop_uri(task, dx=400)) == "fail"
    assert (
        judge(
            "step",
            {
                "question": q,
                "tool_name": "web_visit",
                "arguments": {},
                "observation_text": "Founded in 1843.",
                "next_thought": "It was founded in 1843 and has 5120 employees.",
            },
        )
        == "fail"
    )
    assert (
        judge(
            "final",
            {
                "question": q,
                "last_thought": f"So the code is {task.gold_answer}.",
                "answer": task.gold_answer,
            },
        )
        == "pass"
    )


DEFECT_CASES = {
    "off_target_crop": "perception",
    "recrop_loop": "interleaved",
    "sandbox_error": "perception",
    "skipped_plan_step": "search",
    "wrong_answer": "multihop",
    "format_error": "search",
    "unsupported_claim": "multihop",
}


@pytest.mark.skipif(not bwrap_works(), reason="code sandbox needs bubblewrap")
def test_each_defect_is_injected_reported_and_visible_in_the_trajectory(
    small_world: Path, tmp_path: Path
) -> None:
    tasks = load_tasks(small_world)

    async def main() -> dict:
        out = {}
        with WorldServer(small_world, knobs=Knobs(log_path=str(tmp_path / "log.jsonl"))) as server:
            tools = build_tools(
                _tools_config(server.port),
                "deepresearch",
                corpus_dir=small_world / "corpus",
                cache_dir=tmp_path / "cache",
            )
            client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="u", max_retries=0)
            try:
                for defect, category in DEFECT_CASES.items():
                    server.set_knobs(Knobs(defects={defect: 1.0}, log_path=str(tmp_path / "log.jsonl")))
                    task = next(t for t in tasks if t.category == category)
                    out[defect] = (task, await run_task(client, tools, task, tmp_path / defect, seed=5))
            finally:
                await client.close()
                await close_tools(tools)
        return out

    runs = asyncio.run(main())
    for defect, (task, run) in runs.items():
        records = [r for r in run["trajforge"] if r]
        assert all(r["defects"] == [defect] for r in records), (defect, records)
        assert any(defect in r["injected"] for r in records), (defect, records)
        gold_turns = len(json.loads(task.gold_path))
        if defect == "wrong_answer":
            assert run["answer"] and run["answer"] != task.gold_answer
        else:
            assert run["answer"] == task.gold_answer, (defect, run["texts"])
        if defect == "recrop_loop":
            assert run["turns"] >= gold_turns + 3
        if defect == "sandbox_error":
            assert run["turns"] == gold_turns + 1
        if defect == "skipped_plan_step":
            assert run["turns"] == gold_turns - 1
        if defect == "format_error":
            assert parse_turn(run["texts"][0]).errors and run["turns"] == gold_turns + 1
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {d for row in logged for d in row["injected"]} == set(DEFECT_CASES)
